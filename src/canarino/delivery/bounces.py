"""Bounces: read delivery status notifications, record their evidence, queue letters."""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import os
import re
import ssl
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Literal

from imapclient import SEEN, IMAPClient  # type: ignore[import-untyped]
from imapclient.exceptions import IMAPClientError, LoginError  # type: ignore[import-untyped]
from sqlalchemy import Connection, select, update

from .. import models as m
from ..errors import DeliveryError
from ..notices import reference_from_token
from ..workspace import Workspace
from .letters import _queue_letter
from .outbox import BOUNCED, EMAIL, _append_event, _event, _now, _scrub, _sender_domain
from .sms import _queue_sms

_IMAP_BATCH = 50


@dataclass
class BounceReport:
    """What reading bounce messages did; addresses never appear here."""

    messages: int = 0
    hard: int = 0
    soft: int = 0
    not_bounces: int = 0
    unmatched: int = 0
    already_recorded: int = 0
    letters_queued: int = 0
    sms_queued: int = 0
    unreachable: int = 0
    too_big: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, other: BounceReport) -> None:
        """Add the counts of another reading to these."""
        for name, value in other.__dict__.items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        statuses = Counter(self.by_status) + Counter(other.by_status)
        self.by_status = dict(statuses.most_common())


@dataclass(frozen=True)
class _Bounce:
    kind: Literal["hard", "soft"]
    status: str
    action: str
    diagnostic: str
    source: str


