"""Sightings: contacts with canary addresses and numbers, filtered and weighed.

A sighting is one e-mail, SMS or call that reached a monitored contact point, or one
appearance of it in a dump. Contacts made by a recipient from its own authorised
infrastructure (allow-listed DKIM domains, sending IPs, caller IDs) to canaries it
received are *expected use*: its legitimate campaigns must not read as a leak. Every
other sighting of a canary is evidence for the decoder; sightings of addresses that are
not canaries are kept only as noise statistics, and so are contacts with control canaries
(counted per day and channel in ``noise_counts``). A raw message that reached a canary is
kept compressed and size-capped beside its sightings.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .attribution import Attribution
from .errors import InvalidInput
from .normalize import IdentifierError, contacts_by_pseudonym, normalize_email, normalize_phone
from .shares import CANARY_CONTEXT
from .trace import decide
from .workspace import Workspace

CHANNELS = ("email", "sms", "voice", "dump")
SENDER_KINDS = ("dkim", "ip", "caller_id")
NOISE_KINDS = ("unknown", "control")


@dataclass(frozen=True)
class SightingIn:
    """A contact as a door (mail listener, SMS/voice webhook, analyst) reports it."""

    channel: str
    contact: str
    seen_at: datetime
    dkim_domain: str | None = None
    sender_ip: str | None = None
    caller_id: str | None = None
    uses_name: bool = False
    reference: str | None = None
    #: More evidence for the shared ``evidence`` JSON (from_domain, urls, simhash…); kept
    #: only for canaries, never for contacts that are not canaries.
    evidence: Mapping[str, Any] | None = None
    #: The door's own id of the message or call (a hash of a raw mail, a provider id): a
    #: retried delivery with the same id is a duplicate, whatever its time.
    message_id: str | None = None


@dataclass
class SightingReport:
    """What recording a batch of sightings did."""

    recorded: int = 0
    duplicates: int = 0
    evidence: int = 0
    expected_use: int = 0
    not_canary: int = 0
    control: int = 0
    problems: list[str] = field(default_factory=list)
    #: Ids of the sightings stored, in input order.
    ids: list[int] = field(default_factory=list)
    #: Ids of the stored sightings that are evidence (canary, not expected use).
    evidence_ids: list[int] = field(default_factory=list)
    #: Id of the raw message kept with them, if one was given and kept.
    raw_message_id: int | None = None


def _sender_value(kind: str, value: str) -> str:
    value = value.strip()
    if kind == "dkim":
        return value.lower().strip(".")
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise InvalidInput(f"{value!r} is not an IP address") from None
    try:
        return normalize_phone(value, None)
    except IdentifierError:
        raise InvalidInput("a caller ID must be an international number such as +39…") from None


def allow_sender(ws: Workspace, recipient: str, kind: str, value: str) -> None:
    """Authorise infrastructure of ``recipient``: a DKIM d= domain, an IP or a caller ID."""
    if kind not in SENDER_KINDS:
        raise InvalidInput(
            f"unknown sender kind {kind!r}", hint=f"use one of {', '.join(SENDER_KINDS)}"
        )
    clean = _sender_value(kind, value)
    with ws.db.session() as s:
        who = store.get_recipient(s, recipient)
        s.add(m.AllowedSender(recipient_id=who.id, kind=kind, value=clean))
        try:
            s.flush()
        except IntegrityError:
            raise InvalidInput(f"{kind} {clean} is already allowed for {recipient}") from None


def _contact(channel: str, raw: str) -> tuple[str, str]:
    if channel == "email" or (channel == "dump" and "@" in raw):
        return "email", normalize_email(raw)
    return "phone", normalize_phone(raw, None)


def _dedup(item: SightingIn, digest: bytes) -> str:
    if item.message_id:
        parts = [item.channel, digest.hex(), "message", item.message_id]
    else:
        parts = [
            item.channel,
            digest.hex(),
            item.seen_at.astimezone(UTC).isoformat(timespec="seconds"),
            item.reference or "",
        ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def record_sightings(
    ws: Workspace, items: Iterable[SightingIn], *, raw: bytes | None = None
) -> SightingReport:
    """Store sightings, link them to canaries, and mark authorised contacts as expected use.

    ``raw`` is the message the sightings came from: it is kept (compressed, capped at
    ``raw_message_cap`` bytes) and linked to them when at least one new sighting is of a
    canary. Everything is stored in one transaction, or nothing is.
    """
    with ws.db.session() as s:
        return _record(ws, s, items, raw)


def _record(
    ws: Workspace, s: Session, items: Iterable[SightingIn], raw: bytes | None
) -> SightingReport:
    report = SightingReport()
    ps = ws.vault.pseudonyms
    allowed: dict[tuple[str, str], set[int]] = {}
    for rid, kind, value in s.execute(
        select(m.AllowedSender.recipient_id, m.AllowedSender.kind, m.AllowedSender.value)
    ):
        allowed.setdefault((kind, value), set()).add(rid)
    message = _raw_message(ws, s, raw) if raw is not None else None
    first_canary_sighting: m.Sighting | None = None
    stored: list[tuple[m.Sighting, bool]] = []
    for n, item in enumerate(items, 1):
        if item.channel not in CHANNELS:
            report.problems.append(f"sighting {n}: unknown channel")
            continue
        if item.seen_at.tzinfo is None:
            report.problems.append(f"sighting {n}: time without a time zone")
            continue
        try:
            kind, value = _contact(item.channel, item.contact)
        except IdentifierError as exc:
            report.problems.append(f"sighting {n}: {exc}")
            continue
        digest = ps.digest(kind, value)
        key = _dedup(item, digest)
        if s.scalar(select(m.Sighting.id).where(m.Sighting.dedup_key == key)):
            report.duplicates += 1
            continue
        found = s.execute(
            select(m.Pseudonym.canary_id, m.Canary.layer)
            .join(m.Canary, m.Canary.id == m.Pseudonym.canary_id)
            .where(m.Pseudonym.digest == digest)
            .limit(1)
        ).first()
        canary_id, layer = found if found is not None else (None, None)
        authorised = _authorised(s, item, canary_id, allowed)
        evidence: dict[str, Any] = {
            "dkim_domain": item.dkim_domain,
            "sender_ip": item.sender_ip,
            "caller_id": item.caller_id,
            "reference": item.reference,
        }
        # What a contact said is kept only when it reached a canary: a message to
        # anyone else is counted, and its content is not ours to keep.
        if canary_id is not None:
            evidence.update(item.evidence or {})
            if message is not None:
                evidence["raw_message_id"] = message.id
        sighting = m.Sighting(
            dedup_key=key,
            contact_digest=digest,
            canary_id=canary_id,
            channel=item.channel,
            seen_at=item.seen_at,
            strong=item.uses_name,
            expected_use=authorised is not None,
            allowed_recipient_id=authorised,
            evidence=evidence,
        )
        s.add(sighting)
        report.recorded += 1
        day = item.seen_at.astimezone(UTC).date()
        if canary_id is None:
            report.not_canary += 1
            _count_noise(s, day.isoformat(), item.channel, "unknown", 1)
        else:
            first_canary_sighting = first_canary_sighting or sighting
            if layer == "control":
                report.control += 1
                _count_noise(s, day.isoformat(), item.channel, "control", 1)
            if authorised is not None:
                report.expected_use += 1
            else:
                report.evidence += 1
        stored.append((sighting, canary_id is not None and authorised is None))
    s.flush()
    report.ids = [sighting.id for sighting, _ in stored]
    report.evidence_ids = [sighting.id for sighting, evidence in stored if evidence]
    if message is not None:
        if first_canary_sighting is None:
            s.delete(message)
        else:
            message.sighting_id = first_canary_sighting.id
            report.raw_message_id = message.id
    return report


def _raw_message(ws: Workspace, s: Session, raw: bytes) -> m.InboundMessage:
    """Keep ``raw`` compressed and capped; linked to its first sighting later."""
    cap = ws.settings.raw_message_cap
    message = m.InboundMessage(
        channel="email",
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        truncated=len(raw) > cap,
        raw=zlib.compress(raw[:cap], 6),
    )
    s.add(message)
    s.flush()
    return message


def read_raw_message(ws: Workspace, message_id: int) -> tuple[bytes, bool]:
    """The kept bytes of a raw message and whether they were cut at the cap."""
    with ws.db.session() as s:
        found = s.get(m.InboundMessage, message_id)
        if found is None:
            raise InvalidInput(f"no raw message {message_id}")
        return zlib.decompress(found.raw), found.truncated


def _count_noise(s: Session, day: str, channel: str, kind: str, n: int) -> None:
    """Add ``n`` to a day's noise count; one statement, safe under concurrent writers."""
    values = {"day": day, "channel": channel, "kind": kind, "count": n}
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = insert(m.NoiseCount).values(**values)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["day", "channel", "kind"],
                set_={"count": m.NoiseCount.count + stmt.excluded.count},
            )
        )
        return
    changed = s.execute(
        update(m.NoiseCount)
        .where(m.NoiseCount.day == day, m.NoiseCount.channel == channel, m.NoiseCount.kind == kind)
        .values(count=m.NoiseCount.count + n)
    )
    if not getattr(changed, "rowcount", 0):
        s.add(m.NoiseCount(**values))


