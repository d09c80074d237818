from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canarino.obligations import format_remaining, gdpr_authority_notice


def test_gdpr_authority_notice_is_due_72_hours_after_awareness() -> None:
    aware = datetime(2026, 3, 27, 10, 0, tzinfo=UTC)
    ob = gdpr_authority_notice(aware)
    assert ob.due_at - aware == timedelta(hours=72)
    assert ob.remaining(aware + timedelta(hours=1)) == timedelta(hours=71)
    # Across the end of daylight saving time the absolute deadline does not move.
    assert ob.as_dict(aware, "Europe/Rome")["due_local"] == "2026-03-30T12:00+02:00"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=71, minutes=5), "2d 23h 05m left"),
        (timedelta(minutes=9), "0h 09m left"),
        (timedelta(hours=-4, minutes=-10), "overdue by 4h 10m"),
    ],
)
def test_format_remaining(delta: timedelta, text: str) -> None:
    assert format_remaining(delta) == text
