"""Authority reports through the delivery path: exported to a file or e-mailed, recorded.

A report is drafted from the incident (:func:`canarino.incidents.draft_report`, aggregates
only), rendered, and then either written to a file readable by its owner only or sent
through the company's SMTP relay the way notices are (STARTTLS, login, DKIM). Its
Message-ID is derived from the incident, the form and the content, so the same draft
sent again carries the same Message-ID. Every delivery, successful or not, is kept in
the audit log with the form, the authority, the SHA-256 of what was delivered and the
outcome; :func:`report_deliveries` lists them.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import SecretStr
from sqlalchemy import select

from .. import audit, incidents, reports, store
from .. import models as m
from ..errors import DeliveryError, InvalidInput
from ..workspace import Workspace
from .dkim import DkimKey, _dkim_sign
from .letters import _write_private
from .outbox import _now, _sender_domain
from .smtp import _Relay, _SmtpConfig

ACTOR = "canarino"
_ACTIONS = ("export", "send")
_TARGET = "incident {id} authority report"

State = Literal["exported", "sent", "failed", "in_doubt"]


@dataclass(frozen=True)
class ReportDelivery:
    """One delivery of an authority report: where it went, what it was, what became of it."""

    incident_id: int
    form: str
    authority: str
    channel: Literal["file", "email"]
    state: State
    format: str
    sha256: str
    at: datetime
    message_id: str | None = None
    file: str | None = None
    to: str | None = None
    gaps: int = 0
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.__dict__, "at": self.at.isoformat(timespec="seconds")}


def _draft(ws: Workspace, incident_id: int, to: str, fmt: str, now: datetime) -> tuple[Any, str]:
    if fmt not in reports.FORMATS:
        raise InvalidInput(
            f"unknown format {fmt!r}", hint=f"use one of {', '.join(reports.FORMATS)}"
        )
    report = incidents.draft_report(ws, incident_id, to, now=now)
    return report, reports.render(report, fmt)


def _record(ws: Workspace, delivery: ReportDelivery, actor: str) -> ReportDelivery:
    detail = delivery.as_dict()
    action = "export" if delivery.channel == "file" else "send"
    audit.record(ws, actor, action, _TARGET.format(id=delivery.incident_id), detail=detail)
    return delivery


def report_message_id(ws: Workspace, incident_id: int, form: str, sha256: str) -> str:
    """The Message-ID of a report: the same incident, form and content give the same one."""
    key = hashlib.sha256(f"canarino report:{incident_id}:{form}:{sha256}".encode()).hexdigest()
    return f"<{key}@{_sender_domain(ws)}>"


def export_report(
    ws: Workspace,
    incident_id: int,
    to: str,
    out_dir: Path,
    *,
    fmt: str = "md",
    actor: str = ACTOR,
    now: datetime | None = None,
) -> ReportDelivery:
    """Draft the report to authority ``to`` and write it to ``out_dir``; record the export."""
    now = _now(now)
    report, text = _draft(ws, incident_id, to, fmt, now)
    data = text.encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"report-incident{incident_id}-{report.form}-{now:%Y%m%dT%H%M%S}.{fmt}"
    _write_private(path, data)
    delivery = ReportDelivery(
        incident_id,
        report.form,
        report.authority,
        "file",
        "exported",
        fmt,
        hashlib.sha256(data).hexdigest(),
        now,
        file=path.name,
        gaps=len(report.gaps),
    )
    return _record(ws, delivery, actor)


def _message(ws: Workspace, report: Any, to: str, mid: str, now: datetime) -> bytes:
    """The report as an e-mail: Markdown text, HTML alternative, JSON attached."""
    settings = ws.settings
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((" ".join(settings.company_name.split()), settings.company_email))
    msg["To"] = to
    msg["Subject"] = f"{report.title}: incident #{report.incident_id}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = mid
    msg.set_content(reports.render(report, "md"))
    msg.add_alternative(reports.render(report, "html"), subtype="html")
    msg.add_attachment(
        reports.render(report, "json").encode(),
        maintype="application",
        subtype="json",
        filename=f"report-incident{report.incident_id}-{report.form}.json",
    )
    return msg.as_bytes()


def send_report(
    ws: Workspace,
    incident_id: int,
    to: str,
    address: str,
    *,
    host: str,
    port: int,
    timeout: float = 30,
    starttls: bool = False,
    username: str | None = None,
    password: str | SecretStr | None = None,
    tls_context: ssl.SSLContext | None = None,
    dkim_key: DkimKey | None = None,
    actor: str = ACTOR,
    now: datetime | None = None,
) -> ReportDelivery:
    """E-mail the report to authority ``to`` at ``address`` through the relay; record it.

    A refusal or a connection lost during DATA is recorded with its reason and returned
    (state ``failed`` or ``in_doubt``); a relay that cannot be reached is recorded, then
    raised as ``DeliveryError``.
    """
    now = _now(now)
    try:
        address = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        raise InvalidInput(
            "the authority's e-mail address is not valid",
            hint="give the address the authority publishes for breach notifications",
        ) from None
    report = incidents.draft_report(ws, incident_id, to, now=now)
    content_sha = hashlib.sha256(reports.render(report, "json").encode()).hexdigest()
    mid = report_message_id(ws, incident_id, report.form, content_sha)
    data = _message(ws, report, address, mid, now)
    if dkim_key is not None:
        data = _dkim_sign(data, dkim_key) + data

    def outcome(state: State, reason: str | None = None) -> ReportDelivery:
        delivery = ReportDelivery(
            incident_id,
            report.form,
            report.authority,
            "email",
            state,
            "email",
            content_sha,
            now,
            message_id=mid,
            to=address,
            gaps=len(report.gaps),
            reason=reason,
        )
        return _record(ws, delivery, actor)

    secret = (
        password if isinstance(password, SecretStr) or password is None else SecretStr(password)
    )
    relay = _Relay(_SmtpConfig(host, port, timeout, starttls, username, secret, tls_context))
    try:
        relay.connect()
    except DeliveryError as exc:
        outcome("failed", str(exc.args[0]))
        raise
    try:
        result = relay.send(ws.settings.company_email, address, data)
    finally:
        relay.close()
    if result.kind == "sent":
        return outcome("sent")
    if result.kind == "uncertain":
        return outcome("in_doubt", result.reply)
    return outcome("failed", result.reply or "the relay did not take the message")


def report_deliveries(ws: Workspace, incident_id: int) -> list[ReportDelivery]:
    """Every export and sending of an incident's authority reports, oldest first."""
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        rows = s.scalars(
            select(m.AuditEvent.detail)
            .where(
                m.AuditEvent.target == _TARGET.format(id=incident_id),
                m.AuditEvent.action.in_(_ACTIONS),
            )
            .order_by(m.AuditEvent.id)
        ).all()
    out = []
    for detail in rows:
        values = dict(detail)
        values["at"] = datetime.fromisoformat(values["at"]).astimezone(UTC)
        out.append(ReportDelivery(**values))
    return out
