"""Notice delivery: the outbox, SMTP sending, bounces and printed letters.

The outbox holds one row per (incident, person, channel) under a stable idempotency key,
so preparing again adds nothing. A row moves ``queued → sending → sent | failed |
bounced``; ``sending`` carries a lease (``lease_until``) and is committed before the
message is handed to the relay, ``sent`` right after the relay's 250 reply, one row at a
time. Exactly-once is impossible over SMTP: a run that stops between those two commits
leaves the row in ``sending``. Once its lease has expired, :func:`in_doubt_notices` lists
it and :func:`resolve_in_doubt` settles it by a person's decision (``resend`` under the
same Message-ID, or ``mark_sent``); nothing is resent silently.

People without a usable e-mail address, and people whose e-mail bounced for good, get a
letter; people with neither an e-mail nor a postal address get a ``none`` row in state
``failed`` that says so. Every stored reason is free of addresses and other personal data.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import heapq
import logging
import mailbox
import os
import re
import secrets
import smtplib
import ssl
import threading
import time
import warnings
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date
from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from pydantic import SecretStr
from sqlalchemy import Connection, bindparam, func, insert, select, update

from . import models as m
from . import store
from .customers import load_customers
from .errors import DeliveryError, InvalidInput, WorkspaceError
from .notices import (
    ContentRule,
    NoticeContext,
    RenderedNotice,
    idempotency_key,
    message_id,
    notice_reference,
    readability,
    reference_from_token,
    reference_token,
    render_notice,
    rule_for_resident,
)
from .workspace import Workspace

log = logging.getLogger(__name__)

NOTICE_CONTEXT = "notice"
EMAIL, LETTER, NONE = "email", "letter", "none"
QUEUED, SENDING, SENT, FAILED, BOUNCED = "queued", "sending", "sent", "failed", "bounced"
STATES = (QUEUED, SENDING, SENT, FAILED, BOUNCED)
MAX_ATTEMPTS = 5
NO_EMAIL = "no email address"
INVALID_EMAIL = "invalid e-mail address"
NO_CHANNEL = "no e-mail address and no postal address: nobody can reach this person"
_CHUNK = 500
_ADDRESS = re.compile(r"[^\s<>\"'()\[\],;:]+@[^\s<>\"'()\[\],;:]+")
# Mailbox providers that share one reputation and one rate limit across their domains.
_PROVIDERS: Mapping[str, str] = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "outlook.com": "microsoft",
    "msn.com": "microsoft",
    "yahoo.com": "yahoo",
    "ymail.com": "yahoo",
    "aol.com": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
    "libero.it": "italiaonline",
    "virgilio.it": "italiaonline",
    "inwind.it": "italiaonline",
    "gmx.de": "united-internet",
    "gmx.net": "united-internet",
    "web.de": "united-internet",
    "orange.fr": "orange",
    "wanadoo.fr": "orange",
}
_PROVIDER_PREFIXES = (
    ("hotmail.", "microsoft"),
    ("live.", "microsoft"),
    ("outlook.", "microsoft"),
    ("yahoo.", "yahoo"),
)

Progress = Callable[[int, int], None]

_LETTERS = Environment(
    loader=PackageLoader("canarino", "templates/notices"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# --- reports -------------------------------------------------------------------------------


@dataclass
class PrepareReport:
    """What preparing an incident's notices did; counts and reasons only, no personal data.

    ``prepared`` counts e-mails queued; ``skipped`` counts the people not reached by
    e-mail, by reason (they get a letter, or a ``none`` row when nobody can reach them).
    ``readability`` holds, per language, the score of the first notice written in it.
    """

    incident_id: int
    prepared: int = 0
    already_prepared: int = 0
    letters: int = 0
    unreachable: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_language: dict[str, int] = field(default_factory=dict)
    fallback: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    readability: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


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
    problems: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class InDoubtNotice:
    """A notice a run left in ``sending``: the relay may or may not have it."""

    notice_id: int
    channel: str
    message_id: str
    reference: str | None
    attempts: int
    lease_until: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class NoticeProblem:
    """A notice with something to look at: why it failed, bounced, or differs from plan."""

    notice_id: int
    channel: str
    state: str
    reason: str


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
    unreachable: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass
class LetterReport:
    """What printing letters did: how many, in which files and which format."""

    incident_id: int
    printed: int = 0
    files: list[Path] = field(default_factory=list)
    format: str = "pdf"
    note: str = ""


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: selector, signing domain and PEM private key (RSA or Ed25519)."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)


# --- small helpers -------------------------------------------------------------------------


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


def _validator_reason(exc: Exception, address: str) -> str:
    """email-validator's reason with the quoted parts and domain names of the address removed."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(exc)).replace("@-sign", "at-sign")
    text = re.sub(r"\S+\.\S+\.?", "…", _scrub(text, address).rstrip("."))
    return text.strip() or "not an address"


