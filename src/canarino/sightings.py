"""Sightings: contacts with canary addresses and numbers, filtered and weighed.

A sighting is one e-mail, SMS or call that reached a monitored contact point, or one
appearance of it in a dump. Contacts made by a recipient from its own authorised
infrastructure (allow-listed DKIM domains, sending IPs, caller IDs) to canaries it
received are *expected use*: its legitimate campaigns must not read as a leak. Every
other sighting of a canary is evidence for the decoder; sightings of addresses that are
not canaries are kept only as noise statistics.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .attribution import Attribution
from .errors import InvalidInput
from .normalize import IdentifierError, normalize_email, normalize_phone
from .trace import decide
from .workspace import Workspace

CHANNELS = ("email", "sms", "voice", "dump")
SENDER_KINDS = ("dkim", "ip", "caller_id")


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


@dataclass
class SightingReport:
    """What recording a batch of sightings did."""

    recorded: int = 0
    duplicates: int = 0
    evidence: int = 0
    expected_use: int = 0
    not_canary: int = 0
    problems: list[str] = field(default_factory=list)


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
    key = "|".join(
        [
            item.channel,
            digest.hex(),
            item.seen_at.astimezone(UTC).isoformat(timespec="seconds"),
            item.reference or "",
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()


def record_sightings(ws: Workspace, items: Iterable[SightingIn]) -> SightingReport:
    """Store sightings, link them to canaries, and mark authorised contacts as expected use."""
    report = SightingReport()
    ps = ws.vault.pseudonyms
    with ws.db.session() as s:
        allowed: dict[tuple[str, str], set[int]] = {}
        for rid, kind, value in s.execute(
            select(m.AllowedSender.recipient_id, m.AllowedSender.kind, m.AllowedSender.value)
        ):
            allowed.setdefault((kind, value), set()).add(rid)
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
            canary_id = s.scalar(
                select(m.Pseudonym.canary_id).where(
                    m.Pseudonym.digest == digest, m.Pseudonym.canary_id.is_not(None)
                )
            )
            authorised = _authorised(s, item, canary_id, allowed)
            s.add(
                m.Sighting(
                    dedup_key=key,
                    contact_digest=digest,
                    canary_id=canary_id,
                    channel=item.channel,
                    seen_at=item.seen_at,
                    strong=item.uses_name,
                    expected_use=authorised is not None,
                    allowed_recipient_id=authorised,
                    evidence={
                        "dkim_domain": item.dkim_domain,
                        "sender_ip": item.sender_ip,
                        "caller_id": item.caller_id,
                        "reference": item.reference,
                    },
                )
            )
            report.recorded += 1
            if canary_id is None:
                report.not_canary += 1
            elif authorised is not None:
                report.expected_use += 1
            else:
                report.evidence += 1
    return report


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
