"""Design sizing: how many canaries each share needs to name leakers with stated error.

Pure arithmetic on the formulas of the attribution note (F1-F5): an exclusive layer
(one recipient per canary) catches single leakers and merged (union) copies; a shared
layer (each canary given to each recipient with probability q = e^(-1/c)) survives
colluders who keep only the records they all hold; an optional Tardos-type layer resists
every strategy at a much higher cost. The family-wise error ε is split evenly over the
tests in use (Bonferroni), as the decoder does: the exclusive layer counts two, one for
record hits (a canary's independent identifiers in one row) and one for contact hits.

The exclusive layer is sized for leaks of whole rows, where one record hit accuses
(``record_hits``, 1 unless the record noise is high). A leak of one identifier column
alone (a combo list of e-mail addresses) carries only contact hits, which need
``hits_needed`` of them under the contact noise: that is the limit of the guarantee,
and :attr:`Design.contact_limit` states it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _stats() -> Any:
    # scipy.stats takes about a second to import; only sizing and decoding need it.
    from scipy import stats

    return stats


@dataclass(frozen=True)
class DesignInput:
    """What the company wants to catch, and how noisy its canary channels are."""

    recipients: int
    colluders: int = 1
    smallest_leak: float = 0.02
    epsilon: float = 1e-6
    miss: float = 0.01
    noise: float = 1e-6
    tardos: bool = False
    record_noise: float = 1e-15

    def check(self) -> None:
        """Refuse values outside the range the formulas hold for."""
        problems = []
        if self.recipients < 1:
            problems.append("recipients must be at least 1")
        if not 1 <= self.colluders <= max(1, self.recipients):
            problems.append("colluders must be between 1 and the number of recipients")
        for name in ("smallest_leak", "epsilon", "miss"):
            value = getattr(self, name)
            if not 0 < value < 1:
                problems.append(f"{name} must be between 0 and 1 (exclusive)")
        if not 0 <= self.noise < 1:
            problems.append("noise must be in [0, 1)")
        if not 0 <= self.record_noise <= self.noise or self.record_noise >= 1:
            problems.append("record_noise must be in [0, noise]: a record is also a contact")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Layer:
    """One layer of the design."""

    name: str
    per_share: int
    pool: int
    bias: float
    hits_needed: int
    note: str = ""
    # Exclusive layer: contact hits needed when the leak holds one identifier column only.
    contact_hits: int = 0


@dataclass(frozen=True)
class Design:
    """A sized design: its layers, lower bounds and detection limit."""

    inputs: DesignInput
    layers: list[Layer] = field(default_factory=list)
    fano_bound: float = 0.0
    # Smallest leaked fraction of a share that still names its single leaker (1 - δ).
    detection_limit: float = 1.0
    # The same when only one identifier column leaks (contact hits only).
    contact_limit: float = 1.0

    @property
    def per_share(self) -> int:
        """Canaries added to every share, all layers together."""
        return sum(layer.per_share for layer in self.layers)

    def layer(self, name: str) -> Layer | None:
        """The layer called ``name``, if the design has one."""
        return next((lay for lay in self.layers if lay.name == name), None)

    def contact_points(self, share_events: int) -> int:
        """Distinct canary identities (one contact point of each kind) for the events."""
        total = 0
        for lay in self.layers:
            total += lay.pool if lay.pool else lay.per_share * share_events
        return total

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "inputs": asdict(self.inputs),
            "layers": [asdict(lay) for lay in self.layers],
            "per_share": self.per_share,
            "fano_bound": round(self.fano_bound, 1),
            "detection_limit": round(self.detection_limit, 5),
            "contact_limit": round(self.contact_limit, 5),
        }


def z_channel_capacity(s: float) -> float:
    """Bits per canary through a channel that drops each canary with probability 1 - s."""
    if s >= 1:
        return 1.0
    return math.log2(1 + s * (1 - s) ** ((1 - s) / s))


def fano_bound(recipients: int, colluders: int, s: float, epsilon: float) -> float:
    """F1: fewest canaries in any design that names ``colluders`` of ``recipients``."""
    log_choose = (
        math.lgamma(recipients + 1)
        - math.lgamma(colluders + 1)
        - math.lgamma(recipients - colluders + 1)
    ) / math.log(2)
    return max(0.0, ((1 - epsilon) * log_choose - 1) / z_channel_capacity(s))


def hits_needed(recipients: int, per_recipient: int, noise: float, epsilon: float) -> int:
    """F2: exclusive hits that noise alone reaches with family-wise chance ≤ ``epsilon``."""
    h = 1
    while recipients * _stats().binom.sf(h - 1, per_recipient, noise) > epsilon:
        h += 1
    return h


def exclusive_per_share(s: float, miss: float, hits: int) -> int:
    """F3: smallest m with P[Bin(m, s) ≥ hits] ≥ 1 - miss."""
    if hits == 1:
        return math.ceil(math.log(1 / miss) / -math.log1p(-s))
    m = hits
    while _stats().binom.sf(hits - 1, m, s) < 1 - miss:
        m = max(m + 1, int(m * 1.05))
    lo, hi = hits, m
    while lo < hi:  # the loop above may overshoot; settle on the smallest m
        mid = (lo + hi) // 2
        if _stats().binom.sf(hits - 1, mid, s) >= 1 - miss:
            hi = mid
        else:
            lo = mid + 1
    return lo


def shared_pool(
    recipients: int, colluders: int, s: float, epsilon: float, miss: float
) -> tuple[int, float]:
    """F4: pool size T and bias q = e^(-1/c) that survive an intersection by c colluders."""
    q = math.exp(-1 / colluders)
    z = _stats().norm.isf(miss)
    target = colluders * math.log(recipients / epsilon)
    mu = ((z + math.sqrt(z * z + 4 * target)) / 2) ** 2
    return math.ceil(mu / (s * q**colluders)), q


def detection_limit(canaries: int, miss: float, hits: int = 1) -> float:
    """Smallest leaked fraction holding ``hits`` of ``canaries`` with probability 1 - miss.

    With ``hits`` = 1 this is s_lim = 1 - δ^(1/m); the decoder may need more hits than
    one before it can accuse under noise, and the limit then rises accordingly.
    """
    if canaries < max(hits, 1):
        return 1.0
    if hits <= 1:
        return 1 - miss ** (1 / canaries)
    from scipy.optimize import brentq

    def short(s: float) -> float:
        return float(_stats().binom.sf(hits - 1, canaries, s)) - (1 - miss)

    return float(brentq(short, 1e-12, 1 - 1e-12))


def plan(inputs: DesignInput) -> Design:
    """Size every layer for ``inputs``."""
    inputs.check()
    n, c, s = inputs.recipients, inputs.colluders, inputs.smallest_leak
    # The exclusive layer is two tests (records, contacts); ε is split over every test.
    layer_count = 2 + (c > 1) + inputs.tardos
    eps = inputs.epsilon / layer_count
    hits = 1
    # Each of c union colluders must show its own canaries: split the miss chance.
    miss_each = inputs.miss / c
    while True:
        m = exclusive_per_share(s, miss_each, hits)
        needed = hits_needed(n, m, inputs.record_noise, eps)
        if needed <= hits:
            break
        hits = needed
    contacts = max(hits, hits_needed(n, m, inputs.noise, eps))
    layers = [
        Layer("exclusive", m, 0, 0.0, hits, "one recipient per canary", contact_hits=contacts)
    ]
    if c > 1:
        pool, q = shared_pool(n, c, s, eps, inputs.miss)
        per = math.ceil(pool * q)
        need = math.ceil(math.log(n / eps) / math.log(1 / q))
        layers.append(Layer("shared", per, pool, round(q, 4), need, "resists intersection"))
    if inputs.tardos:
        size = math.ceil(math.pi**2 * c * c * math.log(n / eps) / s)
        layers.append(
            Layer("tardos", math.ceil(size / 2), size, 0.5, 0, "sized only; not yet assigned")
        )
    return Design(
        inputs,
        layers,
        fano_bound(n, c, s, inputs.epsilon),
        detection_limit(m, inputs.miss, hits),
        detection_limit(m, inputs.miss, contacts),
    )
