"""Commands for the web app: ``serve`` and the people and machines that sign in."""

from __future__ import annotations

import os
import sys
import threading
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import users
from ..errors import InvalidInput
from ..workspace import Workspace
from .base import JsonOpt, WorkspaceOpt, _app, _print_json, _workspace, app, err, out

users_app = _app("People who sign in to the web app, with their roles.")
tokens_app = _app("API tokens for machines; only a hash of each is stored.")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")

ALERT_EVERY = 10.0


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{option} {text!r} must look like HOST:PORT, e.g. 127.0.0.1:8000")
    return host.strip("[]"), int(port)


# --- users ---------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name to sign in with.")],
    role: Annotated[str, typer.Option(help="admin, analyst or viewer.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a user; the password is asked for without echo (or read from stdin)."""
    users.check_role(role)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _workspace(workspace) as ws:
        info = users.add_user(ws, name, password, role)
    out.print(f"User {info.username} ({info.role}) created.")


@users_app.command("list")
def users_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List users and their roles."""
    with _workspace(workspace) as ws:
        rows = users.list_users(ws)
    if json_out:
        _print_json([r.__dict__ for r in rows])
        return
    table = Table("user", "role", "status", "since")
    for r in rows:
        table.add_row(
            r.username, r.role, "disabled" if r.disabled else "active", f"{r.created_at:%Y-%m-%d}"
        )
    out.print(table)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="User to disable.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Disable a user: their sessions end and their tokens stop working."""
    with _workspace(workspace) as ws:
        users.disable_user(ws, name)
    out.print(f"User {name} disabled.")


# --- tokens --------------------------------------------------------------------------------


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. 'siem-export'.")],
    user: Annotated[str, typer.Option("--user", help="User whose role the token acts with.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create an API token; it is printed once and cannot be shown again."""
    with _workspace(workspace) as ws:
        secret, info = users.add_token(ws, name, user)
    err.print(f"Token #{info.id} '{info.name}' acts as {info.username}. Store it now:")
    out.print(secret, highlight=False)


@tokens_app.command("list")
def tokens_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List API tokens (never their secrets)."""
    with _workspace(workspace) as ws:
        rows = users.list_tokens(ws)
    if json_out:
        _print_json([r.__dict__ for r in rows])
        return
    table = Table("id", "name", "user", "last used", "status")
    for r in rows:
        used = f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never"
        table.add_row(str(r.id), r.name, r.username, used, "revoked" if r.revoked else "active")
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="Token number (see 'tokens list').")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Revoke an API token; it stops working at once."""
    with _workspace(workspace) as ws:
        info = users.revoke_token(ws, token_id)
    out.print(f"Token #{info.id} '{info.name}' revoked.")


# --- serve ---------------------------------------------------------------------------------


def _alert_loop(ws: Workspace, stop: threading.Event) -> None:
    """Raise alerts on new sightings every ``ALERT_EVERY`` seconds until ``stop``."""
    from ..alerts import raise_alerts

    while not stop.wait(ALERT_EVERY):
        try:
            raise_alerts(ws)
        except Exception as exc:  # one failed round must not stop the next ones
            err.print(f"[yellow]alerts: {exc}[/]")


def _start_smtp(ws: Workspace, host: str, port: int) -> Any:
    """The inbound SMTP listener; new evidence raises alerts at once, not 10 s later."""
    from ..alerts import raise_alerts
    from ..inbound.smtp import load_tls, start_listener

    cert, key = ws.settings.smtp_tls_cert, ws.settings.smtp_tls_key
    tls = load_tls(cert, key) if cert and key else None
    return start_listener(ws, host, port, on_sightings=lambda: raise_alerts(ws), tls_context=tls)


class _Workers:
    """``workers`` uvicorn processes sharing one listening socket, each with its own app."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self) -> None:
        """Start the workers and supervise them until interrupted."""
        from uvicorn.supervisors import Multiprocess

        Multiprocess(self.config, sockets=[self.config.bind_socket()]).run()


def _server(ws: Workspace, host: str, port: int, workers: int = 1) -> Any:
    """The uvicorn server for the web app of ``ws``: in this process, or ``workers`` processes."""
    import uvicorn

    from ..web.app import create_app

    if workers == 1:
        config = uvicorn.Config(
            create_app(ws), host=host, port=port, log_level="info", proxy_headers=True
        )
        return uvicorn.Server(config)
    # Each worker opens the workspace itself (app_from_environment reads this variable).
    os.environ["CANARINO_WORKSPACE"] = str(ws.settings.workspace)
    config = uvicorn.Config(
        "canarino.web.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        proxy_headers=True,
    )
    return _Workers(config)


@app.command("serve")
def serve(
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for the web app (default: web_listen setting).")
    ] = None,
    smtp: Annotated[
        str | None,
        typer.Option(help="HOST:PORT for inbound canary mail (default: smtp_listen setting)."),
    ] = None,
    no_smtp: Annotated[bool, typer.Option("--no-smtp", help="Do not listen for mail.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Web app processes (one per core helps under load). Each keeps its own "
            "background jobs and rate limits: see the web app guide.",
        ),
    ] = 1,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run the web app, the inbound SMTP listener and the alert trigger (every 10 s)."""
    with _workspace(workspace) as ws:
        host, port = _host_port(listen or ws.settings.web_listen, "--listen")
        listener = None
        if not no_smtp:
            smtp_host, smtp_port = _host_port(smtp or ws.settings.smtp_listen, "--smtp")
            listener = _start_smtp(ws, smtp_host, smtp_port)
            if listener is not None:
                err.print(f"Inbound mail on {smtp_host}:{smtp_port}")
        stop = threading.Event()
        alerts = threading.Thread(target=_alert_loop, args=(ws, stop), daemon=True)
        alerts.start()
        processes = f", {workers} processes" if workers > 1 else ""
        err.print(
            f"Web app on http://{host}:{port}{processes} (public address {ws.settings.public_url})"
        )
        try:
            _server(ws, host, port, workers).run()
        finally:
            stop.set()
            if listener is not None and hasattr(listener, "stop"):
                listener.stop()