def _clean_error(code: int, reply: bytes | str, address: str) -> str:
    """An SMTP reply as stored text, with every e-mail address taken out."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {_scrub(text, address)}"[:300]


def provider_of(domain: str) -> str | None:
    """The mailbox provider a recipient domain belongs to, if it is a known big one."""
    d = domain.strip().lower()
    if d in _PROVIDERS:
        return _PROVIDERS[d]
    return next((name for prefix, name in _PROVIDER_PREFIXES if d.startswith(prefix)), None)


def _route(ws: Workspace, address: str) -> str:
    domain = address.rpartition("@")[2].lower()
    known = provider_of(domain)
    if known:
        return known
    # A small domain can identify a person, so only its keyed pseudonym is stored.
    return "d:" + ws.vault.pseudonyms.digest("mail-domain", domain).hex()[:16]


def _append_event(conn: Connection, notice_id: int, event: dict[str, Any]) -> None:
    old = conn.execute(select(m.Notice.events).where(m.Notice.id == notice_id)).scalar()
    conn.execute(
        update(m.Notice).where(m.Notice.id == notice_id).values(events=[*(old or []), event])
    )


def _event(name: str, at: datetime, /, **details: Any) -> dict[str, Any]:
    return {"event": name, "at": at.isoformat(timespec="seconds"), **details}


# --- rendering for the outbox ----------------------------------------------------------------


@dataclass(frozen=True)
class _Incident:
    id: int
    aware_on: date
    occurred_on: date | None
    people: int


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


def _render_spec(spec: Mapping[str, Any], *, reference: str | None = None) -> RenderedNotice:
    data = dict(spec["ctx"])
    for key in ("aware_on", "occurred_on", "notice_on"):
        data[key] = date.fromisoformat(data[key]) if data[key] else None
    if reference is not None:
        data["reference"] = reference
    ctx = NoticeContext(**data)
    return render_notice(ctx, required=spec["required"], forbidden=spec["forbidden"])


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.replace("\n", "\r\n").encode("utf-8"), istext=True)


def _encoded_words(value: str) -> str:
    """A header value as RFC 2047 encoded words when it is not ASCII, folded under 78 columns."""
    if value.isascii():
        return value
    words, chunk = [], ""
    for char in value:
        if len((chunk + char).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


def _mime(from_header: str, to: str, notice: RenderedNotice, mid: str, boundary: str) -> bytes:
    """The RFC 5322 message of a notice, CRLF line ends, without ``Date`` (set at sending).

    Built by hand: the ``email`` package takes about 3 ms per message, this a tenth of it.
    Bodies are quoted-printable, where ``=`` is always escaped, so a boundary that starts
    with ``=_`` cannot occur in them.
    """
    head = "\r\n".join(
        [
            "From: " + from_header,
            "To: " + to,
            "Subject: " + _encoded_words(notice.subject),
            "Message-ID: " + mid,
            "MIME-Version: 1.0",
            "Content-Language: " + notice.language,
            "Auto-Submitted: auto-generated",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ]
    )
    parts = [head.encode("utf-8"), b"\r\n\r\n"]
    for subtype, body in (("plain", notice.text), ("html", notice.html)):
        parts.append(
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode()
        )
        parts.append(_qp(body) + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def _letter_address(record: Mapping[str, str]) -> list[str] | None:
    """The address block of a letter, or ``None`` if the record has no usable address."""
    street = record.get("address", "").strip()
    city, postcode = record.get("city", "").strip(), record.get("postcode", "").strip()
    if not street or not (city or postcode):
        return None
    country = record.get("country", "").strip().upper()
    region = record.get("region", "").strip()
    if country == "US":
        place = f"{city}, {region} {postcode}".strip(" ,")
    elif country == "IT":
        place = " ".join(p for p in (postcode, city, region) if p)
    else:
        place = " ".join(p for p in (postcode, city) if p)
    lines = [_display_name(record) or "", street, place]
    if country:
        lines.append(Locale("en").territories.get(country, country).upper())
    return [" ".join(line.split()) for line in lines if line.strip()]


def _letter_row(
    ws: Workspace,
    incident_id: int,
    customer_id: int,
    spec: Mapping[str, Any],
    address: list[str],
    now: datetime,
    note: str | None,
) -> dict[str, Any]:
    reference = notice_reference(idempotency_key(incident_id, customer_id, LETTER))
    notice = _render_spec(spec, reference=reference)
    spec = {**spec, "ctx": {**spec["ctx"], "reference": reference}}
    return _row(
        ws,
        incident_id,
        customer_id,
        LETTER,
        notice.language,
        {"address": address, "render": spec},
        now,
        content_sha256=hashlib.sha256(notice.text.encode()).hexdigest(),
        note=note,
    )


def _notes(notice: RenderedNotice, used: Sequence[str]) -> str | None:
    notes: list[str] = []
    if notice.fallback_reason:
        notes.append(f"written in {notice.language}: {notice.fallback_reason}")
    if notice.omitted:
        notes.append(f"left out by the rules of {', '.join(used)}: {', '.join(notice.omitted)}")
    if notice.missing:
        notes.append("required but not available: " + ", ".join(notice.missing))
    return "; ".join(notes) or None


class _Planner:
    """Decides and renders the notices of one person; collects the report's tallies."""

    def __init__(
        self,
        ws: Workspace,
        inc: _Incident,
        rules: Mapping[str, ContentRule],
        now: datetime,
        **extra: Any,
    ) -> None:
        self.ws, self.inc, self.rules, self.now, self.extra = ws, inc, rules, now, extra
        name = " ".join(ws.settings.company_name.split())
        self.from_header = formataddr((name, ws.settings.company_email), charset="utf-8")
        self.tally: dict[str, Counter[str]] = {
            k: Counter() for k in ("skipped", "lang", "fallback", "omitted", "missing")
        }
        self.readability: dict[str, dict[str, float]] = {}
        self.counts: Counter[str] = Counter()

    def person(
        self,
        cid: int,
        exposed: list[str],
        language: str,
        where: tuple[str | None, str | None],
        record: Mapping[str, str],
    ) -> list[dict[str, Any]]:
        """The outbox rows of one person: an e-mail, else a letter, else a ``none`` row."""
        ws, inc = self.ws, self.inc
        rule, used = rule_for_resident(self.rules, *where)
        reference = notice_reference(idempotency_key(inc.id, cid, EMAIL))
        ctx = NoticeContext(
            name=_display_name(record),
            language=language,
            exposed_fields=exposed,
            company_name=ws.settings.company_name,
            company_email=ws.settings.company_email,
            dpo_contact=ws.settings.dpo_contact,
            aware_on=inc.aware_on,
            occurred_on=inc.occurred_on,
            reference=reference,
            affected_count=inc.people,
            notice_on=self.now.date() if "date_of_notice" in rule.required else None,
            **self.extra,
        )
        notice = render_notice(ctx, required=rule.required, forbidden=rule.forbidden)
        spec = _spec(ctx, rule)
        self.tally["lang"][notice.language] += 1
        if notice.fallback_reason:
            self.tally["fallback"][notice.fallback_reason] += 1
        self.tally["omitted"].update(notice.omitted)
        self.tally["missing"].update(notice.missing)
        if notice.language not in self.readability:
            self.readability[notice.language] = readability(notice.text, notice.language)
        note = _notes(notice, used)
        raw = record.get("email", "").strip()
        reason = NO_EMAIL
        if raw:
            try:
                address = validate_email(raw, check_deliverability=False).normalized
            except EmailNotValidError as exc:
                reason = f"{INVALID_EMAIL}: {_validator_reason(exc, raw)}"
            else:
                self.counts["emails"] += 1
                return [self._email(cid, address, notice, spec, note)]
        self.tally["skipped"][reason.split(":")[0]] += 1
        rows = []
        if raw:
            payload = {"render": spec}
            rows.append(
                _row(
                    ws,
                    inc.id,
                    cid,
                    EMAIL,
                    notice.language,
                    payload,
                    self.now,
                    state=FAILED,
                    last_error=reason,
                    note=note,
                )
            )
        postal = _letter_address(record)
        if postal:
            letter_note = "; ".join(filter(None, [f"instead of e-mail: {reason}", note]))
            rows.append(_letter_row(ws, inc.id, cid, spec, postal, self.now, letter_note))
            self.counts["letters"] += 1
        else:
            rows.append(
                _row(
                    ws,
                    inc.id,
                    cid,
                    NONE,
                    notice.language,
                    {},
                    self.now,
                    state=FAILED,
                    last_error=NO_CHANNEL,
                )
            )
            self.counts["unreachable"] += 1
        return rows

    def _email(
        self,
        cid: int,
        address: str,
        notice: RenderedNotice,
        spec: dict[str, Any],
        note: str | None,
    ) -> dict[str, Any]:
        key = idempotency_key(self.inc.id, cid, EMAIL)
        mid = message_id(key, _sender_domain(self.ws))
        boundary = "=_" + reference_token(notice_reference(key))
        mime = _mime(self.from_header, address, notice, mid, boundary)
        payload = {
            "to": address,
            "mime": base64.b64encode(zlib.compress(mime, 3)).decode(),
            "render": spec,
        }
        return _row(
            self.ws,
            self.inc.id,
            cid,
            EMAIL,
            notice.language,
            payload,
            self.now,
            route=_route(self.ws, address),
            content_sha256=hashlib.sha256(notice.text.encode()).hexdigest(),
            note=note,
        )


