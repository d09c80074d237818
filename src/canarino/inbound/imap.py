"""Polling canary mailboxes hosted elsewhere (IMAP) into the same mail pipeline.

For companies whose canary domains' mail is hosted by a provider, and for the mailboxes
of the pool provisioned at consumer providers (:mod:`canarino.mailboxes`; forward them
all to one collecting mailbox, or poll each): each run logs in,
opens the folder read-only (nothing is deleted, moved or even marked as read), fetches
the messages whose UID is above the last one seen, and records them like the SMTP
listener does (provider ``imap``). The last UID per server, user and folder is kept in
``imap-state.json`` in the workspace, together with the folder's UIDVALIDITY: when the
server renumbers the folder, the run starts over and the pipeline's de-duplication keeps
messages from being counted twice. The state advances only after a batch is stored.
"""

from __future__ import annotations

import json
import os
import ssl as ssl_lib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from ..errors import InvalidInput
from ..mailboxes import pool_addresses
from ..workspace import Workspace
from .evidence import DnsFunc, recipients_in_headers
from .mail import MailIn, on_domains, record_mail

STATE_FILE = "imap-state.json"
BATCH = 50


@dataclass
class PollReport:
    """What one polling run did."""

    fetched: int = 0
    sightings: int = 0
    evidence: int = 0
    noise: int = 0
    not_ours: int = 0
    too_big: int = 0
    last_uid: int = 0


def state_path(ws: Workspace) -> Path:
    """Where the last UID seen per mailbox is remembered."""
    return ws.settings.workspace / STATE_FILE


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise InvalidInput(
            f"{path} is not readable JSON", hint="delete it to fetch every message again"
        ) from None
    return data if isinstance(data, dict) else {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    # Written beside and renamed over: a crash leaves the old state, never half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".imap-state.")
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        json.dump(state, fp, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _watched(ws: Workspace, addresses: list[str]) -> list[str]:
    """Those of ``addresses`` on a monitored domain or in the mailbox pool."""
    ours = on_domains(addresses, ws.settings.mail_domains)
    rest = [a for a in addresses if a not in ours]
    return ours + (pool_addresses(ws, rest) if rest else [])


def _connect(host: str, port: int | None, use_ssl: bool, timeout: float) -> IMAPClient:
    try:
        client = IMAPClient(
            host,
            port=port,
            ssl=use_ssl,
            ssl_context=ssl_lib.create_default_context() if use_ssl else None,
            timeout=timeout,
        )
    except (OSError, IMAPClientError) as exc:
        where = f"{host}:{port}" if port else host
        raise InvalidInput(
            f"cannot reach the IMAP server {where}: {type(exc).__name__}",
            hint="check --host and --port, and --no-ssl for servers without TLS",
        ) from None
    client.normalise_times = False  # keep INTERNALDATE's own time zone
    return client


def _received_at(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def poll_mailbox(
    ws: Workspace,
    host: str,
    user: str,
    password: str,
    *,
    folder: str = "INBOX",
    port: int | None = None,
    use_ssl: bool = True,
    timeout: float = 30.0,
    dnsfunc: DnsFunc | None = None,
    on_sightings: Callable[[], None] | None = None,
) -> PollReport:
    """Fetch the new messages of one mailbox and record them as sightings or noise.

    Recipients are read from Delivered-To, X-Original-To, To and Cc and kept when on a
    monitored domain or in the mailbox pool; when none is and ``user`` itself is such an
    address, the mailbox's own address is the recipient. Messages larger than ``smtp_max_bytes`` are skipped (counted).
    """
    state = _load_state(state_path(ws))
    key = f"{user}@{host}:{port or ''}/{folder}"
    fallback = _watched(ws, [user]) if "@" in user else []
    report = PollReport()
    client = _connect(host, port, use_ssl, timeout)
    try:
        _poll(
            client, ws, user, password, folder, key, state, fallback, report, dnsfunc, on_sightings
        )
    except (OSError, IMAPClientError) as exc:
        raise InvalidInput(
            f"the IMAP connection failed after {report.fetched} new messages: {type(exc).__name__}",
            hint="run the poll again: what was stored is kept and the rest is fetched",
        ) from None
    finally:
        try:
            client.logout()
        except Exception:
            client.shutdown()
    return report


def _poll(
    client: IMAPClient,
    ws: Workspace,
    user: str,
    password: str,
    folder: str,
    key: str,
    state: dict[str, Any],
    fallback: list[str],
    report: PollReport,
    dnsfunc: DnsFunc | None,
    on_sightings: Callable[[], None] | None,
) -> None:
    path = state_path(ws)
    found = state.get(key)
    entry: dict[str, Any] = found if isinstance(found, dict) else {}
    try:
        client.login(user, password)
    except LoginError:
        raise InvalidInput(
            f"the IMAP server refused the login of {user}",
            hint="check --user and the password in the --password-env variable",
        ) from None
    try:
        info = client.select_folder(folder, readonly=True)
    except IMAPClientError:
        raise InvalidInput(f"no folder {folder!r} in the mailbox of {user}") from None
    validity = int(info.get(b"UIDVALIDITY", 0))
    last = int(entry.get("last_uid", 0)) if entry.get("uidvalidity") == validity else 0
    # "N:*" always matches the newest message, even below N: filter again.
    uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
    for start in range(0, len(uids), BATCH):
        chunk = uids[start : start + BATCH]
        meta = client.fetch(chunk, ["RFC822.SIZE", "INTERNALDATE"])
        small = [
            u
            for u in chunk
            if int(meta.get(u, {}).get(b"RFC822.SIZE", 0)) <= ws.settings.smtp_max_bytes
        ]
        report.too_big += len(chunk) - len(small)
        bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        new_evidence = 0
        for uid in small:
            body = bodies.get(uid, {}).get(b"BODY[]")
            if not isinstance(body, bytes):
                continue  # expunged meanwhile
            report.fetched += 1
            recipients = _watched(ws, recipients_in_headers(body)) or fallback
            if not recipients:
                report.not_ours += 1
                continue
            mail = MailIn(
                raw=body,
                recipients=tuple(recipients),
                received_at=_received_at(meta.get(uid, {}).get(b"INTERNALDATE")),
                provider="imap",
            )
            result = record_mail(ws, mail, dnsfunc=dnsfunc)
            report.sightings += result.report.recorded
            report.evidence += result.report.evidence
            new_evidence += result.report.evidence
            report.noise += result.noise
        last = chunk[-1]
        state[key] = {"uidvalidity": validity, "last_uid": last}
        _save_state(path, state)
        if new_evidence and on_sightings is not None:
            on_sightings()
    report.last_uid = last
