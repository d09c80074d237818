"""Caller verification, "Is this really us?": the outreach register, its codes, and reports.

Staff register every outbound contact before making it (:func:`register_contact`): which
customer or contact point, which channel, why, who. Each registration gets a one-time,
human-friendly code (12 Crockford base32 characters, 60 bits, grouped ``7KQM-4X2P-DQ9R``)
that the caller reads out; only a keyed hash of the code is stored, with an expiry. On
the public page a customer types the code (:func:`check_code`), or their own contact
point, whose answer goes to the address the company holds (:func:`status_job`), so the
page itself never tells whether a contact is a customer. When we are not contacting
them, the customer can report the contact (:func:`report_contact`); a report becomes a
:class:`~canarino.models.Sighting` next to the others.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select

from . import models as m
from .customers import load_customers
from .errors import InvalidInput, NotFound
from .selfcheck import (
    LANGUAGES,
    Lookup,
    Mail,
    MailJob,
    clean_text,
    normalize_contact,
)
from .workspace import Workspace

CHANNELS = ("phone", "sms", "email")
# What a customer says they were contacted by, as the channel a sighting records.
REPORT_CHANNELS = {"phone": "voice", "sms": "sms", "email": "email"}
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
DEFAULT_TTL = timedelta(minutes=30)
MAX_TTL = timedelta(days=7)
MAX_CHECKS = 5  # a code read out once is checked once or twice; more is someone guessing
MAX_PURPOSE = 300
MAX_STAFF = 100
MAX_CALLER = 200
MAX_REPORT = 2000

_LOOKALIKE = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})


@dataclass(frozen=True)
class Registered:
    """A registered contact and its code: the code is shown once and never stored."""

    id: int
    code: str
    channel: str
    customer_id: int | None
    expires_at: datetime


@dataclass(frozen=True)
class ContactView:
    """A registered contact as staff and the person it concerns may see it."""

    id: int
    customer_id: int | None
    channel: str
    staff: str
    purpose: str
    created_at: datetime
    expires_at: datetime

    def active(self, now: datetime) -> bool:
        """Whether the contact is still under way."""
        return self.expires_at > now

    def as_dict(self, now: datetime) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "staff": self.staff,
            "purpose": self.purpose,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "expires_at": self.expires_at.isoformat(timespec="seconds"),
            "active": self.active(now),
        }


def _view(row: m.OutboundContact) -> ContactView:
    return ContactView(
        row.id,
        row.customer_id,
        row.channel,
        row.staff,
        row.purpose,
        row.created_at,
        row.expires_at,
    )


def new_code() -> str:
    """A fresh random contact code, grouped by four for reading aloud."""
    raw = "".join(secrets.choice(CROCKFORD) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalize_code(value: str) -> str | None:
    """The canonical form of a typed code (case, spaces, dashes, look-alikes), or ``None``."""
    if len(value) > 64:
        return None
    raw = "".join(c for c in value.upper() if c not in " -.\t").translate(_LOOKALIKE)
    if len(raw) != CODE_LENGTH or any(c not in CROCKFORD for c in raw):
        return None
    return raw


def _code_digest(ws: Workspace, code: str) -> str:
    # Keyed, so a copy of the database does not let anyone test guesses offline.
    return ws.vault.pseudonyms.digest("contact-code", code).hex()


def _contact_of(ws: Workspace, customer_id: int, channel: str) -> tuple[str, str]:
    in_range = 1 <= customer_id < 2**31  # larger numbers overflow the database's integers
    record = load_customers(ws, [customer_id]).get(customer_id) if in_range else None
    if record is None:
        raise NotFound(
            f"no customer number {customer_id}", hint="check the number in the customer list"
        )
    kind = "email" if channel == "email" else "phone"
    value = record.get(kind, "").strip()
    if not value:
        what = "e-mail address" if kind == "email" else "phone number"
        raise InvalidInput(
            f"customer {customer_id} has no {what} on file",
            hint="choose another channel, or register the contact point with --contact",
        )
    return kind, value


def register_contact(
    ws: Workspace,
    who: int | str,
    channel: str,
    purpose: str,
    staff: str,
    ttl: timedelta = DEFAULT_TTL,
    *,
    actor: str | None = None,
    now: datetime | None = None,
) -> Registered:
    """Register an outbound contact with a customer number or a contact point; get its code.

    ``staff`` is the name the customer will hear; ``actor`` who registered it, for the
    audit log (default: ``staff``).

    >>> reg = register_contact(ws, 42, "phone", "your notice of 3 March", "Alex")  # doctest: +SKIP
    >>> reg.code  # doctest: +SKIP
    '7KQM-4X2P-DQ9R'
    """
    if channel not in CHANNELS:
        raise InvalidInput(f"unknown channel {channel!r}", hint=f"use one of {', '.join(CHANNELS)}")
    purpose_text = clean_text(purpose, MAX_PURPOSE)
    staff_name = clean_text(staff, MAX_STAFF)
    if not purpose_text or not staff_name:
        raise InvalidInput(
            "a contact needs a purpose and the name of the person making it",
            hint="the customer sees both when they check the code",
        )
    if not timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise InvalidInput("a code must live between 1 minute and 7 days")
    if isinstance(who, int):
        kind, value = _contact_of(ws, who, channel)
        customer_id: int | None = who
    else:
        kind, value = normalize_contact(who, ws.settings.establishment)
        if (kind == "email") != (channel == "email"):
            raise InvalidInput(
                f"a {channel} contact needs {'an e-mail address' if channel == 'email' else 'a phone number'}"
            )
        customer_id = None
    digest = ws.vault.pseudonyms.digest(kind, value)
    at = now or datetime.now(UTC)
    code = new_code()
    with ws.db.session() as s:
        if customer_id is None:
            customer_id = s.scalar(
                select(m.Pseudonym.customer_id)
                .where(m.Pseudonym.digest == digest, m.Pseudonym.customer_id.is_not(None))
                .limit(1)
            )
        row = m.OutboundContact(
            customer_id=customer_id,
            contact_digest=digest,
            channel=channel,
            code_digest=_code_digest(ws, normalize_code(code) or ""),
            staff=staff_name,
            purpose=purpose_text,
            created_at=at,
            expires_at=at + ttl,
        )
        s.add(row)
        s.flush()
        s.add(
            m.AuditEvent(
                actor=(actor or staff_name)[:100],
                action="change",
                target=f"outbound-contact:{row.id}",
                detail={"channel": channel, "customer_id": customer_id},
            )
        )
        return Registered(row.id, code, channel, customer_id, row.expires_at)


def list_contacts(
    ws: Workspace,
    *,
    active_only: bool = False,
    now: datetime | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[ContactView]:
    """Registered contacts, newest first; ``active_only`` keeps those not yet expired."""
    query = select(m.OutboundContact).order_by(m.OutboundContact.id.desc())
    if active_only:
        query = query.where(m.OutboundContact.expires_at > (now or datetime.now(UTC)))
    with ws.db.session() as s:
        return [_view(r) for r in s.scalars(query.limit(limit).offset(offset))]


def count_contacts(ws: Workspace, *, active_only: bool = False, now: datetime | None = None) -> int:
    """How many contacts :func:`list_contacts` would list without a limit."""
    query = select(func.count()).select_from(m.OutboundContact)
    if active_only:
        query = query.where(m.OutboundContact.expires_at > (now or datetime.now(UTC)))
    with ws.db.session() as s:
        return s.scalar(query) or 0


@dataclass(frozen=True)
class CodeCheck:
    """The answer to a typed code: ``contact`` is set only when we are contacting them."""

    contact: ContactView | None
    reason: str = ""

    @property
    def genuine(self) -> bool:
        """Whether the code belongs to a contact we are making now."""
        return self.contact is not None


def check_code(ws: Workspace, code: str, *, now: datetime | None = None) -> CodeCheck:
    """Whether a code is one of ours, still valid and not checked too often."""
    raw = normalize_code(code)
    if raw is None:
        return CodeCheck(None, "malformed")
    at = now or datetime.now(UTC)
    with ws.db.session() as s:
        row = s.scalar(
            select(m.OutboundContact)
            .where(m.OutboundContact.code_digest == _code_digest(ws, raw))
            .order_by(m.OutboundContact.id.desc())
            .limit(1)
        )
        if row is None:
            return CodeCheck(None, "unknown")
        if row.expires_at <= at:
            return CodeCheck(None, "expired")
        target = f"outbound-contact-check:{row.id}"
        checks = s.scalar(
            select(func.count()).select_from(m.AuditEvent).where(m.AuditEvent.target == target)
        )
        if (checks or 0) >= MAX_CHECKS:
            return CodeCheck(None, "used")
        s.add(m.AuditEvent(actor="public caller check", action="view", target=target, detail={}))
        return CodeCheck(_view(row))


def active_contacts(
    ws: Workspace, customer_ids: Sequence[int], digest: bytes | None = None, *, now: datetime
) -> list[ContactView]:
    """Contacts under way with these customers (or this contact point), soonest first."""
    if not customer_ids and digest is None:
        return []
    who: list[ColumnElement[bool]] = [m.OutboundContact.customer_id.in_(list(customer_ids))]
    if digest is not None:
        who.append(m.OutboundContact.contact_digest == digest)
    with ws.db.session() as s:
        rows = s.scalars(
            select(m.OutboundContact)
            .where(or_(*who), m.OutboundContact.expires_at > now)
            .order_by(m.OutboundContact.created_at)
        )
        return [_view(r) for r in rows]


_CHANNEL_NAMES = {
    "en": {"phone": "a phone call", "sms": "a text message", "email": "an e-mail"},
    "it": {"phone": "una telefonata", "sms": "un SMS", "email": "un'e-mail"},
}
_STATUS_MAIL = {
    "en": {
        "subject": "{company}: are we contacting you?",
        "intro": "Hello,\n\nsomeone, probably you, asked on the {company} website whether we "
        "are contacting you.\n\n",
        "yes": "Yes. We registered these contacts with you:\n{items}\n\n"
        "We will never ask you for passwords, card numbers, codes sent to you, remote access "
        "to your devices or money transfers.\n",
        "item": "- {channel} from {staff}, about: {purpose} (registered {created} UTC, "
        "valid until {expires} UTC)",
        "no": "No. Nobody from {company} is contacting you at the moment.\n"
        "If someone says they are from {company}: hang up or do not reply, never give codes, "
        "passwords or card details, and call us on the number on our official website.\n",
        "outro": "\nQuestions: {email}. Data Protection Officer: {dpo}.\n\n{company}\n",
    },
    "it": {
        "subject": "{company}: La stiamo contattando?",
        "intro": "Gentile cliente,\n\nqualcuno, probabilmente Lei, ha chiesto sul sito di "
        "{company} se La stiamo contattando.\n\n",
        "yes": "Sì. Abbiamo registrato questi contatti con Lei:\n{items}\n\n"
        "Non Le chiederemo mai password, numeri di carta, codici ricevuti, l'accesso "
        "remoto ai Suoi dispositivi o trasferimenti di denaro.\n",
        "item": "- {channel} da {staff}, per: {purpose} (registrato il {created} UTC, "
        "valido fino al {expires} UTC)",
        "no": "No. Al momento nessuno di {company} La sta contattando.\n"
        "Se qualcuno dice di essere di {company}: riattacchi o non risponda, non dia mai "
        "codici, password o dati della carta, e ci chiami al numero sul nostro sito ufficiale.\n",
        "outro": "\nDomande: {email}. Responsabile della protezione dei dati: {dpo}.\n\n"
        "{company}\n",
    },
}


def compose_status_mail(
    ws: Workspace, customer_ids: Sequence[int], language: str, now: datetime
) -> Mail:
    """The message that tells a customer whether we are contacting them now."""
    lang = language if language in LANGUAGES else "en"
    t = _STATUS_MAIL[lang]
    values = {
        "company": ws.settings.company_name,
        "email": ws.settings.company_email,
        "dpo": ws.settings.dpo_contact,
    }
    contacts = active_contacts(ws, customer_ids, now=now)
    if contacts:
        items = "\n".join(
            t["item"].format(
                channel=_CHANNEL_NAMES[lang][c.channel],
                staff=c.staff,
                purpose=c.purpose,
                created=c.created_at.strftime("%Y-%m-%d %H:%M"),
                expires=c.expires_at.strftime("%Y-%m-%d %H:%M"),
            )
            for c in contacts
        )
        body = t["yes"].format(items=items, **values)
    else:
        body = t["no"].format(**values)
    text = t["intro"].format(**values) + body + t["outro"].format(**values)
    return Mail(t["subject"].format(**values), text)


def status_job(lookup: Lookup, language: str) -> MailJob:
    """The job a "are you contacting me?" request queues: an answer to a customer only."""
    return MailJob(lookup.customer_ids, language, compose_status_mail)


@dataclass(frozen=True)
class ReportResult:
    """What a report did: recorded as a new sighting, or a repeat of one already kept."""

    recorded: bool
    sighting_id: int | None


def report_contact(
    ws: Workspace,
    *,
    contact: str,
    channel: str,
    caller: str = "",
    text: str = "",
    now: datetime | None = None,
) -> ReportResult:
    """Record a customer's report of a contact that was not us, as a sighting.

    ``contact`` is the customer's own address or number that was contacted (kept only as
    a pseudonym); ``caller`` the number or address the contact came from; ``text`` what
    was said. Both are cleaned of control characters and capped.
    """
    if channel not in REPORT_CHANNELS:
        raise InvalidInput(
            "say how you were contacted", hint=f"one of {', '.join(REPORT_CHANNELS)}"
        )
    kind, value = normalize_contact(contact, ws.settings.establishment)
    digest = ws.vault.pseudonyms.digest(kind, value)
    caller_text = clean_text(caller, MAX_CALLER)
    said = clean_text(text, MAX_REPORT)
    at = now or datetime.now(UTC)
    sighting_channel = REPORT_CHANNELS[channel]
    # The same report sent twice within the hour (a double click, a reload) is one report.
    key = hashlib.sha256(
        "\x1f".join(
            [
                "customer_report",
                sighting_channel,
                digest.hex(),
                caller_text,
                said,
                at.strftime("%Y-%m-%dT%H"),
            ]
        ).encode()
    ).hexdigest()
    with ws.db.session() as s:
        existing = s.scalar(select(m.Sighting.id).where(m.Sighting.dedup_key == key))
        if existing is not None:
            return ReportResult(False, existing)
        row = m.Sighting(
            dedup_key=key,
            contact_digest=digest,
            canary_id=None,
            channel=sighting_channel,
            seen_at=at,
            strong=False,
            expected_use=False,
            evidence={
                "kind": "customer_report",
                "caller": caller_text,
                "text": said,
                "provider": "public",
            },
        )
        s.add(row)
        s.flush()
        return ReportResult(True, row.id)
