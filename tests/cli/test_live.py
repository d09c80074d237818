from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import zlib
from pathlib import Path

from typer.testing import CliRunner

from canarino import models as m
from canarino.cli import app
from canarino.sightings import count_noise
from canarino.workspace import Workspace


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_listen_serves_in_the_foreground_and_stops_cleanly_on_ctrl_c(ws: Workspace) -> None:
    port = _free_port()
    env = {**os.environ, "CANARINO_WORKSPACE": str(ws.settings.workspace), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "canarino", "listen", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert f"127.0.0.1:{port}" in banner and "canary-mail.it" in banner
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            client.mail("x@spam.example")
            assert client.rcpt("someone@gmail.com")[0] == 550
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    rest = " ".join(rest.split())
    assert "Stopped: 0 messages stored" in rest and "1 relay attempts refused" in rest
    assert "Traceback" not in rest


def test_listen_on_a_busy_port_is_a_one_line_error(ws: Workspace) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["listen", "--listen", f"127.0.0.1:{port}", "-w", str(ws.settings.workspace)]
        )
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.output


def test_listen_refuses_a_malformed_address(ws: Workspace) -> None:
    result = CliRunner().invoke(
        app, ["listen", "--listen", "nonsense", "-w", str(ws.settings.workspace)]
    )
    assert result.exit_code == 1 and "HOST:PORT" in result.output


def test_imap_poll_wants_the_password_in_the_environment(ws: Workspace) -> None:
    args = ["imap", "poll", "--host", "127.0.0.1", "--user", "u@canary-mail.it"]
    result = CliRunner().invoke(
        app,
        [*args, "--password-env", "CANARINO_TEST_NO_SUCH_VAR", "-w", str(ws.settings.workspace)],
        env={"CANARINO_TEST_NO_SUCH_VAR": ""},
    )
    assert result.exit_code == 1 and "CANARINO_TEST_NO_SUCH_VAR is not set" in result.output


def test_imap_poll_to_an_unreachable_server_is_a_clear_error(ws: Workspace) -> None:
    result = CliRunner().invoke(
        app,
        [
            "imap",
            "poll",
            "--host",
            "127.0.0.1",
            "--port",
            str(_free_port()),
            "--no-ssl",
            "--user",
            "u@canary-mail.it",
            "--password-env",
            "BOX_PASSWORD",
            "-w",
            str(ws.settings.workspace),
            "--json",
        ],
        env={"BOX_PASSWORD": "hunter2"},
    )
    assert result.exit_code == 1
    assert "cannot reach the IMAP server" in result.output and "hunter2" not in result.output


def test_sightings_raw_writes_the_kept_message_and_noise_counts(
    ws: Workspace, tmp_path: Path
) -> None:
    with ws.db.session() as s:
        s.add(
            m.InboundMessage(sha256="0" * 64, size=5, truncated=True, raw=zlib.compress(b"hello"))
        )
    count_noise(ws, "email", "unknown", 3)
    where = ["-w", str(ws.settings.workspace)]
    result = CliRunner().invoke(
        app, ["sightings", "raw", "1", "--out", str(tmp_path / "m.eml"), *where]
    )
    assert result.exit_code == 0 and (tmp_path / "m.eml").read_bytes() == b"hello"
    assert "cut at raw_message_cap" in result.output
    result = CliRunner().invoke(app, ["sightings", "raw", "1", *where])
    assert result.exit_code == 0 and result.stdout_bytes.startswith(b"hello")
    result = CliRunner().invoke(app, ["sightings", "raw", "99", *where])
    assert result.exit_code == 1 and "no raw message 99" in result.output
    result = CliRunner().invoke(app, ["sightings", "noise", "--json", *where])
    assert json.loads(result.output) == {"unknown": 3, "control": 0}
