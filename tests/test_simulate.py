from __future__ import annotations

import numpy as np
import pytest

from canarino.design import Design, DesignInput, plan
from canarino.simulate import decode_attribute, decode_fast, draw, simulate


def _design(n: int, c: int, s: float = 0.2, epsilon: float = 1e-6, noise: float = 1e-6) -> Design:
    return plan(
        DesignInput(recipients=n, colluders=c, smallest_leak=s, epsilon=epsilon, noise=noise)
    )


def test_a_single_leaker_is_named_well_above_the_detection_limit() -> None:
    design = _design(60, 1)
    s = 2.5 * design.detection_limit
    result = simulate(design, 1, s, "union", 300, np.random.default_rng(1), decoder="attribute")
    assert result.p_all >= 0.99 and result.innocents_accused == 0
    assert result.canaries_per_share == design.per_share
    assert result.contact_points == design.contact_points(60)


def test_colluders_who_intersect_are_caught_by_the_shared_layer_only() -> None:
    two_layers = _design(60, 2)
    result = simulate(two_layers, 2, 0.2, "intersection", 120, np.random.default_rng(2))
    assert result.p_all >= 0.95 and result.innocents_accused == 0
    # Intersecting strips every exclusive canary: the exclusive layer alone names nobody.
    exclusive_only = _design(60, 1)
    blind = simulate(exclusive_only, 2, 0.2, "intersection", 50, np.random.default_rng(3))
    assert blind.any_named == 0


def test_a_merged_leak_is_caught_by_the_exclusive_layer() -> None:
    exclusive_only = _design(60, 1)
    result = simulate(exclusive_only, 3, 0.2, "union", 200, np.random.default_rng(4))
    assert result.p_all >= 0.95 and result.innocents_accused == 0


def test_no_innocent_is_accused_over_thousands_of_innocent_trials() -> None:
    rng = np.random.default_rng(5)
    results = [
        simulate(_design(1_000, c), c, s, attack, 5, rng, decoder="fast")
        for c in (1, 3)
        for s in (0.05, 0.2)
        for attack in ("union", "intersection")
    ]
    assert sum(r.innocent_trials for r in results) >= 35_000
    assert sum(r.innocents_accused for r in results) == 0


def test_the_false_accusation_rate_is_calibrated_at_epsilon_0_2() -> None:
    """At ε = 0.2 the share of trials accusing any innocent stays at or below 0.2."""
    rng = np.random.default_rng(6)
    design = _design(30, 2, epsilon=0.2, noise=0.002)
    for attack in ("union", "intersection"):
        result = simulate(design, 2, 0.2, attack, 400, rng, decoder="fast")
        rate = result.trials_with_false_accusation / result.trials
        assert 0 < rate <= 0.2


@pytest.mark.parametrize(
    ("n", "c", "attack", "epsilon", "noise"),
    [
        (40, 1, "union", 1e-6, 1e-6),
        (40, 3, "union", 0.2, 0.01),
        (40, 2, "intersection", 0.2, 0.002),
        (200, 3, "intersection", 1e-3, 1e-3),
    ],
)
def test_the_vectorised_decoder_accuses_exactly_as_attribute_does(
    n: int, c: int, attack: str, epsilon: float, noise: float
) -> None:
    design = _design(n, c, epsilon=epsilon, noise=noise)
    result = simulate(design, c, 0.1, attack, 40, np.random.default_rng(7), decoder="both")  # type: ignore[arg-type]
    assert result.mismatches == 0
    rng = np.random.default_rng(8)
    m = design.layers[0].per_share
    shared = design.layer("shared")
    pool, q = (shared.pool, shared.bias) if shared else (0, 0.0)
    for _ in range(10):
        world = draw(n, m, pool, q, c, 0.1, attack, noise, rng, controls=50)  # type: ignore[arg-type]
        fast = decode_fast(world, epsilon=epsilon, noise=noise)
        slow = decode_attribute(world, epsilon=epsilon, noise=noise)
        assert np.array_equal(fast.accused, slow.accused)
        listed = slow.p_values < 1
        assert fast.p_values[listed] == pytest.approx(slow.p_values[listed], rel=1e-12)


