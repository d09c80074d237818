from __future__ import annotations

import math

import pytest
from scipy.stats import binom

from canarino.design import (
    DesignInput,
    detection_limit,
    exclusive_per_share,
    fano_bound,
    hits_needed,
    plan,
    shared_pool,
    z_channel_capacity,
)


@pytest.mark.parametrize(("s", "bits"), [(1, 1.0), (0.5, 0.322), (0.2, 0.114), (0.05, 0.027)])
def test_z_channel_capacity_matches_the_reference_table(s: float, bits: float) -> None:
    assert z_channel_capacity(s) == pytest.approx(bits, abs=1e-3)


@pytest.mark.parametrize(
    ("k", "s", "floor"),
    [(1, 1.0, 7), (3, 1.0, 19), (1, 0.2, 58), (3, 0.2, 170), (1, 0.1, 121), (3, 0.1, 352)],
)
def test_fano_bound_matches_the_reference_examples(k: int, s: float, floor: int) -> None:
    assert round(fano_bound(200, k, s, 1e-3)) == floor


def test_exclusive_budget_is_the_smallest_that_reaches_the_hits() -> None:
    assert exclusive_per_share(0.2, 0.01, 1) == 21  # the reference's m_x at s = 0.2
    m = exclusive_per_share(0.05, 0.01, 3)
    assert binom.sf(2, m, 0.05) >= 0.99 > binom.sf(2, m - 1, 0.05)


def test_hits_needed_grows_with_noise() -> None:
    assert hits_needed(200, 47, 0.0, 1e-3) == 1
    quiet, noisy = hits_needed(200, 47, 1e-6, 5e-4), hits_needed(200, 47, 1e-3, 5e-4)
    assert quiet < noisy and 200 * binom.sf(noisy - 1, 47, 1e-3) <= 5e-4


def test_two_layer_design_reproduces_the_reference_simulation_setup() -> None:
    d = plan(
        DesignInput(
            recipients=200, colluders=3, smallest_leak=0.2, epsilon=1e-3, miss=0.01, noise=1e-3
        )
    )
    exclusive, shared = d.layer("exclusive"), d.layer("shared")
    assert exclusive is not None and shared is not None
    # ε is split over three tests: exclusive records, exclusive contacts, shared.
    assert shared.pool == shared_pool(200, 3, 0.2, 1e-3 / 3, 0.01)[0]
    assert shared.bias == pytest.approx(math.exp(-1 / 3), abs=1e-4)
    # The miss chance is split over the three colluders, so all three show up in a union;
    # one record hit each is enough, while a combo list needs several contact hits.
    assert exclusive.per_share == math.ceil(math.log(3 / 0.01) / -math.log(0.8))
    assert exclusive.hits_needed == 1 and exclusive.contact_hits >= 3
    assert d.per_share == exclusive.per_share + shared.per_share


def test_single_leaker_design_has_no_shared_layer_and_a_consistent_limit() -> None:
    d = plan(DesignInput(recipients=25, smallest_leak=0.02))
    (only,) = d.layers
    assert only.name == "exclusive" and only.hits_needed == 1 and only.contact_hits >= 2
    assert d.detection_limit == pytest.approx(1 - 0.01 ** (1 / only.per_share))
    assert d.detection_limit <= 0.02 + 1e-9 < d.contact_limit
    assert binom.sf(only.contact_hits - 1, only.per_share, d.contact_limit) == pytest.approx(0.99)


def test_high_record_noise_asks_for_more_than_one_record() -> None:
    quiet = plan(DesignInput(recipients=1000, smallest_leak=0.05))
    noisy = plan(DesignInput(recipients=1000, smallest_leak=0.05, noise=1e-3, record_noise=1e-4))
    assert quiet.layers[0].hits_needed == 1 < noisy.layers[0].hits_needed
    assert noisy.layers[0].per_share > quiet.layers[0].per_share


def test_shared_pool_minimises_at_q_e_to_minus_one_over_c() -> None:
    pool, q = shared_pool(1000, 2, 0.2, 1e-6, 0.01)
    assert q == pytest.approx(math.exp(-0.5)) and pool > 0


def test_detection_limit_for_one_hit_is_the_closed_form() -> None:
    assert detection_limit(90, 0.01) == pytest.approx(1 - 0.01 ** (1 / 90))
    assert detection_limit(1, 0.01, hits=2) == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"recipients": 0},
        {"recipients": 5, "colluders": 9},
        {"recipients": 5, "smallest_leak": 0},
        {"recipients": 5, "epsilon": 1.5},
        {"recipients": 5, "noise": -1},
        {"recipients": 5, "noise": 1e-6, "record_noise": 1e-3},
        {"recipients": 5, "record_noise": -1e-15},
    ],
)
def test_impossible_inputs_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        plan(DesignInput(**bad))  # type: ignore[arg-type]


def test_tardos_layer_is_sized_but_marked_unassigned() -> None:
    d = plan(DesignInput(recipients=200, colluders=3, smallest_leak=0.2, epsilon=1e-3, tardos=True))
    tardos = d.layer("tardos")
    assert tardos is not None and "not yet assigned" in tardos.note
    assert tardos.pool == math.ceil(math.pi**2 * 9 * math.log(200 / (1e-3 / 4)) / 0.2)
