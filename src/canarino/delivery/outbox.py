"""The outbox: one row per (incident, person, channel), its states and its problems."""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from .. import models as m
from .. import store
from ..errors import WorkspaceError
from ..notices import (
    ContentRule,
    NoticeContext,
    RenderedNotice,
    idempotency_key,
    message_id,
    notice_reference,
    render_notice,
)
from ..workspace import Workspace

if TYPE_CHECKING:
    from .routing import _Scheduler

log = logging.getLogger(__name__)

NOTICE_CONTEXT = "notice"
EMAIL, LETTER, NONE = "email", "letter", "none"
QUEUED, SENDING, SENT, FAILED, BOUNCED = "queued", "sending", "sent", "failed", "bounced"
STATES = (QUEUED, SENDING, SENT, FAILED, BOUNCED)
MAX_ATTEMPTS = 5
NO_EMAIL = "no email address"
INVALID_EMAIL = "invalid e-mail address"
NO_CHANNEL = "no e-mail address and no postal address: nobody can reach this person"
_ADDRESS = re.compile(r"[^\s<>\"'()\[\],;:]+@[^\s<>\"'()\[\],;:]+")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NoticeProblem:
    """A notice with something to look at: why it failed, bounced, or differs from plan."""

    notice_id: int
    channel: str
    state: str
    reason: str


@dataclass
class SendReport:
    """What one sending run did.

    ``in_doubt`` counts notices whose delivery is uncertain: left in ``sending`` by an
    earlier run, or cut off mid-DATA in this one (see :func:`in_doubt_notices`). ``busy``
    counts notices another run still holds a lease on. ``problems`` counts notices by
    the reason they were not sent, retried or are in doubt.
    """

    incident_id: int
    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    in_doubt: int = 0
    already_sent: int = 0
    busy: int = 0
    retried: int = 0
    letters_queued: int = 0
    sms_queued: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> list[str]:
        """The run summary as lines of text: what was sent, and every notice that was not."""
        lines = [
            f"sent {self.sent:,}, failed {self.failed:,}, to retry later {self.retry_later:,}, "
            f"in doubt {self.in_doubt:,}, already sent {self.already_sent:,}"
        ]
        if self.busy:
            lines.append(f"{self.busy:,} notices are being sent by another run")
        if self.letters_queued:
            lines.append(f"{self.letters_queued:,} letters queued instead of e-mails")
        if self.sms_queued:
            lines.append(f"{self.sms_queued:,} text messages queued instead of e-mails")
        lines += [f"{n:,} × {why}" for why, n in self.problems.items()]
        if self.in_doubt:
            lines.append(
                f"{self.in_doubt:,} notices may or may not have reached the relay: list them "
                "with 'canarino notices in-doubt', check the relay's log, then resolve them"
            )
        return lines


def _now(now: datetime | None = None) -> datetime:
    return now or datetime.now(UTC)


def _display_name(record: Mapping[str, str]) -> str:
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


def _scrub(text: str, address: str = "") -> str:
    """``text`` on one line with every e-mail address taken out, at most 300 characters."""
    if address:
        text = re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE)
    return _ADDRESS.sub("<address>", " ".join(text.split()))[:300]


def _append_event(conn: Connection, notice_id: int, event: dict[str, Any]) -> None:
    old = conn.execute(select(m.Notice.events).where(m.Notice.id == notice_id)).scalar()
    conn.execute(
        update(m.Notice).where(m.Notice.id == notice_id).values(events=[*(old or []), event])
    )


def _event(name: str, at: datetime, /, **details: Any) -> dict[str, Any]:
    return {"event": name, "at": at.isoformat(timespec="seconds"), **details}


def _row(
    ws: Workspace,
    incident_id: int,
    customer_id: int,
    channel: str,
    language: str,
    payload: dict[str, Any],
    now: datetime,
    **values: Any,
) -> dict[str, Any]:
    """An outbox row; ``values`` add or override columns."""
    key = idempotency_key(incident_id, customer_id, channel)
    return {
        "incident_id": incident_id,
        "customer_id": customer_id,
        "channel": channel,
        "language": language,
        "idempotency_key": key,
        "message_id": message_id(key, _sender_domain(ws)),
        "reference": notice_reference(key),
        "sealed": ws.vault.seal(payload, context=NOTICE_CONTEXT),
        "state": QUEUED,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        **values,
    }


def _spec(ctx: NoticeContext, rule: ContentRule) -> dict[str, Any]:
    """The render inputs of a notice, kept sealed so a letter can be written later."""
    data = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
    for key in ("aware_on", "occurred_on", "notice_on"):
        data[key] = data[key].isoformat() if data[key] else None
    data["exposed_fields"] = list(ctx.exposed_fields)
    return {"ctx": data, "required": sorted(rule.required), "forbidden": sorted(rule.forbidden)}


