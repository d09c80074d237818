from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher, profiles
from typer.testing import CliRunner

from canarino import users
from canarino.cli import app
from canarino.cli import web as cli_web
from canarino.web.auth import SIGNIN_COOKIE
from canarino.workspace import init_workspace

runner = CliRunner()


@pytest.fixture
def wsdir(tmp_path: Path) -> Iterator[Path]:
    saved = users.hasher
    users.hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    init_workspace(tmp_path / "ws", mail_domains=["canary-mail.it"], phone_ranges=[]).close()
    yield tmp_path / "ws"
    users.hasher = saved


def _run(wsdir: Path, *args: str, stdin: str | None = None) -> object:
    return runner.invoke(app, [*args, "--workspace", str(wsdir)], input=stdin)


def test_users_add_reads_the_password_from_stdin_and_lists(wsdir: Path) -> None:
    added = _run(
        wsdir,
        "users",
        "add",
        "dpo",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a-long-password-1\n",
    )
    assert added.exit_code == 0, added.output  # type: ignore[attr-defined]
    assert "a-long-password" not in added.output  # type: ignore[attr-defined]
    listed = _run(wsdir, "users", "list", "--json")
    assert json.loads(listed.output)[0]["role"] == "admin"  # type: ignore[attr-defined]


def test_users_add_asks_twice_without_echo(wsdir: Path) -> None:
    added = _run(
        wsdir,
        "users",
        "add",
        "ana",
        "--role",
        "analyst",
        stdin="pw-typed-twice-1\npw-typed-twice-1\n",
    )
    assert added.exit_code == 0 and "pw-typed-twice" not in added.output  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ["users", "add", "x", "--role", "root", "--password-stdin"],
            "long-enough-pw\n",
            "unknown role",
        ),
        (["users", "add", "x", "--role", "viewer", "--password-stdin"], "short\n", "too short"),
        (["users", "disable", "ghost"], None, "no user named"),
        (["tokens", "add", "t", "--user", "ghost"], None, "no user named"),
        (["tokens", "revoke", "42"], None, "no API token 42"),
        (["serve", "--listen", "nonsense"], None, "HOST:PORT"),
    ],
)
def test_mistakes_are_one_clear_error_line(
    wsdir: Path, args: list[str], stdin: str | None, message: str
) -> None:
    result = _run(wsdir, *args, stdin=stdin)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert message in result.output and "Traceback" not in result.output  # type: ignore[attr-defined]


def test_token_is_printed_once_then_only_listed(wsdir: Path) -> None:
    _run(
        wsdir,
        "users",
        "add",
        "siem",
        "--role",
        "viewer",
        "--password-stdin",
        stdin="long-enough-pw\n",
    )
    made = _run(wsdir, "tokens", "add", "export", "--user", "siem")
    secret = made.output.strip().splitlines()[-1]  # type: ignore[attr-defined]
    assert secret.startswith("cnr_")
    listed = _run(wsdir, "tokens", "list", "--json")
    assert secret not in listed.output  # type: ignore[attr-defined]
    assert json.loads(listed.output)[0]["name"] == "export"  # type: ignore[attr-defined]
    assert _run(wsdir, "tokens", "revoke", "1").exit_code == 0  # type: ignore[attr-defined]
    assert _run(wsdir, "users", "disable", "siem").exit_code == 0  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("with_smtp", [False, True])
def test_serve_answers_on_the_given_address(
    wsdir: Path, monkeypatch: pytest.MonkeyPatch, with_smtp: bool
) -> None:
    servers: list[Any] = []
    build = cli_web._server

    def keep(*args: Any) -> Any:
        servers.append(build(*args))
        return servers[-1]

    # Only to reach the running server and stop it; everything else is the real command.
    monkeypatch.setattr(cli_web, "_server", keep)
    port, smtp_port = _free_port(), _free_port()
    mail = ["--smtp", f"127.0.0.1:{smtp_port}"] if with_smtp else ["--no-smtp"]
    thread = threading.Thread(
        target=_run, args=(wsdir, "serve", "--listen", f"127.0.0.1:{port}", *mail)
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert "frame-ancestors 'none'" in health.headers["content-security-policy"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/me").status_code == 401
        if with_smtp:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                assert smtp.ehlo()[0] == 250
    finally:
        deadline = time.monotonic() + 30
        while not servers and time.monotonic() < deadline:
            time.sleep(0.05)
        for server in servers:
            server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_serve_with_two_workers_shares_sessions_between_processes(wsdir: Path) -> None:
    assert (
        _run(
            wsdir,
            "users",
            "add",
            "ana",
            "--role",
            "viewer",
            "--password-stdin",
            stdin="long-enough-pw\n",
        ).exit_code
        == 0
    )  # type: ignore[attr-defined]
    port = _free_port()
    command = [sys.executable, "-m", "canarino", "serve", "--no-smtp", "--workers", "2"]
    command += ["--listen", f"127.0.0.1:{port}", "--workspace", str(wsdir)]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(base + "/health", timeout=2).json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/signin")
            client.post(
                "/signin",
                data={
                    "username": "ana",
                    "password": "long-enough-pw",
                    "csrf_token": client.cookies.get(SIGNIN_COOKIE, ""),
                    "next": "/",
                },
            )
            # New connections land on either process; the session lives in the database.
            for _ in range(6):
                fresh = httpx.get(base + "/", cookies=dict(client.cookies), timeout=30)
                assert fresh.status_code == 200 and 'data-testid="current-user">ana<' in fresh.text
    finally:
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    text = output.decode(errors="replace")
    assert "2 processes" in text and text.count("Started server process") == 2
