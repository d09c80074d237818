"""Simulate a canary design against leakers, to check by experiment what it promises.

Pure (numpy and scipy only). Each trial draws the assignments the way
:func:`canarino.shares.create_share` does (fresh exclusive canaries per share, each
pooled canary given to each recipient with the layer's bias), lets ``c`` colluders
leak by merging (``union``) or by keeping only what they all hold (``intersection``),
thins the leak to a fraction ``s``, adds background noise, and decodes with the
library's own test: :func:`canarino.attribution.attribute`, fed the way
:mod:`canarino.trace` feeds it, or :func:`decide`, a vectorised path that computes the
same p-values and the same accusations for many recipients at once.

A leak of whole rows (``leak="rows"``) shows each leaked canary as a record (its
e-mail and phone in one row); a combo list (``leak="column"``) shows one identifier
only, so every hit is a contact hit. Background noise makes contact hits at rate
``noise`` on any canary, whoever holds it, and record hits at rate ``record_noise``
only: at the default 1e-15 the innocent trials contain no record noise at all, which is
the model the decoder's record test assumes.

Only the holdings an observation can reveal are drawn for innocent recipients: who holds
each *observed* pooled canary. The rest of an innocent's draw never reaches the decoder,
and the colluders' draws, which produce the leak, are drawn in full, so the trials are
distributed exactly as if every assignment had been drawn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from scipy.stats import binom

from .attribution import RECORD_NOISE, CanaryFacts, ShareFacts, attribute, poisson_binomial_tails
from .design import Design

Attack = Literal["union", "intersection"]
Leak = Literal["rows", "column"]
LEAKS: tuple[Leak, ...] = ("rows", "column")
Decoder = Literal["attribute", "fast", "both", "auto"]
ATTACKS: tuple[Attack, ...] = ("union", "intersection")
AUTO_LIMIT = 2_000  # above this many recipients "auto" uses the vectorised path
_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_BLOCK = 1 << 22  # random numbers drawn at once when filling the holders matrix


@dataclass(frozen=True)
class World:
    """One trial: the assignments a leak can reveal, and the leak itself.

    Canary ids are global: recipient ``j``'s exclusive canaries are ``j*m … j*m+m-1``;
    pooled canary ``i`` is ``n*m + i``.
    """

    recipients: int
    exclusive: int
    pool: int
    bias: float
    colluders: np.ndarray
    exclusive_seen: np.ndarray
    shared_seen: np.ndarray
    holders: np.ndarray
    share_sizes: np.ndarray
    controls: int = 0
    controls_seen: int = 0
    # Which of ``exclusive_seen`` the leak shows as records; ``None``: none of them.
    exclusive_records: np.ndarray | None = None
    control_records: int = 0

    @property
    def records(self) -> np.ndarray:
        """Per observed exclusive canary: whether it was seen as a record."""
        if self.exclusive_records is None:
            return np.zeros(self.exclusive_seen.size, dtype=bool)
        return self.exclusive_records

    @property
    def observed(self) -> int:
        """Canaries in the leak, controls aside."""
        return int(self.exclusive_seen.size + self.shared_seen.size)


@dataclass(frozen=True)
class Verdict:
    """Who was accused in one trial, with every recipient's p-value."""

    accused: np.ndarray
    p_values: np.ndarray


