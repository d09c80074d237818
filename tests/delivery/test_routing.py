from __future__ import annotations

import itertools
import time

from canarino.delivery import provider_of


def test_rate_limit_per_provider_paces_one_provider_without_blocking_others() -> None:
    from canarino.delivery.routing import _Scheduler

    jobs = [(i, "google") for i in range(6)] + [(100 + i, "d:small") for i in range(6)]
    scheduler = _Scheduler(jobs, rate=25, burst=1)
    started = time.monotonic()
    order: list[tuple[int, str, float]] = []
    while (job := scheduler.take()) is not None:
        order.append((*job, time.monotonic() - started))
        scheduler.finish()
    google = [t for _, route, t in order if route == "google"]
    assert len(order) == 12
    assert google[-1] >= 5 / 25 * 0.9  # one message per 40 ms after the first
    assert all(b - a >= 0.03 for a, b in itertools.pairwise(google))
    assert provider_of("googlemail.com") == provider_of("gmail.com") == "google"
    assert provider_of("hotmail.it") == "microsoft" and provider_of("esempio.it") is None
