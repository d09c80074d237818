"""Attribution: from the canaries and customers seen in a leak to the recipients suspected.

Pure: takes the share ledger facts and the observations, returns ranked :class:`Suspect`
objects that carry their own evidence. Two kinds of evidence, kept apart:

* canaries: each was planted only in known shares, so a canary in a leak points at the
  recipients of those shares (strong);
* real customers: a recipient that never received some of the leaked customers cannot
  be the only source; coverage ranks the others (weak: shares are not random).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ShareFacts:
    """One share as the ledger recorded it."""

    share_id: int
    recipient_id: int
    recipient: str
    kind: str
    parent: str | None
    created_at: datetime
    customers: int
    canaries: int


@dataclass(frozen=True)
class ShareEvidence:
    """What of one share turned up in the leak."""

    share_id: int
    shared_at: str
    canaries_seen: int
    canaries_planted: int
    customers_seen: int
    customers_shared: int


@dataclass
class Suspect:
    """A recipient suspected of the leak, with the evidence and how it scored."""

    recipient: str
    kind: str
    parent: str | None
    score: float
    canaries_seen: int
    canaries_observed: int
    customers_covered: int
    customers_matched: int
    shares: list[ShareEvidence] = field(default_factory=list)
    explanation: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def attribute(
    shares: Mapping[int, ShareFacts],
    canary_shares: Mapping[int, Sequence[int]],
    customers_per_share: Mapping[int, int],
    customers_matched: int,
    *,
    limit: int = 10,
) -> list[Suspect]:
    """Rank recipients by canary evidence first, then by real-customer coverage.

    ``canary_shares`` maps each observed canary to the shares it was planted in;
    ``customers_per_share`` counts the matched real customers each share contained.
    Recipients without canary evidence are listed only if they received at least
    ``MIN_COVERAGE`` of the leaked customers. The score is the fraction of observed canaries a recipient explains; without any
    canary it is half the coverage, since coverage alone cannot single out a leaker.
    """
    canaries_by_share: dict[int, int] = defaultdict(int)
    for share_ids in canary_shares.values():
        for sid in share_ids:
            canaries_by_share[sid] += 1
    per_recipient: dict[int, list[ShareFacts]] = defaultdict(list)
    for sid in set(canaries_by_share) | set(customers_per_share):
        if sid in shares:
            per_recipient[shares[sid].recipient_id].append(shares[sid])
    observed = len(canary_shares)
    suspects: list[Suspect] = []
    for facts in per_recipient.values():
        facts.sort(key=lambda f: f.created_at)
        held = {f.share_id for f in facts}
        seen = sum(1 for sids in canary_shares.values() if held & set(sids))
        covered = min(customers_matched, sum(customers_per_share.get(f.share_id, 0) for f in facts))
        coverage = covered / customers_matched if customers_matched else 0.0
        score = seen / observed if observed else 0.5 * coverage
        first = facts[0]
        suspect = Suspect(
            recipient=first.recipient,
            kind=first.kind,
            parent=first.parent,
            score=round(score, 4),
            canaries_seen=seen,
            canaries_observed=observed,
            customers_covered=covered,
            customers_matched=customers_matched,
            shares=[
                ShareEvidence(
                    f.share_id,
                    f.created_at.isoformat(timespec="seconds"),
                    canaries_by_share.get(f.share_id, 0),
                    f.canaries,
                    customers_per_share.get(f.share_id, 0),
                    f.customers,
                )
                for f in facts
            ],
        )
        suspect.explanation = explain(suspect)
        suspects.append(suspect)
    suspects.sort(key=lambda s: (-s.canaries_seen, -s.customers_covered, s.recipient))
    # Without a canary, a recipient that misses most of the leaked customers cannot be
    # its source; listing it would only bury the real suspects.
    return [s for s in suspects if s.canaries_seen or (covered_share(s) >= MIN_COVERAGE)][:limit]


MIN_COVERAGE = 0.8


def covered_share(s: Suspect) -> float:
    """Fraction of the leaked real customers that ``s`` received."""
    return s.customers_covered / s.customers_matched if s.customers_matched else 0.0


def explain(s: Suspect) -> str:
    """One sentence a person can check against the share ledger."""
    parts: list[str] = []
    if s.canaries_seen:
        planted = [e for e in s.shares if e.canaries_seen]
        where = ", ".join(f"share #{e.share_id} of {e.shared_at[:10]}" for e in planted)
        parts.append(
            f"{s.canaries_seen} of the {s.canaries_observed} canaries in the leak were planted in "
            f"what {s.recipient} received ({where})"
        )
    if s.customers_matched:
        pct = 100 * s.customers_covered / s.customers_matched
        parts.append(
            f"it received {s.customers_covered:,} of the {s.customers_matched:,} real "
            f"customers found ({pct:.0f}%)"
        )
    return "; ".join(parts) + "."