@dataclass(frozen=True)
class SimResult:
    """Detection and false-accusation counts over many trials of one configuration."""

    recipients: int
    colluders: int
    leak: float
    attack: str
    trials: int
    all_named: int
    any_named: int
    innocents_accused: int
    innocent_trials: int
    trials_with_false_accusation: int
    canaries_per_share: float
    contact_points: int
    observed_mean: float
    decoder: str
    mismatches: int
    seconds: float
    leak_kind: str = "rows"

    @property
    def p_all(self) -> float:
        """Share of trials in which every colluder was accused."""
        return self.all_named / self.trials if self.trials else 0.0

    @property
    def p_any(self) -> float:
        """Share of trials in which at least one colluder was accused."""
        return self.any_named / self.trials if self.trials else 0.0

    @property
    def false_rate(self) -> float:
        """Innocents accused per innocent trial (one innocent in one trial)."""
        return self.innocents_accused / self.innocent_trials if self.innocent_trials else 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, with the rates."""
        out: dict[str, object] = asdict(self)
        out.update(p_all=self.p_all, p_any=self.p_any, false_rate=self.false_rate)
        return out


def _layers(design: Design, exclusive: int | None) -> tuple[int, int, float]:
    layer = design.layer("exclusive")
    m = exclusive if exclusive is not None else (layer.per_share if layer else 0)
    shared = design.layer("shared")
    return m, (shared.pool if shared else 0), (shared.bias if shared else 0.0)


def draw(
    recipients: int,
    exclusive: int,
    pool: int,
    bias: float,
    colluders: int,
    s: float,
    attack: Attack,
    noise: float,
    rng: np.random.Generator,
    *,
    controls: int = 0,
    leak: Leak = "rows",
    record_noise: float = 0.0,
) -> World:
    """Draw one trial: assignments, the colluders' leak thinned to ``s``, and noise."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")
    if leak not in LEAKS:
        raise ValueError(f"unknown leak {leak!r}; use one of {', '.join(LEAKS)}")
    if not 1 <= colluders <= recipients:
        raise ValueError("colluders must be between 1 and the number of recipients")
    n, m = recipients, exclusive
    who = np.sort(rng.choice(n, colluders, replace=False))
    held = rng.random((colluders, pool)) < bias  # the colluders' pooled draws, in full
    if attack == "union":
        excl = (who[:, None] * m + np.arange(m)).ravel()
        shared = np.flatnonzero(held.any(axis=0))
    else:  # an exclusive canary is held by one recipient: it survives only alone
        excl = np.arange(who[0] * m, who[0] * m + m) if colluders == 1 else np.arange(0)
        shared = np.flatnonzero(held.all(axis=0))
    excl = excl[rng.random(excl.size) < s]
    shared = shared[rng.random(shared.size) < s]
    # Background noise: every canary identity shows up with probability ``noise``,
    # whoever holds it.
    noisy_x = rng.choice(n * m, rng.binomial(n * m, noise), replace=False) if n * m else excl
    noisy_s = rng.choice(pool, rng.binomial(pool, noise), replace=False) if pool else shared
    # Record noise: an innocent path pairing two of a canary's identifiers in one row.
    noisy_r = (
        rng.choice(n * m, rng.binomial(n * m, record_noise), replace=False)
        if n * m and record_noise
        else np.zeros(0, dtype=np.int64)
    )
    as_records = np.union1d(excl if leak == "rows" else np.zeros(0, dtype=np.int64), noisy_r)
    excl = np.union1d(np.union1d(excl, noisy_x), noisy_r).astype(np.int64)
    records = np.isin(excl, as_records)
    shared = np.union1d(shared, noisy_s).astype(np.int64)
    holders = np.empty((n, shared.size), dtype=bool)
    rows = max(1, _BLOCK // max(1, shared.size))
    for start in range(0, n, rows):
        block = holders[start : start + rows]
        block[:] = rng.random(block.shape) < bias
    holders[who] = held[:, shared]
    sizes = m + holders.sum(axis=1) + rng.binomial(pool - shared.size, bias, size=n)
    sizes[who] = m + held.sum(axis=1)
    seen_controls = int(rng.binomial(controls, noise)) if controls else 0
    control_records = int(rng.binomial(controls, record_noise)) if controls else 0
    return World(
        n,
        m,
        pool,
        bias,
        who,
        excl,
        shared,
        holders,
        sizes,
        controls,
        max(seen_controls, control_records),
        records,
        control_records,
    )


def decide(
    exclusive_hits: np.ndarray,
    exclusive_counts: np.ndarray | int,
    shared_hits: np.ndarray,
    shared_biases: Sequence[float] | np.ndarray,
    *,
    recipients: int,
    epsilon: float,
    noise: float,
    controls: tuple[int, int] = (0, 0),
    record_hits: np.ndarray | None = None,
    record_noise: float | None = RECORD_NOISE,
    control_records: int = 0,
) -> Verdict:
    """The test of :func:`canarino.attribution.attribute`, for all recipients at once.

    ``exclusive_hits[j]`` / ``shared_hits[j]`` count the observed exclusive / pooled
    canaries recipient ``j`` holds, ``record_hits[j]`` the exclusive ones seen as
    records; ``shared_biases`` are the biases of the observed pooled canaries (one share
    event per recipient). Exclusive hits are weighed against a binomial tail under
    noise, record hits against one under record noise, pooled hits against the
    Poisson-binomial tail; a recipient is accused when the smallest p-value is at most
    ε/(N·ℓ).
    """
    seen_controls, pool_controls = controls
    if seen_controls and pool_controls:
        noise = max(noise, seen_controls / pool_controls)
    if record_noise is not None and control_records:
        record_noise = max(record_noise, control_records / max(pool_controls, control_records))
    biases = np.asarray(shared_biases, dtype=float)
    tests = 1 + (record_noise is not None) + (biases.size > 0)
    threshold = epsilon / (max(recipients, 1) * tests)
    hx = np.asarray(exclusive_hits)
    hs = np.asarray(shared_hits)
    p_x = np.ones(hx.shape)
    hit = hx > 0
    counts = np.maximum(np.broadcast_to(np.asarray(exclusive_counts), hx.shape), hx)
    p_x[hit] = binom.sf(hx[hit] - 1, counts[hit], noise)
    if record_noise is not None and record_hits is not None:
        hr = np.asarray(record_hits)
        rec = hr > 0
        p_x[rec] = np.minimum(p_x[rec], binom.sf(hr[rec] - 1, counts[rec], record_noise))
    p_s = np.ones(hs.shape)
    if biases.size:
        tails = poisson_binomial_tails(biases.tolist())
        p_s[hs > 0] = tails[hs[hs > 0]]
    p = np.minimum(p_x, p_s)
    return Verdict(p <= threshold, p)


def decode_fast(
    world: World, *, epsilon: float, noise: float, record_noise: float | None = RECORD_NOISE
) -> Verdict:
    """Decode one trial with :func:`decide`."""
    n = world.recipients
    owner = world.exclusive_seen // max(world.exclusive, 1)
    hx = np.bincount(owner, minlength=n)[:n]
    hr = np.bincount(owner[world.records], minlength=n)[:n]
    return decide(
        hx,
        world.exclusive,
        world.holders.sum(axis=1),
        np.full(world.shared_seen.size, world.bias),
        recipients=n,
        epsilon=epsilon,
        noise=noise,
        controls=(world.controls_seen, world.controls),
        record_hits=hr,
        record_noise=record_noise,
        control_records=world.control_records,
    )


def ledger(world: World) -> tuple[dict[int, ShareFacts], list[CanaryFacts], dict[int, int]]:
    """The decoder's inputs as :mod:`canarino.trace` builds them from the database.

    Recipient ``j`` is recipient id and share id ``j + 1`` (one share event each); only
    recipients holding an observed canary appear, as in the trace query.
    """
    n, m = world.recipients, world.exclusive
    observed = [
        CanaryFacts(int(c) + 1, "exclusive", 0.0, (int(c) // m + 1,), bool(r))
        for c, r in zip(world.exclusive_seen.tolist(), world.records.tolist(), strict=True)
    ]
    col, row = np.nonzero(world.holders.T)
    cuts = np.cumsum(np.bincount(col, minlength=world.shared_seen.size))[:-1]
    columns = np.split(row + 1, cuts) if world.shared_seen.size else []
    for i, sids in zip(world.shared_seen.tolist(), columns, strict=True):
        observed.append(CanaryFacts(n * m + i + 1, "shared", world.bias, tuple(sids.tolist())))
    holding = np.flatnonzero(world.holders.any(axis=1))
    touched: list[int] = (np.union1d(world.exclusive_seen // max(m, 1), holding) + 1).tolist()
    facts = {
        sid: ShareFacts(
            sid, sid, f"R{sid - 1}", "vendor", None, _T0, 0, int(world.share_sizes[sid - 1])
        )
        for sid in touched
    }
    return facts, observed, dict.fromkeys(touched, m)


def decode_attribute(
    world: World, *, epsilon: float, noise: float, record_noise: float | None = RECORD_NOISE
) -> Verdict:
    """Decode one trial with the library's :func:`canarino.attribution.attribute`.

    It returns every accused recipient (and a few others), so the accusations are complete.
    """
    n = world.recipients
    facts, observed, exclusive_counts = ledger(world)
    result = attribute(
        facts,
        observed,
        exclusive_counts,
        {},
        0,
        recipients=n,
        epsilon=epsilon,
        noise=noise,
        record_noise=record_noise,
        controls=(world.controls_seen, world.controls),
        control_records=world.control_records,
    )
    accused = np.zeros(n, dtype=bool)
    p = np.ones(n)
    for suspect in result.suspects:
        j = int(suspect.recipient[1:])
        accused[j] = suspect.accused
        p[j] = suspect.p_value
    return Verdict(accused, p)


def simulate(
    design: Design,
    colluders: int,
    s: float,
    attack: Attack,
    trials: int,
    rng: np.random.Generator,
    *,
    recipients: int | None = None,
    epsilon: float | None = None,
    noise: float | None = None,
    exclusive: int | None = None,
    controls: int = 0,
    decoder: Decoder = "auto",
    leak: Leak = "rows",
    record_noise: float | None = None,
) -> SimResult:
    """Run ``trials`` leaks by ``colluders`` against ``design`` and count the outcomes.

    ``recipients``, ``epsilon``, ``noise`` and ``record_noise`` default to the design's
    inputs (record noise is both injected and assumed by the decoder); ``leak`` is
    ``"rows"`` (whole rows: record hits) or ``"column"`` (one identifier: contacts only);
    ``exclusive`` overrides the exclusive canaries per share (e.g. to model the
    per-share cap of :func:`canarino.shares.create_share`). With ``decoder="both"``
    every trial is decoded both ways and disagreements are counted in ``mismatches``.
    """
    n = recipients or design.inputs.recipients
    eps = design.inputs.epsilon if epsilon is None else epsilon
    r0 = design.inputs.noise if noise is None else noise
    rr = design.inputs.record_noise if record_noise is None else record_noise
    m, pool, q = _layers(design, exclusive)
    if decoder == "auto":
        decoder = "attribute" if n <= AUTO_LIMIT else "fast"
    all_named = any_named = false = false_trials = mismatches = observed = 0
    sizes = 0.0
    start = time.perf_counter()
    for _ in range(trials):
        world = draw(
            n,
            m,
            pool,
            q,
            colluders,
            s,
            attack,
            r0,
            rng,
            controls=controls,
            leak=leak,
            record_noise=rr,
        )
        if decoder == "attribute":
            verdict = decode_attribute(world, epsilon=eps, noise=r0, record_noise=rr)
        else:
            verdict = decode_fast(world, epsilon=eps, noise=r0, record_noise=rr)
            if decoder == "both":
                slow = decode_attribute(world, epsilon=eps, noise=r0, record_noise=rr)
                mismatches += int(np.any(slow.accused != verdict.accused))
        named = int(verdict.accused[world.colluders].sum())
        wrong = int(verdict.accused.sum()) - named
        all_named += named == colluders
        any_named += named > 0
        false += wrong
        false_trials += wrong > 0
        observed += world.observed
        sizes += float(world.share_sizes[world.colluders].mean())
    return SimResult(
        recipients=n,
        colluders=colluders,
        leak=s,
        attack=attack,
        trials=trials,
        all_named=all_named,
        any_named=any_named,
        innocents_accused=false,
        innocent_trials=(n - colluders) * trials,
        trials_with_false_accusation=false_trials,
        canaries_per_share=sizes / trials if trials else 0.0,
        contact_points=n * m + pool,
        observed_mean=observed / trials if trials else 0.0,
        decoder=decoder,
        mismatches=mismatches,
        seconds=time.perf_counter() - start,
        leak_kind=leak,
    )