def prepare_notices(
    ws: Workspace,
    incident_id: int,
    *,
    now: datetime | None = None,
    content_rules: Mapping[str, ContentRule] | None = None,
    verify_url: str | None = None,
    company_phone: str | None = None,
    parent_company: str | None = None,
    monitoring_months: int | None = None,
    delayed_for_law_enforcement: bool = False,
    progress: Progress | None = None,
) -> PrepareReport:
    """Render and store one notice per affected person; running it again adds nothing.

    A person with a valid e-mail address gets an e-mail; one without (or with an invalid
    one) gets a letter when a postal address is known, else a ``none`` row in state
    ``failed`` saying nobody can reach them. ``content_rules`` maps jurisdiction codes
    (``US-MA``, ``IT``, ``EU``) to what notices to their residents must and must not say
    (see :func:`canarino.notices.content_rules_from_obligations`); ``verify_url`` is the
    company's page where people check that a message is really from it.
    """
    started = time.perf_counter()
    _sender_domain(ws)  # refuse a workspace without a sender address before any work
    tz = ZoneInfo(ws.settings.timezone)
    with ws.db.session() as s:
        incident = store.get_incident(s, incident_id)
        people = s.execute(
            select(
                m.IncidentPerson.customer_id,
                m.IncidentPerson.fields,
                m.Customer.language,
                m.Customer.country,
                m.Customer.region,
            )
            .join(m.Customer, m.Customer.id == m.IncidentPerson.customer_id)
            .where(m.IncidentPerson.incident_id == incident_id)
            .order_by(m.IncidentPerson.customer_id)
        ).all()
        done = set(
            s.scalars(
                select(m.Notice.customer_id).where(m.Notice.incident_id == incident_id).distinct()
            )
        )
        inc = _Incident(
            incident_id,
            incident.aware_at.astimezone(tz).date(),
            incident.occurred_at.astimezone(tz).date() if incident.occurred_at else None,
            len(people),
        )
    planner = _Planner(
        ws,
        inc,
        content_rules or {},
        _now(now),
        verify_url=verify_url,
        company_phone=company_phone,
        parent_company=parent_company,
        monitoring_months=monitoring_months,
        delayed_for_law_enforcement=delayed_for_law_enforcement,
    )
    report = PrepareReport(incident_id)
    for start in range(0, len(people), _CHUNK):
        chunk = [p for p in people[start : start + _CHUNK] if p[0] not in done]
        report.already_prepared += min(_CHUNK, len(people) - start) - len(chunk)
        records = load_customers(ws, [p[0] for p in chunk])
        rows: list[dict[str, Any]] = []
        for cid, fields_text, language, country, region in chunk:
            record = records[cid]
            exposed = [f for f in fields_text.split(",") if f]
            language = language or record.get("language", "")
            rows += planner.person(cid, exposed, language, (country, region), record)
        if rows:
            with ws.db.session() as s:
                s.execute(insert(m.Notice), rows)
        if progress:
            progress(min(start + _CHUNK, len(people)), len(people))
    report.prepared = planner.counts["emails"]
    report.letters = planner.counts["letters"]
    report.unreachable = planner.counts["unreachable"]
    report.fallback = sum(planner.tally["fallback"].values())
    report.readability = planner.readability
    report.skipped = dict(planner.tally["skipped"].most_common())
    report.by_language = dict(planner.tally["lang"].most_common())
    report.fallback_reasons = dict(planner.tally["fallback"].most_common())
    report.omitted = dict(planner.tally["omitted"].most_common())
    report.missing = dict(planner.tally["missing"].most_common())
    report.seconds = round(time.perf_counter() - started, 3)
    return report


