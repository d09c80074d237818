"""Attribution: from the canaries and customers seen in a leak to the recipients accused.

Pure: takes the share ledger and the observations, returns :class:`Suspect` objects that
carry their evidence. The decision rests on the exact per-recipient tail test: an
innocent recipient's holdings were drawn independently of whatever produced the leak,
so the number of observed canaries it holds has a known null distribution (binomial for
exclusive canaries hit by background noise, Poisson-binomial for shared ones). A
recipient is accused when its p-value is at most ε/(N·ℓ) for N recipients and ℓ tests;
by the union bound no innocent is accused with probability above ε, whatever the
colluders did and however little of the data leaked.

Exclusive canaries are weighed by two tests. A *contact hit* (a canary's e-mail or phone
in the leak) can be guessed: permutators build name-based addresses on our domains and
whole phone ranges can be dialled, so contacts are tested against the background rate
``noise``. A *record hit* (two independently drawn identifiers of one canary, such as
its e-mail and its phone, in one row) cannot be produced by guessing: the pairing exists
only in the copies we made. Records are tested against ``record_noise``, which control
canaries seen as records raise, so one record can accuse while one contact cannot.

Real customers are shown beside the canaries: a recipient that never received some of
the leaked customers cannot be the only source. That evidence ranks but never accuses,
because which customers went where was not random.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

MIN_COVERAGE = 0.8
# Chance per canary that an innocent path puts two of its independent identifiers in one
# row. Guessing the e-mail happens at the contact rate (≤ 1e-6 per canary, measured by
# the controls); the phone was drawn apart from the name and the address, across ranges
# and carriers of ≥ 10^9 numbers, so a guess pairs it with the right address at most 1 in
# 10^9 times. The product is a model, not a measurement: control canaries seen as
# records are the measurement, and they raise it (see :func:`attribute`).
RECORD_NOISE = 1e-15


def _stats() -> Any:
    # scipy.stats takes about a second to import; only sizing and decoding need it.
    from scipy import stats

    return stats


@dataclass(frozen=True)
class ShareFacts:
    """One share event as the ledger recorded it."""

    share_id: int
    recipient_id: int
    recipient: str
    kind: str
    parent: str | None
    created_at: datetime
    customers: int
    canaries: int


@dataclass(frozen=True)
class CanaryFacts:
    """An observed canary: its layer, its bias and the share events it went out in.

    ``shares`` may be a tuple or an integer array; arrays keep large decodes fast.
    ``record`` is true when the leak held it as a record (two of its independent
    identifiers in one row), not only as a contact point.
    """

    canary_id: int
    layer: str
    bias: float
    shares: tuple[int, ...] | np.ndarray
    record: bool = False


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
    """A recipient with the evidence against it and the test that weighs it."""

    recipient: str
    kind: str
    parent: str | None
    accused: bool
    p_value: float
    layer: str
    score: float
    canaries_seen: int
    canaries_observed: int
    customers_covered: int
    customers_matched: int
    shares: list[ShareEvidence] = field(default_factory=list)
    window: list[str] | None = None
    explanation: str = ""
    records_seen: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Attribution:
    """The decision for one leak: suspects, threshold and parsimonious explanation."""

    suspects: list[Suspect]
    threshold: float
    epsilon: float
    recipients: int
    layers: int
    noise: float
    controls_seen: int
    cover: list[str]
    record_noise: float | None = None
    control_records: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "suspects": [s.as_dict() for s in self.suspects],
            "threshold": self.threshold,
            "epsilon": self.epsilon,
            "recipients": self.recipients,
            "layers": self.layers,
            "noise": self.noise,
            "controls_seen": self.controls_seen,
            "cover": self.cover,
            "record_noise": self.record_noise,
            "control_records": self.control_records,
        }


def binomial_tail(hits: int, trials: int, p: float) -> float:
    """P[Bin(trials, p) ≥ hits]."""
    if hits <= 0:
        return 1.0
    return float(_stats().binom.sf(hits - 1, trials, p))


def poisson_binomial_tails(probabilities: Sequence[float]) -> np.ndarray:
    """``out[h]`` = P[sum of independent Bernoulli(p_i) ≥ h] for h = 0…L, exactly."""
    ps = np.asarray(probabilities, dtype=float)
    if ps.size and np.all(ps == ps[0]):
        return np.asarray(_stats().binom.sf(np.arange(ps.size + 1) - 1, ps.size, ps[0]))
    pmf = np.zeros(ps.size + 1)
    pmf[0] = 1.0
    for i, p in enumerate(ps, 1):
        pmf[1 : i + 1] = pmf[1 : i + 1] * (1 - p) + pmf[:i] * p
        pmf[0] *= 1 - p
    # Sum from the small end of the tail, so tiny p-values keep their precision.
    return np.minimum(1.0, np.cumsum(pmf[::-1])[::-1])


def poisson_binomial_tail(probabilities: Sequence[float], hits: int) -> float:
    """P[sum of independent Bernoulli(p_i) ≥ hits]."""
    if hits <= 0:
        return 1.0
    if hits > len(probabilities):
        return 0.0
    return float(poisson_binomial_tails(probabilities)[hits])


def one_in(p: float) -> str:
    """``1 in 10^9`` for a small probability, as people read it."""
    if p <= 0:
        return "below 1 in 10^300"
    if p >= 0.01:
        return f"{p:.0%}"
    return f"1 in 10^{math.floor(-math.log10(p))}"


def attribute(
    shares: Mapping[int, ShareFacts],
    observed: Sequence[CanaryFacts],
    exclusive_counts: Mapping[int, int],
    customers_per_share: Mapping[int, int],
    customers_matched: int,
    *,
    recipients: int,
    epsilon: float = 1e-6,
    noise: float = 1e-6,
    record_noise: float | None = RECORD_NOISE,
    controls: tuple[int, int] = (0, 0),
    control_records: int | None = None,
    found_at: datetime | None = None,
    limit: int = 10,
) -> Attribution:
    """Weigh the evidence against every recipient and accuse at family-wise error ε.

    ``shares`` holds at least every share event of every recipient that received an
    observed canary or customer; ``observed`` the canaries found (controls included);
    ``exclusive_counts`` each recipient's number of exclusive canaries over all its
    shares; ``controls`` = (control canaries seen, control canaries in the pool), which
    raise the noise estimate when the channel is noisier than assumed. Every accused
    recipient is returned, then the strongest others up to ``limit`` in all.

    Exclusive hits go through two tests: all of them (a record is also a contact)
    against Bin(m, ``noise``), and the record hits alone against Bin(m,
    ``record_noise``). The record test always counts in ℓ, so the union bound holds
    whether or not a record turns up; ``record_noise=None`` drops it, for evidence that
    cannot hold records (sightings of single contact points). ``control_records`` is
    the number of control canaries seen as records (by default counted in
    ``observed``); any raises ``record_noise`` to at least seen/pool, because a control
    never left the company and only its own copy could have paired its identifiers.
    """
    seen_controls, pool_controls = controls
    if seen_controls and pool_controls:
        noise = max(noise, seen_controls / pool_controls)
    if control_records is None:
        control_records = sum(1 for c in observed if c.layer == "control" and c.record)
    if record_noise is not None and control_records:
        record_noise = max(record_noise, control_records / max(pool_controls, control_records))
    evidence = [c for c in observed if c.layer != "control"]
    layers = 1 + (record_noise is not None) + any(c.layer == "shared" for c in evidence)
    threshold = epsilon / (max(recipients, 1) * layers)

    # Recipients get dense indices so every count below is one vectorised pass.
    rids = sorted({f.recipient_id for f in shares.values()})
    index = {rid: i for i, rid in enumerate(rids)}
    n = len(rids)
    share_ids = np.fromiter(shares, dtype=np.int64, count=len(shares))
    lookup = np.full(int(share_ids.max()) + 2 if len(shares) else 1, -1, dtype=np.int64)
    lookup[share_ids] = [index[shares[int(sid)].recipient_id] for sid in share_ids]
    events = np.bincount(lookup[share_ids], minlength=n)

    # One (canary, share) pair per planting; a canary counts once per recipient holding it.
    arrays = [np.asarray(c.shares, dtype=np.int64) for c in evidence]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    known = (flat >= 0) & (flat < lookup.size - 1)
    owner = lookup[np.where(known, flat, lookup.size - 1)]  # the last slot holds -1
    valid = owner >= 0
    pair_canary = np.repeat(np.arange(len(evidence)), lengths)[valid]
    pair_owner = owner[valid]
    if pair_owner.size and events.max() > 1:
        # Only a recipient with several share events can hold one canary twice.
        pairs = np.sort(pair_canary * n + pair_owner)
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
        pair_canary, pair_owner = pairs // n, pairs % n
    exclusive_mask = np.array([c.layer == "exclusive" for c in evidence], dtype=bool)
    record_mask = np.array([c.record for c in evidence], dtype=bool)
    is_exclusive = exclusive_mask[pair_canary]
    hx = np.bincount(pair_owner[is_exclusive], minlength=n)
    hr = np.bincount(pair_owner[is_exclusive & record_mask[pair_canary]], minlength=n)
    hs = np.bincount(pair_owner[~is_exclusive], minlength=n)
    # A ledger that undercounts a recipient's canaries must not make its hits impossible.
    m = np.maximum([exclusive_counts.get(rid, 0) for rid in rids], hx)
    p_x = np.ones(n)
    hit = hx > 0
    p_x[hit] = _stats().binom.sf(hx[hit] - 1, m[hit], noise)
    if record_noise is not None:
        rec = hr > 0
        p_x[rec] = np.minimum(p_x[rec], _stats().binom.sf(hr[rec] - 1, m[rec], record_noise))
    p_s = np.ones(n)
    shared_biases = [c.bias for c, ex in zip(evidence, exclusive_mask, strict=True) if not ex]
    for k in np.unique(events[hs > 0]):
        # Innocent j holds shared canary i with probability 1 - (1 - q_i)^k over k events.
        tails = poisson_binomial_tails([1 - (1 - q) ** int(k) for q in shared_biases])
        rows = (hs > 0) & (events == k)
        p_s[rows] = tails[hs[rows]]
    p = np.minimum(p_x, p_s)
    covered = np.zeros(n, dtype=np.int64)
    for sid, count in customers_per_share.items():
        if sid in shares:
            covered[index[shares[sid].recipient_id]] += count
    covered = np.minimum(covered, customers_matched)
    coverage = covered / customers_matched if customers_matched else np.zeros(n)
    held = hx + hs
    keep = (held > 0) | (coverage >= MIN_COVERAGE)
    order = sorted(np.flatnonzero(keep), key=lambda i: (p[i], -held[i], -covered[i], rids[i]))
    accused = [i for i in order if p[i] <= threshold]
    chosen = accused + [i for i in order if p[i] > threshold][: max(0, limit - len(accused))]

    planted = np.bincount(flat[known], minlength=lookup.size) if flat.size else np.zeros(0)
    per_recipient: dict[int, list[ShareFacts]] = defaultdict(list)
    for f in shares.values():
        per_recipient[index[f.recipient_id]].append(f)
    suspects = []
    for i in chosen:
        facts = sorted(per_recipient[i], key=lambda f: f.created_at)
        first = facts[0]
        suspect = Suspect(
            recipient=first.recipient,
            kind=first.kind,
            parent=first.parent,
            accused=bool(p[i] <= threshold),
            p_value=float(p[i]),
            layer=("exclusive" if p_x[i] <= p_s[i] else "shared") if held[i] else "customers",
            score=round(float(held[i]) / len(evidence), 4)
            if evidence
            else round(0.5 * float(coverage[i]), 4),
            canaries_seen=int(held[i]),
            canaries_observed=len(evidence),
            customers_covered=int(covered[i]),
            customers_matched=customers_matched,
            records_seen=int(hr[i]),
            shares=[
                ShareEvidence(
                    f.share_id,
                    f.created_at.isoformat(timespec="seconds"),
                    int(planted[f.share_id]) if f.share_id < planted.size else 0,
                    f.canaries,
                    customers_per_share.get(f.share_id, 0),
                    f.customers,
                )
                for f in facts
            ],
        )
        suspect.window = _window(suspect, found_at)
        suspect.explanation = explain(suspect)
        suspects.append(suspect)
    # The cover only needs the recipients that hold the most observed canaries.
    strongest = [int(i) for i in np.argsort(-held, kind="stable")[:50] if held[i] > 0]
    holdings: dict[int, set[int]] = {i: set() for i in strongest}
    is_strong = np.zeros(n, dtype=bool)
    is_strong[strongest] = True
    near = is_strong[pair_owner]
    for i, ci in zip(pair_owner[near].tolist(), pair_canary[near].tolist(), strict=True):
        holdings[i].add(evidence[ci].canary_id)
    names = {i: per_recipient[i][0].recipient for i in strongest}
    return Attribution(
        suspects,
        threshold,
        epsilon,
        recipients,
        layers,
        noise,
        seen_controls,
        greedy_cover(holdings, names),
        record_noise,
        control_records,
    )


def greedy_cover(holders: Mapping[int, set[int]], names: Mapping[int, str]) -> list[str]:
    """The fewest recipients whose holdings explain every observed canary (greedy).

    Shown as the most parsimonious explanation; accusations come from the tests.
    """
    left = set().union(*holders.values()) if holders else set()
    chosen: list[str] = []
    order = sorted(holders, key=lambda r: names.get(r, ""))
    while left:
        rid = max(order, key=lambda r: len(holders[r] & left))
        gain = holders[rid] & left
        if not gain:
            break
        chosen.append(names.get(rid, str(rid)))
        left -= gain
    return chosen


def _window(s: Suspect, found_at: datetime | None) -> list[str] | None:
    """When the copy was taken: after the last share seen in it, before the next one missed."""
    seen = [e for e in s.shares if e.canaries_seen]
    if not seen:
        return None
    last = seen[-1]
    later = [e for e in s.shares if e.shared_at > last.shared_at]
    rate = last.canaries_seen / max(last.canaries_planted, 1)
    end = found_at.isoformat(timespec="seconds") if found_at else "now"
    for e in later:
        # A later export whose canaries should have shown (≥ 3 expected) but did not.
        if e.canaries_seen == 0 and rate * e.canaries_planted >= 3:
            end = e.shared_at
            break
    return [last.shared_at, end]


def explain(s: Suspect) -> str:
    """A few sentences a person can check against the share ledger."""
    parts: list[str] = []
    if s.canaries_seen:
        planted = [e for e in s.shares if e.canaries_seen]
        where = ", ".join(f"share #{e.share_id} of {e.shared_at[:10]}" for e in planted)
        parts.append(
            f"{s.canaries_seen} of the {s.canaries_observed} canaries in the leak went to "
            f"{s.recipient} ({where}); the chance that an innocent recipient matches this "
            f"well is {one_in(s.p_value)}"
        )
        if s.records_seen:
            parts.append(
                f"{s.records_seen} of them appeared as whole records (two identifiers "
                "drawn apart, in one row), which guessing does not produce"
            )
        if not s.accused:
            parts.append("not enough to accuse at the workspace's error bound")
    if s.customers_matched:
        pct = 100 * s.customers_covered / s.customers_matched
        parts.append(
            f"it received {s.customers_covered:,} of the {s.customers_matched:,} real "
            f"customers found ({pct:.0f}%)"
        )
    if s.window:
        start, end = s.window
        size = 10 if start[:10] != end[:10] else 16  # same day: show the times too
        parts.append(
            f"the copy was taken between {start[:size].replace('T', ' ')} and "
            f"{end[:size].replace('T', ' ')}"
        )
    return "; ".join(parts) + "."
