"""Texts and calls that reached canary numbers: stored as sightings, with what they quote.

The webhook door verifies and reads a request (:mod:`.webhooks`); this records it. A
message that quotes the canary's own name, reference or address could only come from
someone holding its record: that is noted in the evidence (``uses``) and makes the
sighting strong. The canary's record is opened in memory only, for that comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from sqlalchemy import select

from .. import models as m
from ..normalize import contacts_by_pseudonym
from ..shares import CANARY_CONTEXT
from ..sightings import SightingReport, record_sightings
from ..workspace import Workspace
from .evidence import CanaryDetails, canary_uses, fold
from .webhooks import Inbound


def phone_canaries(ws: Workspace, numbers: Iterable[str]) -> dict[str, dict[str, str]]:
    """The canaries among ``numbers``: each number (as given) to its canary's details."""
    digests = contacts_by_pseudonym(ws.vault.pseudonyms, "phone", numbers)
    out: dict[str, dict[str, str]] = {}
    if not digests:
        return out
    with ws.db.session() as s:
        rows = s.execute(
            select(m.Pseudonym.digest, m.Canary.sealed)
            .join(m.Canary, m.Canary.id == m.Pseudonym.canary_id)
            .where(m.Pseudonym.digest.in_(list(digests)))
        )
        for digest, sealed in rows:
            fields = ws.vault.open(sealed, context=CANARY_CONTEXT)
            for number in digests[bytes(digest)]:
                out[number] = {k: str(v) for k, v in fields.items() if v}
    return out


def record_phone_contact(ws: Workspace, inbound: Inbound) -> SightingReport:
    """Store one SMS or call read from a webhook as a sighting."""
    item = inbound.sighting
    if inbound.text:
        details = phone_canaries(ws, [item.contact]).get(item.contact)
        if details is not None:
            uses = canary_uses(fold(inbound.text), CanaryDetails.from_fields(details))
            if uses:
                evidence = {**(item.evidence or {}), "uses": uses}
                item = replace(item, evidence=evidence, uses_name="name" in uses)
    return record_sightings(ws, [item])