def count_noise(
    ws: Workspace, channel: str, kind: str, n: int = 1, *, when: datetime | None = None
) -> None:
    """Count ``n`` contacts that are not evidence (``unknown`` address, ``control`` canary)."""
    if channel not in CHANNELS or kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise channel/kind {channel!r}/{kind!r}")
    day = (when or datetime.now(UTC)).astimezone(UTC).date().isoformat()
    with ws.db.session() as s:
        _count_noise(s, day, channel, kind, n)


def noise_counts(ws: Workspace, *, channel: str | None = None) -> dict[str, int]:
    """Total noise contacts per kind (``unknown``, ``control``), over all days."""
    with ws.db.session() as s:
        query = select(m.NoiseCount.kind, func.sum(m.NoiseCount.count)).group_by(m.NoiseCount.kind)
        if channel is not None:
            query = query.where(m.NoiseCount.channel == channel)
        found = {kind: int(total or 0) for kind, total in s.execute(query)}
    return {kind: found.get(kind, 0) for kind in NOISE_KINDS}


def email_canaries(ws: Workspace, addresses: Iterable[str]) -> dict[str, dict[str, str]]:
    """The canaries among ``addresses``: each address (as given) to its canary's details.

    The details are the canary's own synthetic record (name, address, references); a
    door uses them to tell which of them a message quotes. Addresses that are not
    canaries, or not addresses, are left out.
    """
    digests = contacts_by_pseudonym(ws.vault.pseudonyms, "email", addresses)
    if not digests:
        return {}
    out: dict[str, dict[str, str]] = {}
    with ws.db.session() as s:
        rows = s.execute(
            select(m.Pseudonym.digest, m.Canary.sealed)
            .join(m.Canary, m.Canary.id == m.Pseudonym.canary_id)
            .where(m.Pseudonym.digest.in_(list(digests)))
        )
        for digest, sealed in rows:
            fields = ws.vault.open(sealed, context=CANARY_CONTEXT)
            for address in digests[digest]:
                out[address] = {k: str(v) for k, v in fields.items() if v}
    return out


