"""The pipeline the mail doors share: a raw message to canaries becomes sightings.

The SMTP listener and the IMAP poller hand over the raw bytes and the addresses the
message was delivered to. Each canary among them gets a sighting carrying the parsed
evidence (and which of that canary's details the text quotes); the raw message is kept
beside them. Addresses that are not canaries are only counted as noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..sightings import (
    SightingIn,
    SightingReport,
    count_noise,
    email_canaries,
    record_sightings,
)
from ..workspace import Workspace
from .evidence import CanaryDetails, DnsFunc, ParsedMail, canary_uses, parse_mail

STRONG_USES = frozenset({"name", "reference", "address", "phone"})


@dataclass(frozen=True)
class MailIn:
    """A message as a mail door received it."""

    raw: bytes
    recipients: tuple[str, ...]
    received_at: datetime
    provider: str = "smtp"
    peer_ip: str | None = None
    mail_from: str | None = None


@dataclass
class MailResult:
    """What one message produced: sightings stored, recipients counted as noise."""

    canaries: int = 0
    noise: int = 0
    report: SightingReport = field(default_factory=SightingReport)


def parse(mail: MailIn, *, dnsfunc: DnsFunc | None = None) -> ParsedMail:
    """Parse a message; a parser failure still yields the session's own facts."""
    try:
        return parse_mail(
            mail.raw,
            peer_ip=mail.peer_ip,
            mail_from=mail.mail_from,
            provider=mail.provider,
            dnsfunc=dnsfunc,
        )
    except Exception:
        # Evidence must never be lost to a parser bug: keep the raw message and what
        # the session itself saw.
        return ParsedMail({"provider": mail.provider, "sender_ip": mail.peer_ip}, "")


def on_domains(addresses: Iterable[str], domains: Iterable[str]) -> list[str]:
    """Those of ``addresses`` on one of the monitored ``domains``."""
    wanted = {d.lower() for d in domains}
    return [a for a in addresses if a.rsplit("@", 1)[-1].strip().lower() in wanted]


def sightings_for(
    parsed: ParsedMail,
    canaries: Mapping[str, Mapping[str, str]],
    received_at: datetime,
    message_id: str,
) -> list[SightingIn]:
    """One sighting per canary recipient, with the evidence and the details it quotes."""
    ev = parsed.evidence
    # Only a verified signature may mark mail as a recipient's own: a forged d= tag must
    # not turn a phishing message into "expected use".
    dkim_domain = ev.get("dkim_domain") if ev.get("dkim_result") == "pass" else None
    items = []
    for address, fields in canaries.items():
        uses = canary_uses(parsed.text, CanaryDetails.from_fields(fields))
        evidence: dict[str, Any] = {**ev, "uses": uses}
        items.append(
            SightingIn(
                "email",
                address,
                received_at,
                dkim_domain=dkim_domain,
                sender_ip=ev.get("sender_ip"),
                uses_name=bool(STRONG_USES.intersection(uses)),
                evidence=evidence,
                message_id=message_id,
            )
        )
    return items


def record_mail(
    ws: Workspace,
    mail: MailIn,
    *,
    parsed: ParsedMail | None = None,
    dnsfunc: DnsFunc | None = None,
) -> MailResult:
    """Store the sightings and raw message of one message; count other recipients as noise.

    Storing is idempotent: the same bytes delivered again (a retry after a lost reply)
    are recognised by their hash and not stored twice.
    """
    recipients = list(dict.fromkeys(mail.recipients))
    canaries = email_canaries(ws, recipients)
    noise = len(recipients) - len(canaries)
    result = MailResult(canaries=len(canaries), noise=noise)
    if canaries:
        parsed = parsed or parse(mail, dnsfunc=dnsfunc)
        message_id = hashlib.sha256(mail.raw).hexdigest()
        items = sightings_for(parsed, canaries, mail.received_at, message_id)
        result.report = record_sightings(ws, items, raw=mail.raw)
    if noise:
        count_noise(ws, "email", "unknown", noise, when=mail.received_at)
    return result
