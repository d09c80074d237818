"""Notice delivery: an outbox of rendered notices, sent by SMTP with exactly-once bookkeeping.

``prepare_notices`` renders one notice per affected person and channel and stores it
sealed, keyed by a stable idempotency key, so preparing again adds nothing.
``send_notices`` claims each queued notice (state ``sending``, committed) before handing
it to the relay and records ``sent`` right after the relay accepts it. A notice found in
``sending`` by a later run may or may not have left: it is reported, never resent blindly.
"""

from __future__ import annotations

import re
import smtplib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update

from . import models as m
from . import store
from .customers import load_customers
from .errors import DeliveryError, WorkspaceError
from .notices import NoticeContext, idempotency_key, message_id, render_notice
from .workspace import Workspace

NOTICE_CONTEXT = "notice"
EMAIL = "email"
MAX_ATTEMPTS = 3
NO_EMAIL = "no email address"
_CHUNK = 500
_ADDRESS = re.compile(r"[^\s<>\"'()\[\],;:]+@[^\s<>\"'()\[\],;:]+")

Progress = Callable[[int, int], None]


@dataclass
class PrepareReport:
    """What preparing an incident's notices did; counts only, no personal data."""

    incident_id: int
    prepared: int = 0
    already_prepared: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_language: dict[str, int] = field(default_factory=dict)
    fallback: int = 0


@dataclass
class SendReport:
    """What one sending run did.

    ``in_doubt`` counts notices a previous run left in ``sending``: the relay may or may
    not have accepted them, so a person checks the relay's log before resending.
    """

    incident_id: int
    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    in_doubt: int = 0
    already_sent: int = 0


def _display_name(record: dict[str, str]) -> str:
    full = record.get("full_name", "").strip()
    if full:
        return full
    return " ".join(p for p in (record.get("first_name", ""), record.get("last_name", "")) if p)


def _sender_domain(ws: Workspace) -> str:
    domain = ws.settings.company_email.rpartition("@")[2].strip().lower()
    if not domain or "." not in domain:
        raise WorkspaceError(
            "the company_email setting is not an e-mail address",
            hint="set company_email in canarino.toml, e.g. privacy@example.it",
        )
    return domain


