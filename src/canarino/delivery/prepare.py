"""Preparing notices: render, check and seal one outbox row per affected person."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import formataddr
from typing import Any
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import insert, select

from .. import models as m
from .. import store
from ..customers import load_customers
from ..errors import InvalidInput
from ..notices import (
    ContentRule,
    NoticeContext,
    RenderedNotice,
    idempotency_key,
    meets_target,
    message_id,
    notice_reference,
    readability,
    reference_token,
    render_notice,
    rule_for_resident,
)
from ..workspace import Workspace
from .letters import _letter_address, _letter_row
from .outbox import (
    EMAIL,
    FAILED,
    INVALID_EMAIL,
    NO_CHANNEL,
    NO_EMAIL,
    NONE,
    QUEUED,
    Progress,
    _display_name,
    _now,
    _row,
    _scrub,
    _sender_domain,
    _spec,
)
from .routing import _route
from .sms import NO_PHONE, SMS, SMS_POLICIES, TOO_LONG, _sms_row, usable_phone

_CHUNK = 500


@dataclass
class PrepareReport:
    """What preparing an incident's notices did; counts and reasons only, no personal data.

    ``prepared`` counts e-mails queued; ``skipped`` counts the people not reached by
    e-mail, by reason (they get a letter, or a ``none`` row when nobody can reach them).
    ``readability`` holds, per language, the score of the first notice written in it.
    ``sms`` counts text messages queued; ``no_sms`` the people who were meant to get
    one but have no usable mobile number (or whose text would not fit), by reason.
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
    sms: int = 0
    no_sms: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> list[str]:
        """The run summary as lines of text: every person not reached by e-mail, and why."""
        lines = [
            f"{self.prepared:,} e-mails prepared, {self.letters:,} letters, "
            f"{self.unreachable:,} people nobody can reach; "
            f"{self.already_prepared:,} were already prepared"
        ]
        if self.by_language:
            lines.append("By language: " + _counts(self.by_language))
        if self.sms or self.no_sms:
            lines.append(f"{self.sms:,} text messages prepared")
        lines += [f"{n:,} people get no text message: {why}" for why, n in self.no_sms.items()]
        lines += [f"{n:,} people not notified by e-mail: {why}" for why, n in self.skipped.items()]
        if self.unreachable:
            lines.append(f"{self.unreachable:,} people: {NO_CHANNEL}")
        lines += [
            f"{n:,} notices in a fallback language: {why}"
            for why, n in self.fallback_reasons.items()
        ]
        if self.omitted:
            lines.append(
                "Left out by the rules of the person's jurisdiction: " + _counts(self.omitted)
            )
        if self.missing:
            lines.append("Required but not available: " + _counts(self.missing))
        for language, scores in self.readability.items():
            verdict = {True: "meets the target", False: "above the target", None: "no target"}
            lines.append(
                f"Readability ({language}): "
                + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in scores.items())
                + f" — {verdict[meets_target(language, scores)]}"
            )
        return lines


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in counts.items())


def _validator_reason(exc: Exception, address: str) -> str:
    """email-validator's reason with the quoted parts and domain names of the address removed."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(exc)).replace("@-sign", "at-sign")
    text = re.sub(r"\S+\.\S+\.?", "…", _scrub(text, address).rstrip("."))
    return text.strip() or "not an address"


@dataclass(frozen=True)
class _Incident:
    id: int
    aware_on: date
    occurred_on: date | None
    people: int


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
        sms: str = "never",
        **extra: Any,
    ) -> None:
        self.ws, self.inc, self.rules, self.now, self.extra = ws, inc, rules, now, extra
        self.sms = sms
        name = " ".join(ws.settings.company_name.split())
        self.from_header = formataddr((name, ws.settings.company_email), charset="utf-8")
        self.tally: dict[str, Counter[str]] = {
            k: Counter() for k in ("skipped", "lang", "fallback", "omitted", "missing", "no_sms")
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
                email = self._email(cid, address, notice, spec, note)
                if self.sms == "always":
                    return [email, *self._sms(cid, spec, record, where[0], note)]
                return [email]
        self.tally["skipped"][reason.split(":")[0]] += 1
        rows = []
        texted = False
        if self.sms != "never":
            sms_rows = self._sms(cid, spec, record, where[0], f"instead of e-mail: {reason}")
            rows += sms_rows
            texted = any(r["state"] == QUEUED for r in sms_rows)
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
        elif not texted:
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

    def _sms(
        self,
        cid: int,
        spec: dict[str, Any],
        record: Mapping[str, str],
        country: str | None,
        note: str | None,
    ) -> list[dict[str, Any]]:
        """The text-message row of one person, or none and the reason in the tally."""
        raw = record.get("phone", "")
        phone, why = usable_phone(raw, country or record.get("country"))
        if phone is None:
            self.tally["no_sms"][why or NO_PHONE] += 1
            if why == NO_PHONE:
                return []
            failed = _row(
                self.ws,
                self.inc.id,
                cid,
                SMS,
                spec["ctx"]["language"] or "",
                {"render": spec},
                self.now,
                state=FAILED,
                last_error=why,
                note=note,
            )
            return [failed]
        row = _sms_row(self.ws, self.inc.id, cid, spec, phone, self.now, note)
        if row["state"] == QUEUED:
            self.counts["sms"] += 1
        else:
            self.tally["no_sms"][TOO_LONG] += 1
        return [row]

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
    sms: str | None = None,
    progress: Progress | None = None,
) -> PrepareReport:
    """Render and store one notice per affected person; running it again adds nothing.

    A person with a valid e-mail address gets an e-mail; one without (or with an invalid
    one) gets a letter when a postal address is known, else a ``none`` row in state
    ``failed`` saying nobody can reach them. ``content_rules`` maps jurisdiction codes
    (``US-MA``, ``IT``, ``EU``) to what notices to their residents must and must not say
    (see :func:`canarino.notices.content_rules_from_obligations`); ``verify_url`` is the
    company's page where people check that a message is really from it.

    ``sms`` (default: the ``sms_when`` setting) adds text messages: ``fallback`` gives
    one to each person no e-mail can reach (next to their letter, or instead of the
    ``none`` row), ``always`` to everyone with a mobile number; ``never`` sends none.
    People without a usable mobile number are counted by reason in ``no_sms``.
    """
    started = time.perf_counter()
    _sender_domain(ws)  # refuse a workspace without a sender address before any work
    sms = sms or ws.settings.sms_when
    if sms not in SMS_POLICIES:
        raise InvalidInput(f"unknown SMS policy {sms!r}", hint="use never, fallback or always")
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
    if verify_url is None:
        # The public caller-verification page, so people can check a message is ours.
        verify_url = ws.settings.public_url.rstrip("/") + "/public/verify"
    planner = _Planner(
        ws,
        inc,
        content_rules or {},
        _now(now),
        sms,
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
    report.sms = planner.counts["sms"]
    report.no_sms = dict(planner.tally["no_sms"].most_common())
    report.fallback = sum(planner.tally["fallback"].values())
    report.readability = planner.readability
    report.skipped = dict(planner.tally["skipped"].most_common())
    report.by_language = dict(planner.tally["lang"].most_common())
    report.fallback_reasons = dict(planner.tally["fallback"].most_common())
    report.omitted = dict(planner.tally["omitted"].most_common())
    report.missing = dict(planner.tally["missing"].most_common())
    report.seconds = round(time.perf_counter() - started, 3)
    return report