def is_canary_email(ws: Workspace, address: str, *, count_unknown: bool = False) -> bool:
    """Whether ``address`` is a canary's e-mail address (any layer).

    With ``count_unknown``, an address that is not a canary is counted as ``unknown``
    e-mail noise in the same transaction (a mail door refusing a recipient).
    """
    try:
        digest: bytes | None = ws.vault.pseudonyms.digest("email", normalize_email(address))
    except IdentifierError:
        digest = None
    with ws.db.session() as s:
        found = digest is not None and (
            s.scalar(
                select(m.Pseudonym.canary_id)
                .where(m.Pseudonym.digest == digest, m.Pseudonym.canary_id.is_not(None))
                .limit(1)
            )
            is not None
        )
        if not found and count_unknown:
            _count_noise(s, datetime.now(UTC).date().isoformat(), "email", "unknown", 1)
    return found


def _authorised(
    s: Session, item: SightingIn, canary_id: int | None, allowed: dict[tuple[str, str], set[int]]
) -> int | None:
    """The recipient whose own infrastructure made this contact to a canary it holds."""
    if canary_id is None:
        return None
    senders: list[tuple[str, str]] = []
    for kind, raw in (
        ("dkim", item.dkim_domain),
        ("ip", item.sender_ip),
        ("caller_id", item.caller_id),
    ):
        if raw:
            try:
                senders.append((kind, _sender_value(kind, raw)))
            except InvalidInput:
                continue
    candidates = set().union(*(allowed.get(sender, set()) for sender in senders))
    if not candidates:
        return None
    holders = set(
        s.scalars(
            select(m.Share.recipient_id)
            .join(m.ShareCanary, m.ShareCanary.share_id == m.Share.id)
            .where(m.ShareCanary.canary_id == canary_id)
        )
    )
    both = sorted(candidates & holders)
    return both[0] if both else None