def prepare_notices(
    ws: Workspace, incident_id: int, *, now: datetime | None = None
) -> PrepareReport:
    """Render and store one e-mail notice per affected person; running it again adds nothing.

    People without an e-mail address are counted under ``skipped`` with the reason.
    """
    now = now or datetime.now(UTC)
    domain = _sender_domain(ws)
    tz = ZoneInfo(ws.settings.timezone)
    with ws.db.session() as s:
        incident = store.get_incident(s, incident_id)
        aware_on = incident.aware_at.astimezone(tz).date()
        occurred_on = incident.occurred_at.astimezone(tz).date() if incident.occurred_at else None
        people = s.execute(
            select(m.IncidentPerson.customer_id, m.IncidentPerson.fields, m.Customer.language)
            .join(m.Customer, m.Customer.id == m.IncidentPerson.customer_id)
            .where(m.IncidentPerson.incident_id == incident_id)
            .order_by(m.IncidentPerson.customer_id)
        ).all()
        existing = set(
            s.scalars(
                select(m.Notice.idempotency_key).where(
                    m.Notice.incident_id == incident_id, m.Notice.channel == EMAIL
                )
            )
        )
    report = PrepareReport(incident_id)
    skipped: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for start in range(0, len(people), _CHUNK):
        chunk = people[start : start + _CHUNK]
        todo = [
            (cid, fields, lang)
            for cid, fields, lang in chunk
            if idempotency_key(incident_id, cid, EMAIL) not in existing
        ]
        report.already_prepared += len(chunk) - len(todo)
        records = load_customers(ws, [cid for cid, _, _ in todo])
        rows: list[dict[str, Any]] = []
        for cid, fields_text, stored_language in todo:
            record = records[cid]
            address = record.get("email", "").strip()
            if not address:
                skipped[NO_EMAIL] += 1
                continue
            notice = render_notice(
                NoticeContext(
                    name=_display_name(record),
                    language=stored_language or record.get("language", ""),
                    exposed_fields=[f for f in fields_text.split(",") if f],
                    company_name=ws.settings.company_name,
                    company_email=ws.settings.company_email,
                    dpo_contact=ws.settings.dpo_contact,
                    aware_on=aware_on,
                    occurred_on=occurred_on,
                )
            )
            key = idempotency_key(incident_id, cid, EMAIL)
            payload = {
                "to": address,
                "subject": notice.subject,
                "text": notice.text,
                "html": notice.html,
            }
            rows.append(
                {
                    "incident_id": incident_id,
                    "customer_id": cid,
                    "channel": EMAIL,
                    "language": notice.language,
                    "idempotency_key": key,
                    "message_id": message_id(key, domain),
                    "sealed": ws.vault.seal(payload, context=NOTICE_CONTEXT),
                    "state": "queued",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            languages[notice.language] += 1
            report.fallback += notice.fallback
        if rows:
            with ws.db.session() as s:
                s.execute(insert(m.Notice), rows)
            report.prepared += len(rows)
    report.skipped = dict(skipped.most_common())
    report.by_language = dict(languages.most_common())
    return report


def notice_states(ws: Workspace, incident_id: int) -> dict[str, int]:
    """Count an incident's notices by state."""
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        rows = s.execute(
            select(m.Notice.state, func.count())
            .where(m.Notice.incident_id == incident_id)
            .group_by(m.Notice.state)
        ).all()
    return {state: count for state, count in sorted(rows)}


def _clean_error(code: int, reply: bytes | str, address: str) -> str:
    """An SMTP reply as stored text, with every e-mail address taken out."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    if address:
        text = re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE)
    text = _ADDRESS.sub("<address>", " ".join(text.split()))
    return f"{code} {text}"[:500]


def _build_message(ws: Workspace, payload: dict[str, str], mid: str, language: str) -> EmailMessage:
    msg = EmailMessage()
    sender = ws.settings.company_email
    local, _, domain = sender.rpartition("@")
    msg["From"] = Address(display_name=ws.settings.company_name, username=local, domain=domain)
    msg["To"] = payload["to"]
    msg["Subject"] = payload["subject"]
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = mid
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = language
    msg.set_content(payload["text"])
    msg.add_alternative(payload["html"], subtype="html")
    return msg


class _Relay:
    """One SMTP connection, reopened when the server drops it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> None:
        """Open the connection, or raise ``DeliveryError`` saying why it cannot be opened."""
        self.close()
        try:
            self._smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DeliveryError(
                f"cannot connect to SMTP server {self.host}:{self.port} ({reason})",
                hint="check --smtp and that the relay is running; notices stay queued",
            ) from None

    def send(self, msg: EmailMessage, sender: str, to: str) -> None:
        """Hand one message over; reconnect once if the server had closed the connection."""
        try:
            self._session().send_message(msg, from_addr=sender, to_addrs=[to])
        except smtplib.SMTPServerDisconnected:
            # Relays close idle or throttled connections. No 250 reply came, so the relay
            # has not taken the message; in the rare case it did, the resend carries the
            # same Message-ID and the duplicate can be recognised downstream.
            self.connect()
            self._session().send_message(msg, from_addr=sender, to_addrs=[to])

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            self.connect()
        if self._smtp is None:
            raise DeliveryError(f"no connection to SMTP server {self.host}:{self.port}")
        return self._smtp

    def close(self) -> None:
        """Say goodbye to the server, ignoring a connection that is already gone."""
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            self._smtp.close()
        self._smtp = None


def _sendable() -> Any:
    # A 5xx refusal is permanent (RFC 5321 §4.2.1): failed notices wait for a person.
    return m.Notice.state == "queued"


def _finish(ws: Workspace, notice_id: int, **values: Any) -> None:
    with ws.db.session() as s:
        s.execute(
            update(m.Notice)
            .where(m.Notice.id == notice_id)
            .values(updated_at=datetime.now(UTC), **values)
        )


def send_notices(
    ws: Workspace,
    incident_id: int,
    *,
    host: str,
    port: int,
    progress: Progress | None = None,
    timeout: float = 30,
) -> SendReport:
    """Send an incident's queued notices through the SMTP relay at ``host:port``.

    Each notice is committed as ``sending`` before it is handed over and as ``sent`` as
    soon as the relay accepts it. A 5xx reply marks it ``failed`` for a person to look
    at; a 4xx reply leaves it ``queued`` for the next run, until the third attempt. Raises
    ``DeliveryError`` if the relay cannot be reached; notices not yet handed over stay
    queued.
    """
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        states = dict(
            s.execute(
                select(m.Notice.state, func.count())
                .where(m.Notice.incident_id == incident_id)
                .group_by(m.Notice.state)
            ).all()
        )
        ids = s.scalars(
            select(m.Notice.id)
            .where(m.Notice.incident_id == incident_id, _sendable())
            .order_by(m.Notice.id)
        ).all()
    report = SendReport(
        incident_id, in_doubt=states.get("sending", 0), already_sent=states.get("sent", 0)
    )
    total = len(ids)
    if not ids:
        if progress:
            progress(0, 0)
        return report
    sender = ws.settings.company_email
    relay = _Relay(host, port, timeout)
    relay.connect()
    try:
        for done, notice_id in enumerate(ids, start=1):
            _send_one(ws, relay, notice_id, sender, report)
            if progress:
                progress(done, total)
    finally:
        relay.close()
    return report


def _send_one(
    ws: Workspace, relay: _Relay, notice_id: int, sender: str, report: SendReport
) -> None:
    now = datetime.now(UTC)
    with ws.db.session() as s:
        # Claim the row only if it is still sendable, so two runs never both take it.
        claimed = s.execute(
            update(m.Notice)
            .where(m.Notice.id == notice_id, _sendable())
            .values(state="sending", attempts=m.Notice.attempts + 1, updated_at=now)
            .returning(m.Notice.sealed, m.Notice.message_id, m.Notice.language, m.Notice.attempts)
        ).one_or_none()
    if claimed is None:
        return
    sealed, mid, language, attempts = claimed
    payload = ws.vault.open(sealed, context=NOTICE_CONTEXT)
    to = payload["to"]
    try:
        msg = _build_message(ws, payload, mid, language)
    except (ValueError, TypeError) as exc:
        _finish(
            ws,
            notice_id,
            state="failed",
            last_error=f"cannot build the message: {type(exc).__name__}",
        )
        report.failed += 1
        return
    try:
        relay.send(msg, sender, to)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (550, b"recipient refused"))
        _refused(ws, notice_id, code, attempts, _clean_error(code, reply, to), report)
    except smtplib.SMTPResponseException as exc:
        error = _clean_error(exc.smtp_code, exc.smtp_error, to)
        _refused(ws, notice_id, exc.smtp_code, attempts, error, report)
    except smtplib.SMTPNotSupportedError:
        _finish(
            ws,
            notice_id,
            state="failed",
            last_error="the SMTP server does not support this address (SMTPUTF8)",
        )
        report.failed += 1
    except DeliveryError:
        # The relay went away before accepting this notice: put it back and stop.
        _finish(ws, notice_id, state="queued", last_error="connection to the SMTP server lost")
        raise
    except (OSError, smtplib.SMTPException) as exc:
        # A timeout or broken connection mid-conversation: the relay may have accepted
        # the message, so the row stays 'sending' for a person to check.
        _finish(ws, notice_id, last_error=f"delivery uncertain: {type(exc).__name__}")
        report.in_doubt += 1
        raise DeliveryError(
            f"lost the SMTP server {relay.host}:{relay.port} while sending a notice",
            hint="one notice is marked in doubt; check the relay's log, then run send again",
        ) from None
    else:
        _finish(ws, notice_id, state="sent", sent_at=datetime.now(UTC), last_error=None)
        report.sent += 1


def _refused(
    ws: Workspace, notice_id: int, code: int, attempts: int, error: str, report: SendReport
) -> None:
    if 400 <= code < 500 and attempts < MAX_ATTEMPTS:
        _finish(ws, notice_id, state="queued", last_error=error)
        report.retry_later += 1
    else:
        _finish(ws, notice_id, state="failed", last_error=error)
        report.failed += 1