# --- states --------------------------------------------------------------------------------


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


def in_doubt_notices(
    ws: Workspace, incident_id: int, *, now: datetime | None = None
) -> list[InDoubtNotice]:
    """Notices left in ``sending`` whose lease has expired: their delivery is uncertain."""
    now = _now(now)
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        rows = s.execute(
            select(
                m.Notice.id,
                m.Notice.channel,
                m.Notice.message_id,
                m.Notice.reference,
                m.Notice.attempts,
                m.Notice.lease_until,
                m.Notice.last_error,
            )
            .where(m.Notice.incident_id == incident_id, _in_doubt(now))
            .order_by(m.Notice.id)
        ).all()
    return [InDoubtNotice(*row) for row in rows]


def _in_doubt(now: datetime) -> Any:
    return (m.Notice.state == SENDING) & (
        m.Notice.lease_until.is_(None) | (m.Notice.lease_until <= now)
    )


def resolve_in_doubt(
    ws: Workspace,
    incident_id: int,
    action: Literal["resend", "mark_sent"],
    *,
    notice_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Settle notices in doubt by a person's decision; return how many were settled.

    ``resend`` queues them again under the same Message-ID (a receiver that already has
    the message can recognise the duplicate); ``mark_sent`` records that the relay's log
    shows it accepted them. The decision is kept in the notice's history.
    """
    if action not in ("resend", "mark_sent"):
        raise InvalidInput(f"unknown resolution {action!r}", hint="use resend or mark_sent")
    now = _now(now)
    doubtful = {n.notice_id: n for n in in_doubt_notices(ws, incident_id, now=now)}
    chosen = list(doubtful) if notice_ids is None else list(notice_ids)
    stray = [i for i in chosen if i not in doubtful]
    if stray:
        raise InvalidInput(
            f"notices {', '.join(map(str, stray))} are not in doubt",
            hint="list them with in_doubt_notices / 'canarino notices in-doubt'",
        )
    with ws.db.engine.begin() as conn:
        for nid in chosen:
            values: dict[str, Any] = {"lease_until": None, "lease_owner": None, "updated_at": now}
            if action == "resend":
                values["state"] = QUEUED
            else:
                values.update(state=SENT, sent_at=now)
            conn.execute(
                update(m.Notice).where(m.Notice.id == nid, _in_doubt(now)).values(**values)
            )
            _append_event(
                conn,
                nid,
                _event("in_doubt_resolved", now, resolution=action, error=doubtful[nid].last_error),
            )
    log.info("resolved %d notices in doubt of incident %d: %s", len(chosen), incident_id, action)
    return len(chosen)


# --- SMTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SmtpConfig:
    host: str
    port: int
    timeout: float
    starttls: bool
    username: str | None
    password: SecretStr | None = field(repr=False)
    tls_context: ssl.SSLContext | None = field(repr=False)


@dataclass(frozen=True)
class _Outcome:
    """What the relay did with one message."""

    kind: Literal["sent", "refused", "uncertain", "not_sent"]
    code: int = 0
    reply: str = ""


class _Relay:
    """One SMTP connection to the company relay, reopened when it drops."""

    def __init__(self, cfg: _SmtpConfig) -> None:
        self.cfg = cfg
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> None:
        """Open, secure and log in; raise ``DeliveryError`` saying why that is impossible."""
        self.close()
        cfg = self.cfg
        where = f"SMTP server {cfg.host}:{cfg.port}"
        try:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DeliveryError(
                f"cannot connect to {where} ({reason})",
                hint="check --smtp and that the relay is running; notices stay queued",
            ) from None
        step = "STARTTLS"
        try:
            if cfg.starttls:
                smtp.ehlo()
                smtp.starttls(context=cfg.tls_context or ssl.create_default_context())
                smtp.ehlo()
            step = "AUTH"
            if cfg.username:
                secret = cfg.password.get_secret_value() if cfg.password else ""
                smtp.login(cfg.username, secret)
        except smtplib.SMTPNotSupportedError:
            smtp.close()
            hint = "check the relay" + (" or drop --starttls" if step == "STARTTLS" else "")
            if step == "AUTH" and not cfg.starttls:
                hint = "most relays offer AUTH only after STARTTLS: add --starttls"
            raise DeliveryError(f"{where} does not offer {step}", hint=hint) from None
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise DeliveryError(
                f"{where} refused the login ({exc.smtp_code})",
                hint="check the SMTP user name and password",
            ) from None
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            smtp.close()
            raise DeliveryError(
                f"cannot open a session on {where} at {step} ({type(exc).__name__})"
            ) from None
        self._smtp = smtp

    @property
    def connected(self) -> bool:
        """Whether a session is open (as far as we know without asking the server)."""
        return self._smtp is not None

    def send(self, sender: str, to: str, data: bytes) -> _Outcome:
        """Hand one message over, telling apart refused, sent, not sent and uncertain."""
        if self._smtp is None:
            self.connect()
        smtp = self._smtp
        if smtp is None:
            return _Outcome("not_sent", 0, "no connection to the relay")
        international = not (to.isascii() and sender.isascii())
        try:
            smtp.ehlo_or_helo_if_needed()
            if international and not smtp.has_extn("smtputf8"):
                reason = "553 the relay does not accept international addresses (SMTPUTF8)"
                return _Outcome("refused", 553, reason)
            # smtplib's mail()/rcpt() re-parse each address (a third of our CPU per
            # message); these were validated when the notice was prepared.
            for command, arg, ok in (
                ("mail", f"FROM:<{sender}>" + (" SMTPUTF8" if international else ""), (250,)),
                ("rcpt", f"TO:<{to}>", (250, 251)),
            ):
                smtp.putcmd(command, arg)
                code, reply = smtp.getreply()
                if code not in ok:
                    self._after_refusal(code)
                    return _Outcome("refused", code, _clean_error(code, reply, to))
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                self._after_refusal(code)
                return _Outcome("refused", code, _clean_error(code, reply, to))
        except (OSError, smtplib.SMTPException) as exc:
            # Before DATA the relay cannot have taken the message: safe to try again.
            self._drop()
            return _Outcome("not_sent", 0, f"connection lost before DATA ({type(exc).__name__})")
        try:
            if data.startswith(b".") or b"\n." in data:
                data = re.sub(rb"(?m)^\.", b"..", data)
            smtp.send(data + b".\r\n")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return _Outcome(
                "uncertain",
                0,
                f"connection lost during DATA ({type(exc).__name__}): the relay may have the message",
            )
        if code == 250:
            return _Outcome("sent", code, "")
        self._after_refusal(code)
        return _Outcome("refused", code, _clean_error(code, reply, to))

    def _after_refusal(self, code: int) -> None:
        if code == 421:
            self._drop()  # the server is closing the connection (RFC 5321 §3.8)
            return
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        """Say goodbye to the server, ignoring a connection that is already gone."""
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            self._smtp.close()
        self._smtp = None


class _Bucket:
    """A token bucket: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.floor, self.burst = rate, rate / 16, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def ready_at(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1

    def slow_down(self) -> None:
        # Providers answer a sender that goes too fast with 4xx: halve the pace.
        self.rate = max(self.floor, self.rate / 2)


class _Scheduler:
    """Hands notices to workers: ready ones first, per provider at the bucket's pace."""

    def __init__(self, jobs: Iterable[tuple[int, str]], rate: float | None, burst: float) -> None:
        self._cv = threading.Condition()
        self._ready: dict[str, deque[int]] = {}
        for notice_id, route in jobs:
            self._ready.setdefault(route, deque()).append(notice_id)
        self._routes = deque(self._ready)
        self._delayed: list[tuple[float, int, int, str]] = []
        self._outstanding = sum(len(q) for q in self._ready.values())
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, _Bucket] = {}
        self._closed = False
        self._seq = 0

    def _bucket(self, route: str) -> _Bucket | None:
        if self._rate is None:
            return None
        if route not in self._buckets:
            self._buckets[route] = _Bucket(self._rate, self._burst)
        return self._buckets[route]

    def take(self) -> tuple[int, str] | None:
        """The next ``(notice_id, route)``, waiting for its turn; ``None`` when none is left."""
        with self._cv:
            while True:
                if self._closed or self._outstanding <= 0:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, nid, route = heapq.heappop(self._delayed)
                    if route not in self._ready or not self._ready[route]:
                        self._ready.setdefault(route, deque())
                        self._routes.append(route)
                    self._ready[route].appendleft(nid)
                wake = self._delayed[0][0] if self._delayed else None
                for _ in range(len(self._routes)):
                    route = self._routes[0]
                    queue = self._ready.get(route)
                    if not queue:
                        self._routes.popleft()
                        self._ready.pop(route, None)
                        continue
                    bucket = self._bucket(route)
                    at = bucket.ready_at(now) if bucket else now
                    if at <= now:
                        if bucket:
                            bucket.take()
                        self._routes.rotate(-1)
                        return queue.popleft(), route
                    wake = at if wake is None else min(wake, at)
                    self._routes.rotate(-1)
                self._cv.wait(None if wake is None else max(0.0, wake - now))

    def retry(self, notice_id: int, route: str, delay: float, *, slow_down: bool) -> None:
        """Take ``notice_id`` back, to be handed out again after ``delay`` seconds."""
        with self._cv:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, notice_id, route))
            bucket = self._bucket(route)
            if slow_down and bucket:
                bucket.slow_down()
            self._cv.notify_all()

    def finish(self) -> None:
        """One notice is settled for this run."""
        with self._cv:
            self._outstanding -= 1
            self._cv.notify_all()

    def close(self) -> None:
        """Stop handing out work."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def outstanding(self) -> int:
        """Notices not yet settled in this run."""
        with self._cv:
            return self._outstanding


# Built once: building an UPDATE costs more than running it on SQLite.
_CLAIM = (
    update(m.Notice)
    .where(m.Notice.id.in_(bindparam("b_ids", expanding=True)), m.Notice.state == QUEUED)
    .values(
        state=SENDING,
        attempts=m.Notice.attempts + 1,
        lease_until=bindparam("b_lease"),
        lease_owner=bindparam("b_owner"),
        updated_at=bindparam("b_now"),
    )
    .returning(m.Notice.id, m.Notice.sealed, m.Notice.reference, m.Notice.attempts)
)
_MARK_SENT = (
    update(m.Notice)
    .where(m.Notice.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        state=SENT,
        sent_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        lease_until=None,
        last_error=None,
    )
)


class _Claim:
    """A worker's request to claim one notice, answered by the journal."""

    __slots__ = ("done", "row")

    def __init__(self) -> None:
        self.done = False
        self.row: Any = None