def attribute_sightings(
    ws: Workspace, *, since: datetime | None = None, strong_only: bool = False
) -> Attribution:
    """Weigh every canary seen in evidence sightings (expected use excluded)."""
    now = datetime.now(UTC)
    with ws.db.session() as s:
        query = (
            select(m.Sighting.canary_id)
            .where(m.Sighting.canary_id.is_not(None), m.Sighting.expected_use.is_(False))
            .distinct()
        )
        if since is not None:
            query = query.where(m.Sighting.seen_at >= since)
        if strong_only:
            query = query.where(m.Sighting.strong.is_(True))
        ids = [cid for cid in s.scalars(query)]
        first = s.scalar(select(m.Sighting.seen_at).order_by(m.Sighting.seen_at).limit(1))
        return decide(ws, s, ids, {}, 0, first or now, noise=ws.settings.sighting_noise)


def read_sightings(path: Path) -> list[SightingIn]:
    """Read sightings from JSON lines (one object per line); errors name the line."""
    out: list[SightingIn] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    allowed = set(SightingIn.__dataclass_fields__)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            raise InvalidInput(f"{path}: line {number} is not JSON") from None
        if not isinstance(data, dict) or not {"channel", "contact", "seen_at"} <= set(data):
            raise InvalidInput(f"{path}: line {number} needs channel, contact and seen_at")
        extra = set(data) - allowed
        if extra:
            raise InvalidInput(f"{path}: line {number}: unknown key(s) {', '.join(sorted(extra))}")
        if not isinstance(data.get("evidence", {}), dict) or not isinstance(
            data.get("message_id", ""), str
        ):
            raise InvalidInput(
                f"{path}: line {number}: evidence must be an object and message_id a string"
            )
        try:
            data["seen_at"] = datetime.fromisoformat(str(data["seen_at"]))
        except ValueError:
            raise InvalidInput(f"{path}: line {number}: seen_at is not an ISO 8601 time") from None
        out.append(SightingIn(**data))
    return out


def sighting_counts(ws: Workspace) -> dict[str, int]:
    """How many sightings are evidence, expected use, and noise on non-canaries."""
    with ws.db.session() as s:
        total = select(func.count()).select_from(m.Sighting)
        is_canary = m.Sighting.canary_id.is_not(None)
        return {
            "evidence": s.scalar(total.where(is_canary, m.Sighting.expected_use.is_(False))) or 0,
            "expected_use": s.scalar(total.where(m.Sighting.expected_use.is_(True))) or 0,
            "not_canary": s.scalar(total.where(m.Sighting.canary_id.is_(None))) or 0,
        }


@dataclass(frozen=True)
class SightingView:
    """A contact with a monitored address or number; the contact itself is never shown."""

    id: int
    seen_at: datetime
    channel: str
    kind: str
    strong: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "seen_at": self.seen_at.isoformat(timespec="seconds"),
            "channel": self.channel,
            "kind": self.kind,
            "strong": self.strong,
        }


def recent_sightings(
    ws: Workspace, *, limit: int = 20, offset: int = 0
) -> store.Page[SightingView]:
    """Sightings, newest first, as evidence, expected use or not a canary; reused until data changes."""

    def load() -> store.Page[SightingView]:
        with ws.db.session() as s:
            total = s.scalar(select(func.count()).select_from(m.Sighting)) or 0
            rows = s.scalars(
                select(m.Sighting).order_by(m.Sighting.seen_at.desc()).limit(limit).offset(offset)
            ).all()
            items = [
                SightingView(
                    r.id,
                    r.seen_at,
                    r.channel,
                    "not_canary"
                    if r.canary_id is None
                    else ("expected_use" if r.expected_use else "evidence"),
                    r.strong,
                )
                for r in rows
            ]
        return store.Page(items, total, limit, offset)

    return ws.db.cached(("sightings", limit, offset), load)
