from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import binom

from canarino.attribution import (
    CanaryFacts,
    ShareFacts,
    attribute,
    binomial_tail,
    greedy_cover,
    one_in,
    poisson_binomial_tail,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _share(sid: int, rid: int, name: str, days: int = 0, canaries: int = 20) -> ShareFacts:
    return ShareFacts(sid, rid, name, "vendor", None, T0 + timedelta(days=days), 100, canaries)


def _exclusive(cid: int, sid: int) -> CanaryFacts:
    return CanaryFacts(cid, "exclusive", 0.0, (sid,))


SHARES = {1: _share(1, 1, "A"), 2: _share(2, 2, "B"), 3: _share(3, 1, "A", days=30)}
EXCLUSIVE = {1: 40, 2: 20}


def test_exclusive_hits_accuse_with_a_p_value_and_explain_themselves() -> None:
    seen = [_exclusive(10, 1), _exclusive(11, 3), _exclusive(12, 1), _exclusive(13, 2)]
    result = attribute(SHARES, seen, EXCLUSIVE, {1: 40, 2: 40}, 40, recipients=2, noise=1e-6)
    a, b = result.suspects
    assert (a.recipient, a.canaries_seen, a.accused) == ("A", 3, True)
    assert a.p_value == pytest.approx(binom.sf(2, 40, 1e-6))
    assert (b.recipient, b.canaries_seen, b.accused) == ("B", 1, False)
    assert "3 of the 4 canaries" in a.explanation and "1 in 10^" in a.explanation
    assert "not enough to accuse" in b.explanation
    assert result.threshold == pytest.approx(1e-6 / (2 * 2))  # two recipients, two tests
    assert result.cover == ["A", "B"]


def test_without_canaries_coverage_ranks_but_never_accuses() -> None:
    result = attribute(SHARES, [], EXCLUSIVE, {1: 30, 2: 27}, 30, recipients=2)
    assert [s.recipient for s in result.suspects] == ["A", "B"]
    assert not any(s.accused for s in result.suspects)
    assert result.suspects[0].score == 0.5 and result.suspects[0].layer == "customers"


def test_a_recipient_missing_most_leaked_customers_and_holding_no_canary_is_dropped() -> None:
    result = attribute(SHARES, [], EXCLUSIVE, {1: 30, 2: 12}, 30, recipients=2)
    assert [s.recipient for s in result.suspects] == ["A"]


def test_no_evidence_names_nobody() -> None:
    result = attribute(SHARES, [], EXCLUSIVE, {}, 0, recipients=2)
    assert result.suspects == [] and result.cover == []


def test_control_canaries_seen_raise_the_noise_and_weaken_the_case() -> None:
    seen = [_exclusive(10, 1), _exclusive(11, 1), CanaryFacts(99, "control", 0.0, ())]
    quiet = attribute(SHARES, seen[:2], EXCLUSIVE, {}, 0, recipients=2, noise=1e-6)
    noisy = attribute(SHARES, seen, EXCLUSIVE, {}, 0, recipients=2, noise=1e-6, controls=(1, 10))
    assert noisy.noise == 0.1 and noisy.controls_seen == 1
    assert quiet.suspects[0].accused and not noisy.suspects[0].accused
    assert noisy.suspects[0].canaries_observed == 2  # controls are not evidence


def test_shared_canaries_use_the_poisson_binomial_null() -> None:
    shares = {1: _share(1, 1, "A"), 2: _share(2, 2, "B"), 3: _share(3, 3, "C")}
    seen = [CanaryFacts(i, "shared", 0.5, (1, 2) if i % 2 else (1, 3)) for i in range(30)]
    result = attribute(shares, seen, {}, {}, 0, recipients=3, epsilon=1e-3)
    top = result.suspects[0]
    assert (top.recipient, top.layer, top.canaries_seen) == ("A", "shared", 30)
    assert top.p_value == pytest.approx(0.5**30) and top.accused
    assert all(not s.accused for s in result.suspects[1:])


def test_time_window_closes_at_a_later_share_whose_canaries_are_missing() -> None:
    shares = {1: _share(1, 1, "A"), 2: _share(2, 1, "A", days=31), 3: _share(3, 1, "A", days=62)}
    seen = [_exclusive(i, 1) for i in range(10)]
    found = T0 + timedelta(days=90)
    (a,) = attribute(shares, seen, {1: 60}, {}, 0, recipients=1, found_at=found).suspects
    assert a.window == [shares[1].created_at.isoformat(), shares[2].created_at.isoformat()]
    assert "between 2026-03-02 and 2026-04-02" in a.explanation


def test_greedy_cover_finds_the_fewest_recipients() -> None:
    holders = {1: {1, 2, 3}, 2: {3, 4}, 3: {4}}
    assert greedy_cover(holders, {1: "A", 2: "B", 3: "C"}) == ["A", "B"]


@pytest.mark.parametrize(
    ("probs", "hits"), [([0.3] * 10, 4), ([0.1, 0.5, 0.9, 0.3], 2), ([0.2, 0.7], 3), ([], 0)]
)
def test_poisson_binomial_tail_matches_enumeration(probs: list[float], hits: int) -> None:
    from itertools import product

    expected = 0.0
    for bits in product([0, 1], repeat=len(probs)):
        if sum(bits) >= hits:
            weight = 1.0
            for p, b in zip(probs, bits, strict=True):
                weight *= p if b else 1 - p
            expected += weight
    assert poisson_binomial_tail(probs, hits) == pytest.approx(expected)


def test_small_tails_keep_their_precision() -> None:
    assert poisson_binomial_tail([0.01, 0.02] * 20, 20) > 0
    assert binomial_tail(5, 100, 1e-6) == pytest.approx(binom.sf(4, 100, 1e-6))
    assert one_in(3e-10) == "1 in 10^9" and one_in(0.25) == "25%"


def test_p_values_are_calibrated_under_the_null() -> None:
    """At ε = 0.2 the rate of trials accusing any innocent stays at or below 0.2."""
    rng = random.Random(2026)
    n, pool, q, trials, epsilon = 30, 120, 0.5, 400, 0.2
    shares = {r: _share(r, r, f"R{r:02d}") for r in range(n)}
    false_alarms = 0
    for _ in range(trials):
        holdings = {r: {i for i in range(pool) if rng.random() < q} for r in range(n)}
        exclusive = {r: [1000 + r * 50 + k for k in range(50)] for r in range(n)}
        leaker = 0
        seen = [
            CanaryFacts(i, "shared", q, tuple(r for r in range(n) if i in holdings[r]))
            for i in holdings[leaker]
            if rng.random() < 0.05
        ]
        seen += [_exclusive(c, leaker) for c in exclusive[leaker] if rng.random() < 0.05]
        # Background noise: any canary may show up whoever holds it.
        seen += [
            _exclusive(c, r) for r in range(1, n) for c in exclusive[r] if rng.random() < 0.002
        ]
        result = attribute(
            shares,
            seen,
            dict.fromkeys(range(n), 50),
            {},
            0,
            recipients=n,
            epsilon=epsilon,
            noise=0.002,
        )
        false_alarms += any(s.accused and s.recipient != "R00" for s in result.suspects)
    assert false_alarms / trials <= epsilon


# --- record hits and contact hits ------------------------------------------------------

BIG = 10_000


def _big_ledger() -> tuple[dict[int, ShareFacts], dict[int, int]]:
    """Share facts for two of 10,000 recipients; the rest hold nothing observed."""
    shares = {1: _share(1, 1, "A", canaries=50), 2: _share(2, 2, "B", canaries=50)}
    return shares, {1: 50, 2: 50}


def test_one_record_hit_accuses_among_ten_thousand_recipients() -> None:
    shares, counts = _big_ledger()
    seen = [CanaryFacts(10, "exclusive", 0.0, (1,), record=True)]
    result = attribute(shares, seen, counts, {}, 0, recipients=BIG)
    (a,) = result.suspects
    assert a.recipient == "A" and a.accused and a.records_seen == 1
    assert a.p_value == pytest.approx(binom.sf(0, 50, 1e-15))
    assert result.threshold == pytest.approx(1e-6 / (BIG * 2))
    assert "whole records" in a.explanation and result.as_dict()["record_noise"] == 1e-15


def test_one_contact_hit_does_not_accuse() -> None:
    shares, counts = _big_ledger()
    seen = [_exclusive(10, 1)]
    (a,) = attribute(shares, seen, counts, {}, 0, recipients=BIG).suspects
    assert not a.accused and a.records_seen == 0
    assert a.p_value == pytest.approx(binom.sf(0, 50, 1e-6))
    assert "whole records" not in a.explanation


def test_enough_contact_hits_still_accuse_without_any_record() -> None:
    shares, counts = _big_ledger()
    seen = [_exclusive(10 + i, 1) for i in range(3)]
    (a,) = attribute(shares, seen, counts, {}, 0, recipients=BIG).suspects
    assert a.accused and a.records_seen == 0


def test_a_control_canary_seen_as_a_record_suspends_single_record_accusations() -> None:
    shares, counts = _big_ledger()
    seen = [
        CanaryFacts(10, "exclusive", 0.0, (1,), record=True),
        CanaryFacts(99, "control", 0.0, (), record=True),
    ]
    result = attribute(shares, seen, counts, {}, 0, recipients=BIG, controls=(1, 1000))
    (a,) = result.suspects
    assert result.control_records == 1 and result.record_noise == pytest.approx(1e-3)
    assert not a.accused and a.canaries_observed == 1
    # A control seen only as a contact leaves the record evidence standing.
    contact_only = [seen[0], CanaryFacts(99, "control", 0.0, ())]
    (b,) = attribute(
        shares, contact_only, counts, {}, 0, recipients=BIG, controls=(1, 1000)
    ).suspects
    assert b.accused


def test_without_a_record_test_the_threshold_splits_over_fewer_tests() -> None:
    seen = [CanaryFacts(10, "exclusive", 0.0, (1,), record=True)]
    result = attribute(SHARES, seen, EXCLUSIVE, {}, 0, recipients=2, record_noise=None)
    assert result.threshold == pytest.approx(1e-6 / 2)
    assert not result.suspects[0].accused  # the record flag is ignored without its test


def test_a_record_on_a_recipient_the_ledger_undercounts_is_not_certainty() -> None:
    """A hostile or stale ledger (0 exclusive canaries) must not give p = 0."""
    seen = [CanaryFacts(10, "exclusive", 0.0, (1,), record=True)]
    (a,) = attribute(SHARES, seen, {}, {}, 0, recipients=2).suspects
    assert a.p_value > 0