class _Journal:
    """Group commit of the busy state changes of a run: claims and ``sent``.

    Each claim is committed before the worker gets it back, and each ``sent`` in the
    next commit after the relay's 250 reply: nothing waits for a batch of messages. What
    all workers ask for while one commit runs goes into the next one, which saves most
    of the per-message cost of a transaction.
    """

    def __init__(self, ws: Workspace, owner: str, lease: timedelta) -> None:
        self._engine, self._owner, self._lease = ws.db.engine, owner, lease
        self._cv = threading.Condition()
        self._claims: dict[int, _Claim] = {}
        self._sent: list[int] = []
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="canarino-journal", daemon=True)
        self._thread.start()

    def claim(self, notice_id: int) -> Any:
        """Claim ``notice_id`` (``sending`` with a lease); the row, or ``None`` if taken."""
        request = _Claim()
        with self._cv:
            self._claims[notice_id] = request
            self._cv.notify_all()
            while not request.done:
                self._cv.wait()
            if self._error is not None:
                raise self._error
        return request.row

    def sent(self, notice_id: int) -> None:
        """Record that the relay accepted ``notice_id``; committed with the next group."""
        with self._cv:
            self._sent.append(notice_id)
            self._cv.notify_all()

    def close(self) -> None:
        """Commit what is pending, stop, and raise what went wrong if anything did."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        with self._engine.connect() as conn:
            while True:
                with self._cv:
                    while not (self._claims or self._sent or self._closed):
                        self._cv.wait()
                    if not (self._claims or self._sent):
                        return
                    claims, self._claims = self._claims, {}
                    sent, self._sent = self._sent, []
                rows: dict[int, Any] = {}
                try:
                    now = datetime.now(UTC)
                    with conn.begin():
                        if sent:
                            conn.execute(_MARK_SENT, {"b_ids": sent, "b_now": now})
                        if claims:
                            values = {"b_lease": now + self._lease, "b_owner": self._owner}
                            found = conn.execute(
                                _CLAIM, {"b_ids": list(claims), "b_now": now, **values}
                            )
                            rows = {row[0]: row for row in found}
                except BaseException as exc:
                    with self._cv:
                        self._error = exc
                        for request in claims.values():
                            request.done = True
                        self._claims.clear()
                        self._cv.notify_all()
                    return
                with self._cv:
                    for notice_id, request in claims.items():
                        request.row, request.done = rows.get(notice_id), True
                    self._cv.notify_all()


@dataclass
class _RunParams:
    sender: str
    envelope_local: str
    envelope_domain: str
    verp: bool
    lease: timedelta
    max_attempts: int
    retry_backoff: float | None
    dkim: DkimKey | None


class _SendRun:
    """One sending run: workers, scheduler, report and progress."""

    def __init__(
        self,
        ws: Workspace,
        incident_id: int,
        cfg: _SmtpConfig,
        params: _RunParams,
        scheduler: _Scheduler,
        report: SendReport,
        total: int,
        progress: Progress | None,
    ) -> None:
        self.ws, self.incident_id, self.cfg, self.params = ws, incident_id, cfg, params
        self.scheduler, self.report, self.total, self.progress = scheduler, report, total, progress
        self.owner = secrets.token_hex(8)
        self.journal = _Journal(ws, self.owner, params.lease)
        self.lock = threading.Lock()
        self.done = 0
        self.problems: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.alive = 0

    # bookkeeping ---------------------------------------------------------------------

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

    # the worker ----------------------------------------------------------------------

    def work(self, relay: _Relay) -> None:
        """Send notices until none are left or the relay cannot be reached any more."""
        try:
            with self.ws.db.engine.connect() as conn:
                while (job := self.scheduler.take()) is not None:
                    notice_id, route = job
                    if not self._ensure_connected(relay):
                        self.scheduler.retry(notice_id, route, 0.0, slow_down=False)
                        break
                    self._deliver(conn, relay, notice_id, route)
        except BaseException as exc:  # handed to the main thread, which raises it
            with self.lock:
                self.errors.append(exc)
            self.scheduler.close()
        finally:
            relay.close()
            with self.lock:
                self.alive -= 1
                last = self.alive == 0
            if last:
                self.scheduler.close()

    def _ensure_connected(self, relay: _Relay) -> bool:
        if relay.connected:
            return True
        error: DeliveryError | None = None
        for pause in (0.0, 0.2, 0.5, 1.0, 2.0):
            time.sleep(pause)
            try:
                relay.connect()
                return True
            except DeliveryError as exc:
                error = exc
        with self.lock:
            if error is not None:
                self.errors.append(error)
        return False

    def _message(self, sealed: bytes, reference: str | None) -> tuple[str, str, bytes]:
        """Envelope sender, recipient and signed bytes of a claimed notice."""
        p = self.params
        payload = self.ws.vault.open(sealed, context=NOTICE_CONTEXT)
        data = b"Date: " + format_datetime(datetime.now(UTC)).encode() + b"\r\n"
        data += zlib.decompress(base64.b64decode(payload["mime"]))
        if p.dkim:
            data = _dkim_sign(data, p.dkim) + data
        envelope = p.sender
        if p.verp and reference:
            envelope = f"{p.envelope_local}+{reference_token(reference)}@{p.envelope_domain}"
        return envelope, payload["to"], data

    def _deliver(self, conn: Connection, relay: _Relay, notice_id: int, route: str) -> None:
        """Claim and send one notice, and record what became of it."""
        claimed = self.journal.claim(notice_id)
        if claimed is None:  # another run took it or a person settled it meanwhile
            self._settle(None)
            return
        _, sealed, reference, attempts = claimed
        try:
            envelope, to, data = self._message(sealed, reference)
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            error = f"cannot read the stored notice ({type(exc).__name__})"
            self._update(conn, notice_id, state=FAILED, lease_until=None, last_error=error)
            self._settle("failed", error)
            return
        outcome = relay.send(envelope, to, data)
        if outcome.kind == "sent":
            self.journal.sent(notice_id)
            self._settle("sent")
        elif outcome.kind == "uncertain":
            # Left 'sending' with its lease ended now: listed in doubt, never resent blindly.
            self._update(conn, notice_id, lease_until=datetime.now(UTC), last_error=outcome.reply)
            log.warning("notice %d: %s", notice_id, outcome.reply)
            self._settle("in_doubt", "connection lost during DATA: delivery uncertain")
        elif outcome.kind == "not_sent":
            # Not an attempt at the recipient: give the attempt back and queue it again.
            self._update(
                conn,
                notice_id,
                state=QUEUED,
                attempts=attempts - 1,
                lease_until=None,
                lease_owner=None,
                last_error=outcome.reply,
            )
            self.scheduler.retry(notice_id, route, 0.0, slow_down=False)
        else:
            self._refused(conn, notice_id, route, attempts, outcome)

    def _refused(
        self, conn: Connection, notice_id: int, route: str, attempts: int, outcome: _Outcome
    ) -> None:
        p = self.params
        code, error = outcome.code, outcome.reply
        status = " ".join(error.split()[:2])
        temporary = 400 <= code < 500
        if temporary and attempts < p.max_attempts:
            self._update(
                conn, notice_id, state=QUEUED, lease_until=None, lease_owner=None, last_error=error
            )
            if p.retry_backoff is None:
                self._settle("retry_later", f"temporary refusal {status}: left for a later run")
                return
            delay = p.retry_backoff * 2 ** (attempts - 1) * (1 + secrets.randbelow(250) / 1000)
            self._count("retried", f"temporary refusal {status}: retried")
            log.info("notice %d: %s; retrying in %.1f s", notice_id, error, delay)
            self.scheduler.retry(notice_id, route, delay, slow_down=True)
            return
        if temporary:
            error = f"gave up after {attempts} temporary refusals; last: {error}"[:300]
        now = datetime.now(UTC)
        with conn.begin():
            conn.execute(
                update(m.Notice)
                .where(m.Notice.id == notice_id)
                .values(
                    state=FAILED,
                    lease_until=None,
                    lease_owner=None,
                    last_error=error,
                    updated_at=now,
                )
            )
            queued = _queue_letter(self.ws, conn, notice_id, error, now)
        if queued:
            self._count("letters_queued")
        log.warning("notice %d failed: %s", notice_id, error)
        self._settle("failed", f"refused {status}" + ("; letter queued" if queued else ""))

    def _update(self, conn: Connection, notice_id: int, **values: Any) -> None:
        with conn.begin():
            conn.execute(
                update(m.Notice)
                .where(m.Notice.id == notice_id)
                .values(updated_at=datetime.now(UTC), **values)
            )


def _dkim_sign(data: bytes, key: DkimKey) -> bytes:
    import dkim  # type: ignore[import-untyped]

    headers = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]
    signature: bytes = dkim.sign(
        data, key.selector.encode(), key.domain.encode(), key.private_key, include_headers=headers
    )
    return signature


def send_notices(
    ws: Workspace,
    incident_id: int,
    *,
    host: str,
    port: int,
    progress: Progress | None = None,
    timeout: float = 30,
    starttls: bool = False,
    username: str | None = None,
    password: str | SecretStr | None = None,
    tls_context: ssl.SSLContext | None = None,
    workers: int = 4,
    rate_per_provider: float | None = None,
    burst: float = 10,
    max_attempts: int = MAX_ATTEMPTS,
    retry_backoff: float | None = 2.0,
    dkim_key: DkimKey | None = None,
    verp: bool = True,
    lease_seconds: float | None = None,
) -> SendReport:
    """Send an incident's queued e-mail notices through the SMTP relay at ``host:port``.

    ``workers`` connections send in parallel; ``rate_per_provider`` caps messages per
    second to each mailbox provider (gmail.com and googlemail.com are one provider), and
    a provider that answers 4xx is slowed down. A 4xx reply is retried in this run after
    ``retry_backoff`` seconds, doubling, until ``max_attempts``; a 5xx reply fails the
    notice and queues a letter. With ``starttls`` the session is encrypted before any
    ``username``/``password`` login; the password is never logged. The envelope sender
    carries the notice reference (``privacy+<ref>@…``) so bounces map back (``verp``).
    Raises ``DeliveryError`` if the relay cannot be reached; unsent notices stay queued.
    """
    started = time.perf_counter()
    if workers < 1:
        raise InvalidInput("workers must be at least 1")
    if dkim_key is not None:
        try:
            _dkim_sign(b"From: check@example.invalid\r\nSubject: key check\r\n\r\nx\r\n", dkim_key)
        except Exception as exc:  # dkimpy raises several unrelated types for a bad key
            raise DeliveryError(
                f"the DKIM key for selector {dkim_key.selector!r} cannot sign ({type(exc).__name__})",
                hint="give a PEM RSA or Ed25519 private key",
            ) from None
    now = datetime.now(UTC)
    lease = timedelta(seconds=lease_seconds if lease_seconds is not None else 2 * timeout + 30)
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        states = dict(
            s.execute(
                select(m.Notice.state, func.count())
                .where(m.Notice.incident_id == incident_id, m.Notice.channel == EMAIL)
                .group_by(m.Notice.state)
            ).all()
        )
        doubtful = (
            s.scalar(
                select(func.count()).where(
                    m.Notice.incident_id == incident_id, m.Notice.channel == EMAIL, _in_doubt(now)
                )
            )
            or 0
        )
        jobs = s.execute(
            select(m.Notice.id, m.Notice.route)
            .where(
                m.Notice.incident_id == incident_id,
                m.Notice.channel == EMAIL,
                m.Notice.state == QUEUED,
            )
            .order_by(m.Notice.id)
        ).all()
    report = SendReport(
        incident_id,
        in_doubt=doubtful,
        busy=states.get(SENDING, 0) - doubtful,
        already_sent=states.get(SENT, 0),
    )
    if report.in_doubt:
        report.problems["left in doubt by an earlier run"] = report.in_doubt
    total = len(jobs)
    if not jobs:
        if progress:
            progress(0, 0)
        return report
    sender = ws.settings.company_email
    local, _, sender_domain = sender.rpartition("@")
    secret = (
        password if isinstance(password, SecretStr) or password is None else SecretStr(password)
    )
    cfg = _SmtpConfig(host, port, timeout, starttls, username, secret, tls_context)
    params = _RunParams(
        sender=sender,
        envelope_local=local,
        envelope_domain=sender_domain,
        verp=verp,
        lease=lease,
        max_attempts=max_attempts,
        retry_backoff=retry_backoff,
        dkim=dkim_key,
    )
    log.info(
        "sending %d notices of incident %d via %s:%d (starttls=%s, auth=%s, workers=%d)",
        total,
        incident_id,
        host,
        port,
        starttls,
        "yes" if username else "no",
        workers,
    )
    first = _Relay(cfg)
    first.connect()  # fail fast, before any notice is claimed
    scheduler = _Scheduler(((nid, route or "-") for nid, route in jobs), rate_per_provider, burst)
    run = _SendRun(ws, incident_id, cfg, params, scheduler, report, total, progress)
    relays = [first] + [_Relay(cfg) for _ in range(min(workers, total) - 1)]
    run.alive = len(relays)
    threads = [
        threading.Thread(target=run.work, args=(relay,), name=f"canarino-send-{i}", daemon=True)
        for i, relay in enumerate(relays)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.journal.close()
    report.problems.update(run.problems)
    report.seconds = round(time.perf_counter() - started, 3)
    left = scheduler.outstanding
    for error in run.errors:
        if not isinstance(error, DeliveryError):
            raise error
    if run.errors and left:
        raise DeliveryError(
            f"{run.errors[0].args[0]} while sending; {left} notices stay queued",
            hint="run send again when the relay is back; check in-doubt notices first",
        )
    return report


# --- letters -------------------------------------------------------------------------------


def _queue_letter(
    ws: Workspace, conn: Connection, notice_id: int, reason: str, now: datetime
) -> bool:
    """Queue a letter to the person of a failed e-mail notice; false if no address is known."""
    row = conn.execute(
        select(m.Notice.incident_id, m.Notice.customer_id, m.Notice.sealed).where(
            m.Notice.id == notice_id
        )
    ).one()
    incident_id, customer_id, sealed = row
    key = idempotency_key(incident_id, customer_id, LETTER)
    if conn.execute(select(m.Notice.id).where(m.Notice.idempotency_key == key)).first():
        return True
    spec = ws.vault.open(sealed, context=NOTICE_CONTEXT).get("render")
    record = load_customers(ws, [customer_id]).get(customer_id, {})
    address = _letter_address(record)
    if spec is None or address is None:
        _append_event(conn, notice_id, _event("no_letter", now, reason="no postal address"))
        return False
    row_values = _letter_row(
        ws, incident_id, customer_id, spec, address, now, f"instead of e-mail: {reason}"
    )
    conn.execute(insert(m.Notice), [row_values])
    _append_event(conn, notice_id, _event("letter_queued", now, reason=reason))
    return True


def _weasyprint() -> tuple[Any | None, str]:
    try:
        with warnings.catch_warnings():
            # WeasyPrint warns at import about optional system libraries it can do without.
            warnings.simplefilter("ignore")
            import weasyprint  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:
        return None, f"WeasyPrint is not usable here ({type(exc).__name__}: {exc})"
    return weasyprint, ""


def print_letters(
    ws: Workspace,
    incident_id: int,
    out_dir: Path,
    *,
    batch_size: int = 200,
    pdf: bool | None = None,
    now: datetime | None = None,
) -> LetterReport:
    """Write the queued letters of an incident as print-ready batches; mark them sent.

    Each batch is one file of A4 letters with the address placed for a windowed envelope
    (DIN 5008 / C5 window). PDF with WeasyPrint when it is installed and works (``pdf``
    None: try it), else print-ready HTML, and ``LetterReport.note`` says why. Files are
    readable by the owner only: they hold names and addresses.
    """
    now = _now(now)
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        ids = s.scalars(
            select(m.Notice.id)
            .where(
                m.Notice.incident_id == incident_id,
                m.Notice.channel == LETTER,
                m.Notice.state == QUEUED,
            )
            .order_by(m.Notice.id)
        ).all()
    report = LetterReport(incident_id)
    tz = ZoneInfo(ws.settings.timezone)
    engine, why = (None, "HTML asked for") if pdf is False else _weasyprint()
    if engine is None:
        report.format, report.note = "html", f"{why}; letters written as print-ready HTML"
        if pdf:
            raise DeliveryError(why, hint="install weasyprint and the pango library, or use HTML")
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%S")
    owner = secrets.token_hex(8)
    for number, start in enumerate(range(0, len(ids), batch_size), start=1):
        batch = ids[start : start + batch_size]
        with ws.db.engine.begin() as conn:
            rows = conn.execute(
                update(m.Notice)
                .where(m.Notice.id.in_(batch), m.Notice.state == QUEUED)
                .values(
                    state=SENDING,
                    attempts=m.Notice.attempts + 1,
                    lease_until=now + timedelta(minutes=30),
                    lease_owner=owner,
                    updated_at=now,
                )
                .returning(m.Notice.id, m.Notice.sealed, m.Notice.reference)
            ).all()
        letters = []
        for nid, sealed, reference in sorted(rows):
            payload = ws.vault.open(sealed, context=NOTICE_CONTEXT)
            notice = _render_spec(payload["render"], reference=reference)
            letters.append(
                {
                    "id": nid,
                    "address": payload["address"],
                    "language": notice.language,
                    "date": format_date(now.astimezone(tz).date(), "long", locale=notice.language),
                    "body": Markup(notice.body_html),
                }
            )
        page = _LETTERS.get_template("letter.html").render(
            letters=letters,
            company=" ".join(ws.settings.company_name.split()),
            company_email=ws.settings.company_email,
        )
        suffix = "pdf" if engine is not None else "html"
        path = out_dir / f"letters-incident{incident_id}-{stamp}-{number:03d}.{suffix}"
        data = engine.HTML(string=page).write_pdf() if engine is not None else page.encode()
        _write_private(path, data)
        with ws.db.engine.begin() as conn:
            for letter in letters:
                conn.execute(
                    update(m.Notice)
                    .where(m.Notice.id == letter["id"], m.Notice.lease_owner == owner)
                    .values(state=SENT, sent_at=now, lease_until=None, updated_at=now)
                )
                _append_event(conn, letter["id"], _event("printed", now, file=path.name))
        report.printed += len(letters)
        report.files.append(path)
    return report


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(data)
        fp.flush()
        os.fsync(fp.fileno())
    tmp.replace(path)


# --- bounces -------------------------------------------------------------------------------


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
            if _queue_letter(ws, conn, notice_id, reason[:300], now):
                report.letters_queued += 1
            else:
                report.unreachable += 1
    report.by_status = dict(statuses.most_common())
    return report