def _spec_context(stored: Mapping[str, Any], reference: str | None = None) -> NoticeContext:
    """The notice context kept in a render spec (see :func:`_spec`)."""
    data = dict(stored)
    for key in ("aware_on", "occurred_on", "notice_on"):
        data[key] = date.fromisoformat(data[key]) if data[key] else None
    if reference is not None:
        data["reference"] = reference
    return NoticeContext(**data)


def _render_spec(spec: Mapping[str, Any], *, reference: str | None = None) -> RenderedNotice:
    ctx = _spec_context(spec["ctx"], reference)
    return render_notice(ctx, required=spec["required"], forbidden=spec["forbidden"])


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


def notice_problems(ws: Workspace, incident_id: int) -> list[NoticeProblem]:
    """Every notice of an incident with a failure, bounce or note, with its reason."""
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        rows = s.execute(
            select(
                m.Notice.id, m.Notice.channel, m.Notice.state, m.Notice.last_error, m.Notice.note
            )
            .where(
                m.Notice.incident_id == incident_id,
                (m.Notice.last_error.is_not(None)) | (m.Notice.note.is_not(None)),
            )
            .order_by(m.Notice.id)
        ).all()
    return [
        NoticeProblem(nid, channel, state, "; ".join(filter(None, [error, note])))
        for nid, channel, state, error, note in rows
    ]


def _in_doubt(now: datetime) -> Any:
    return (m.Notice.state == SENDING) & (
        m.Notice.lease_until.is_(None) | (m.Notice.lease_until <= now)
    )


def opening_report(s: Any, incident_id: int, channel: str, now: datetime) -> SendReport:
    """A send run's report before it starts: what earlier runs sent, hold, or left in doubt.

    Raises ``NotFound`` for an unknown incident.
    """
    store.get_incident(s, incident_id)
    on_channel = (m.Notice.incident_id == incident_id) & (m.Notice.channel == channel)
    states = dict(
        s.execute(
            select(m.Notice.state, func.count()).where(on_channel).group_by(m.Notice.state)
        ).all()
    )
    doubtful = s.scalar(select(func.count()).where(on_channel, _in_doubt(now))) or 0
    report = SendReport(
        incident_id,
        in_doubt=doubtful,
        busy=states.get(SENDING, 0) - doubtful,
        already_sent=states.get(SENT, 0),
    )
    if report.in_doubt:
        report.problems["left in doubt by an earlier run"] = report.in_doubt
    return report


class _Run:
    """The bookkeeping a sending run shares between its worker threads, on any channel."""

    def __init__(
        self, scheduler: _Scheduler, report: SendReport, total: int, progress: Progress | None
    ) -> None:
        self.scheduler, self.report, self.total, self.progress = scheduler, report, total, progress
        self.owner = secrets.token_hex(8)
        self.lock = threading.Lock()
        self.done = 0
        self.problems: Counter[str] = Counter()
        self.errors: list[BaseException] = []

    def _settle(self, counter: str | None, problem: str | None = None) -> None:
        """One notice is done for this run: count it, report progress."""
        with self.lock:
            if counter:
                setattr(self.report, counter, getattr(self.report, counter) + 1)
            if problem:
                self.problems[problem] += 1
            self.done += 1
            if self.progress:
                self.progress(self.done, self.total)
        self.scheduler.finish()

    def _count(self, counter: str, problem: str | None = None) -> None:
        with self.lock:
            setattr(self.report, counter, getattr(self.report, counter) + 1)
            if problem:
                self.problems[problem] += 1

    def _update(self, conn: Connection, notice_id: int, **values: Any) -> None:
        with conn.begin():
            conn.execute(
                update(m.Notice)
                .where(m.Notice.id == notice_id)
                .values(updated_at=datetime.now(UTC), **values)
            )

    def _in_doubt(self, conn: Connection, notice_id: int, reason: str, problem: str) -> None:
        """Leave the notice 'sending', its lease ended: in doubt, never resent blindly."""
        self._update(conn, notice_id, lease_until=datetime.now(UTC), last_error=reason)
        log.warning("notice %d: %s", notice_id, reason)
        self._settle("in_doubt", problem)

    def _requeue(self, conn: Connection, notice_id: int, reason: str, **values: Any) -> None:
        """Put the notice back in the queue, free for any run (``values``: more columns)."""
        self._update(
            conn,
            notice_id,
            state=QUEUED,
            lease_until=None,
            lease_owner=None,
            last_error=reason,
            **values,
        )


def retry_delay(backoff: float, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``backoff``, with jitter."""
    return backoff * 2 ** (attempts - 1) * (1 + secrets.randbelow(250) / 1000)