def _iter_messages(messages: bytes | str | os.PathLike[str] | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(messages, (str, os.PathLike)):
        path = Path(messages)
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            box = mailbox.mbox(path, create=False)
            try:
                for key in box.iterkeys():
                    yield box.get_bytes(key)
            finally:
                box.close()
            return
        yield raw
        return
    if isinstance(messages, bytes):
        if messages.startswith(b"From "):
            for part in re.split(rb"(?m)^From [^\n]*\n", messages):
                if part.strip():
                    yield part
            return
        yield messages
        return
    yield from messages


def _classify(msg: Message) -> _Bounce | None:
    """Read a DSN (RFC 3464) with the standard library; fall back to flufl.bounce."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:] or blocks:
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            diagnostic = _scrub(str(block.get("Diagnostic-Code", "")))
            if action == "failed" or status.startswith("5"):
                kind: Literal["hard", "soft"] = (
                    "hard" if status.startswith("5") or not status else "soft"
                )
                return _Bounce(kind, status or "5.0.0", action, diagnostic, "dsn")
            if action == "delayed" or status.startswith("4"):
                return _Bounce("soft", status or "4.0.0", action, diagnostic, "dsn")
        return None
    try:
        from flufl.bounce import all_failures
    except ImportError:
        return None
    temporary, permanent = all_failures(msg)
    if permanent:
        return _Bounce("hard", "5.0.0", "failed", "", "heuristic")
    if temporary:
        return _Bounce("soft", "4.0.0", "delayed", "", "heuristic")
    return None


def _find_notice(
    conn: Connection, raw: bytes, msg: Message, ws: Workspace
) -> tuple[int | None, str]:
    local, _, domain = ws.settings.company_email.rpartition("@")
    verp = re.compile(
        re.escape(local.encode()) + rb"\+([0-9a-z]{12})@" + re.escape(domain.encode()),
        re.IGNORECASE,
    )
    headers = " ".join(
        str(msg.get(h, ""))
        for h in ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
    ).encode()
    for source, haystack in (("verp", headers), ("verp", raw)):
        found = verp.search(haystack)
        if found:
            reference = reference_from_token(found.group(1).decode())
            nid = conn.execute(
                select(m.Notice.id).where(
                    m.Notice.reference == reference, m.Notice.channel == EMAIL
                )
            ).scalar()
            if nid is not None:
                return nid, source
    pattern = rb"<[0-9a-f]{64}@" + re.escape(_sender_domain(ws).encode()) + rb">"
    for found in re.finditer(pattern, raw, re.IGNORECASE):
        nid = conn.execute(
            select(m.Notice.id).where(m.Notice.message_id == found.group(0).decode().lower())
        ).scalar()
        if nid is not None:
            return nid, "message-id"
    return None, ""


def record_bounces(
    ws: Workspace,
    messages: bytes | str | os.PathLike[str] | Iterable[bytes],
    *,
    now: datetime | None = None,
) -> BounceReport:
    """Read bounce messages (an mbox or EML file, raw bytes, or many) and record them.

    Each DSN is mapped to its notice by the VERP reference in our envelope sender, else
    by the Message-ID it quotes. The evidence kept on the notice is the status code,
    action, the diagnostic with addresses removed and the SHA-256 of the bounce, so the
    same bounce read twice counts once. A hard bounce (5.x.x) sets the notice to
    ``bounced`` and queues a letter; a soft one (4.x.x) is recorded only.
    """
    now = _now(now)
    report = BounceReport()
    statuses: Counter[str] = Counter()
    for raw in _iter_messages(messages):
        report.messages += 1
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        bounce = _classify(msg)
        if bounce is None:
            report.not_bounces += 1
            continue
        digest = hashlib.sha256(raw).hexdigest()
        with ws.db.engine.begin() as conn:
            notice_id, matched_by = _find_notice(conn, raw, msg, ws)
            if notice_id is None:
                report.unmatched += 1
                continue
            events = conn.execute(select(m.Notice.events).where(m.Notice.id == notice_id)).scalar()
            if any(e.get("sha256") == digest for e in events or []):
                report.already_recorded += 1
                continue
            statuses[bounce.status] += 1
            _append_event(
                conn,
                notice_id,
                _event(
                    "bounce",
                    now,
                    kind=bounce.kind,
                    status=bounce.status,
                    action=bounce.action,
                    diagnostic=bounce.diagnostic,
                    source=bounce.source,
                    matched_by=matched_by,
                    sha256=digest,
                ),
            )
            if bounce.kind == "soft":
                report.soft += 1
                continue
            report.hard += 1
            reason = f"hard bounce {bounce.status}" + (
                f": {bounce.diagnostic}" if bounce.diagnostic else ""
            )
            conn.execute(
                update(m.Notice)
                .where(m.Notice.id == notice_id)
                .values(state=BOUNCED, last_error=reason[:300], lease_until=None, updated_at=now)
            )
            lettered = _queue_letter(ws, conn, notice_id, reason[:300], now)
            texted = _queue_sms(ws, conn, notice_id, reason[:300], now) in ("queued", "exists")
            report.letters_queued += lettered
            report.sms_queued += texted
            if not (lettered or texted):
                report.unreachable += 1
    report.by_status = dict(statuses.most_common())
    return report


def fetch_bounces(
    ws: Workspace,
    host: str,
    user: str,
    password: str,
    *,
    folder: str = "INBOX",
    port: int | None = None,
    use_ssl: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
    now: datetime | None = None,
) -> BounceReport:
    """Read the unseen messages of the bounce mailbox over IMAP and record them.

    A batch is marked as seen only after what it held is committed, so a run that stops
    loses nothing; a message read twice is recorded once (its SHA-256 is kept on the
    notice). Messages larger than ``smtp_max_bytes`` are left unread and counted.
    """
    where = f"{host}:{port}" if port else host
    try:
        client = IMAPClient(
            host,
            port=port,
            ssl=use_ssl,
            ssl_context=(ssl_context or ssl.create_default_context()) if use_ssl else None,
            timeout=timeout,
        )
    except (OSError, IMAPClientError) as exc:
        raise DeliveryError(
            f"cannot reach the bounce mailbox's IMAP server {where} ({type(exc).__name__})",
            hint="check the host and port, and --no-ssl for a server without TLS",
        ) from None
    total = BounceReport()
    try:
        try:
            client.login(user, password)
        except LoginError:
            raise DeliveryError(
                f"the IMAP server {where} refused the login of the bounce mailbox",
                hint="check the user name and the password",
            ) from None
        try:
            client.select_folder(folder)
        except IMAPClientError:
            raise DeliveryError(f"the bounce mailbox has no folder {folder!r}") from None
        uids = sorted(client.search(["UNSEEN"]))
        for start in range(0, len(uids), _IMAP_BATCH):
            chunk = uids[start : start + _IMAP_BATCH]
            sizes = client.fetch(chunk, ["RFC822.SIZE"])
            small = [
                uid
                for uid in chunk
                if int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) <= ws.settings.smtp_max_bytes
            ]
            total.too_big += len(chunk) - len(small)
            bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
            raws = [bodies[uid][b"BODY[]"] for uid in small if b"BODY[]" in bodies.get(uid, {})]
            total.add(record_bounces(ws, raws, now=now))
            if small:
                client.add_flags(small, [SEEN])
    except (OSError, IMAPClientError) as exc:
        raise DeliveryError(
            f"the IMAP connection failed after {total.messages} messages ({type(exc).__name__})",
            hint="run it again: what was recorded is kept and the rest is read",
        ) from None
    finally:
        try:
            client.logout()
        except Exception:  # the connection may already be gone
            client.shutdown()
    return total