def test_draws_follow_create_share() -> None:
    rng = np.random.default_rng(9)
    world = draw(50, 20, 400, 0.6, 2, 1.0, "union", 0.0, rng)
    assert world.exclusive_seen.size == 40  # every exclusive canary of both, none else
    assert set(world.exclusive_seen // 20) == set(world.colluders.tolist())
    assert world.holders[world.colluders].any(axis=0).all()  # nothing held by neither leaks
    assert abs(world.share_sizes.mean() - (20 + 0.6 * 400)) < 5
    alone = draw(50, 20, 400, 0.6, 1, 1.0, "intersection", 0.0, rng)
    assert alone.exclusive_seen.size == 20  # intersection by one is a single leak
    with pytest.raises(ValueError, match="unknown attack"):
        draw(50, 20, 400, 0.6, 1, 1.0, "majority", 0.0, rng)  # type: ignore[arg-type]


# --- record hits (whole rows) and contact hits (combo lists) ---------------------------


def test_a_leak_of_whole_rows_shows_its_canaries_as_records_and_a_combo_list_does_not() -> None:
    rng = np.random.default_rng(10)
    rows = draw(50, 20, 0, 0.0, 1, 1.0, "union", 1e-3, rng)
    leaked = rows.exclusive_seen // 20 == rows.colluders[0]
    assert rows.records[leaked].all() and not rows.records[~leaked].any()  # noise: contacts
    column = draw(50, 20, 0, 0.0, 1, 1.0, "union", 0.0, rng, leak="column")
    assert column.exclusive_seen.size == 20 and not column.records.any()
    with pytest.raises(ValueError, match="unknown leak"):
        draw(50, 20, 0, 0.0, 1, 1.0, "union", 0.0, rng, leak="rows and more")  # type: ignore[arg-type]


def test_one_record_names_a_leaker_where_a_combo_list_needs_several_contacts() -> None:
    design = _design(1_000, 1, s=0.05)
    exclusive = design.layers[0]
    assert exclusive.hits_needed == 1 < exclusive.contact_hits
    s = 1.5 * design.detection_limit
    rows = simulate(design, 1, s, "union", 300, np.random.default_rng(11), decoder="fast")
    combo = simulate(
        design, 1, s, "union", 300, np.random.default_rng(11), decoder="fast", leak="column"
    )
    assert rows.p_all >= 0.99 and rows.leak_kind == "rows"
    assert combo.p_all < rows.p_all and combo.leak_kind == "column"
    assert rows.innocents_accused == combo.innocents_accused == 0


def test_calibration_holds_with_record_noise_in_the_null() -> None:
    """Records made by innocent paths at 1e-3 per canary: still ≤ ε = 0.2 of trials."""
    rng = np.random.default_rng(12)
    design = _design(30, 1, epsilon=0.2, noise=0.002)
    result = simulate(design, 1, 0.2, "union", 600, rng, decoder="fast", record_noise=1e-3)
    rate = result.trials_with_false_accusation / result.trials
    assert 0 < rate <= 0.2


def test_controls_seen_as_records_raise_the_record_noise_in_the_simulated_decoder() -> None:
    rng = np.random.default_rng(13)
    world = draw(40, 30, 0, 0.0, 1, 0.2, "union", 0.0, rng, controls=100, record_noise=0.05)
    assert world.control_records > 0
    fast = decode_fast(world, epsilon=1e-6, noise=1e-6, record_noise=1e-15)
    slow = decode_attribute(world, epsilon=1e-6, noise=1e-6, record_noise=1e-15)
    assert np.array_equal(fast.accused, slow.accused)
    assert not fast.accused.any()  # one record each is no longer enough


@pytest.mark.parametrize("leak", ["rows", "column"])
def test_the_vectorised_decoder_matches_attribute_on_records_and_contacts(leak: str) -> None:
    design = _design(60, 2, epsilon=0.2, noise=0.005)
    result = simulate(
        design,
        2,
        0.1,
        "union",
        40,
        np.random.default_rng(14),
        decoder="both",
        leak=leak,  # type: ignore[arg-type]
        record_noise=1e-3,
    )
    assert result.mismatches == 0
