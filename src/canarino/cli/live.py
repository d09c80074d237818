"""Commands for the live trip-wires: the inbound SMTP listener and mailbox polling."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from .. import sightings
from ..errors import InvalidInput
from ..inbound import imap, smtp
from ..workspace import Workspace
from .base import (
    JsonOpt,
    WorkspaceOpt,
    _app,
    _print_json,
    _workspace,
    app,
    err,
    out,
    sightings_app,
)

imap_app = _app("Poll canary mailboxes hosted by a mail provider (IMAP).")
app.add_typer(imap_app, name="imap")


def _raise_alerts(ws: Workspace) -> None:
    """Tell the security contacts about new evidence (the alerts module, when present)."""
    try:
        from ..alerts import raise_alerts
    except ImportError:
        return
    try:
        raise_alerts(ws)
    except Exception as exc:
        err.print(f"[yellow]alerts: {type(exc).__name__}: {exc}[/]")


@app.command("listen")
def listen(
    address: Annotated[
        str | None,
        typer.Option("--listen", help="HOST:PORT to listen on (default: smtp_listen setting)."),
    ] = None,
    alerts: Annotated[
        bool, typer.Option(help="Raise alerts as soon as new evidence is stored.")
    ] = True,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: offer STARTTLS with it.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Receive mail for the canary domains in the foreground until Ctrl-C."""
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInput("--tls-cert and --tls-key go together")
    with _workspace(workspace) as ws:
        if tls_cert is None and tls_key is None:
            tls_cert, tls_key = ws.settings.smtp_tls_cert, ws.settings.smtp_tls_key
        tls = smtp.load_tls(tls_cert, tls_key) if tls_cert and tls_key else None
        host, port = smtp.parse_listen(address or ws.settings.smtp_listen)
        callback = (lambda: _raise_alerts(ws)) if alerts else None
        listener = smtp.start_listener(ws, host, port, on_sightings=callback, tls_context=tls)
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        err.print(
            f"Listening for canary mail on {host}:{listener.port} for "
            f"{', '.join(sorted(listener.domains)) or 'no domain'}"
            f"{' (STARTTLS offered)' if tls else ''}; Ctrl-C stops."
        )
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            listener.stop()
            s = listener.stats
            err.print(
                f"Stopped: {s.messages:,} messages stored, {s.evidence:,} evidence sightings, "
                f"{s.unknown_recipients:,} unknown recipients, {s.relay_refused:,} relay "
                f"attempts refused, {s.temp_failures:,} temporary failures."
            )


@imap_app.command("poll")
def imap_poll(
    host: Annotated[str, typer.Option(help="IMAP server name.")],
    user: Annotated[str, typer.Option(help="Mailbox user name (often its address).")],
    password_env: Annotated[
        str,
        typer.Option(help="Name of the environment variable that holds the password."),
    ],
    folder: Annotated[str, typer.Option(help="Folder to read.")] = "INBOX",
    port: Annotated[
        int | None, typer.Option(help="Port (default: 993, or 143 with --no-ssl).")
    ] = None,
    ssl: Annotated[bool, typer.Option("--ssl/--no-ssl", help="Use TLS (IMAPS).")] = True,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch a mailbox's new messages read-only and record those to canaries."""
    password = os.environ.get(password_env)
    if not password:
        raise InvalidInput(
            f"the environment variable {password_env} is not set or empty",
            hint=f"export {password_env}=… before running, so the password stays off the "
            "command line",
        )
    with _workspace(workspace) as ws:
        report = imap.poll_mailbox(
            ws,
            host,
            user,
            password,
            folder=folder,
            port=port,
            use_ssl=ssl,
            on_sightings=lambda: _raise_alerts(ws),
        )
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(
        f"{report.fetched:,} new messages: {report.sightings:,} sightings "
        f"({report.evidence:,} evidence), {report.noise:,} other recipients counted as noise, "
        f"{report.not_ours:,} not for a monitored domain, {report.too_big:,} too large; "
        f"last UID {report.last_uid}."
    )


@sightings_app.command("raw")
def sightings_raw(
    message: Annotated[int, typer.Argument(help="Raw message id (evidence's raw_message_id).")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the message here (default: stdout).")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a kept raw message (RFC 5322 bytes) that reached a canary, for analysis."""
    with _workspace(workspace) as ws:
        raw, truncated = sightings.read_raw_message(ws, message)
    if out_file is None:
        typer.get_binary_stream("stdout").write(raw)
    else:
        out_file.write_bytes(raw)
    if truncated:
        err.print("[yellow]The message was cut at raw_message_cap when it was kept.[/]")


@sightings_app.command("noise")
def sightings_noise(
    channel: Annotated[
        str | None, typer.Option(help="Only this channel: email, sms, voice.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Count contacts that were not evidence: unknown addresses and control canaries."""
    with _workspace(workspace) as ws:
        counts = sightings.noise_counts(ws, channel=channel)
    if json_out:
        _print_json(counts)
        return
    out.print(
        f"{counts['unknown']:,} contacts with unknown addresses or numbers, "
        f"{counts['control']:,} with control canaries" + (f" ({channel})." if channel else ".")
    )
