from __future__ import annotations

from datetime import UTC, datetime

from canarino.history import duty_record, iso_utc, parse_time, split_entries, with_status
from canarino.obligations import IncidentFacts, evaluate

AWARE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_malformed_assessment_rows_are_read_as_empty_not_as_errors() -> None:
    hostile = [None, 3, "x", {"kind": "obligation"}, {"kind": "obligation", "key": 7}, {}]
    assert split_entries(hostile) == ({}, {})
    assert split_entries(None) == ({}, {})
    assert split_entries([{"kind": "facts", "facts": None}]) == ({}, {})


def test_a_duty_round_trips_through_its_record_with_its_state() -> None:
    facts = IncidentFacts(
        categories=frozenset({"contact"}), affected={"IT": 3}, aware=AWARE, risk="risk"
    )
    (authority, _register) = evaluate(facts, now=AWARE)
    record = duty_record(authority)
    assert record["key"] == "eu.gdpr.art33.authority@IT" and record["status"] == "pending"
    assert record["verification"] == "verified"
    done = {**record, "status": "done", "done_at": iso_utc(AWARE), "status_note": "case 1"}
    _, duties = split_entries([done])
    restored = with_status(authority, duties[authority.key])
    assert restored.status == "done" and restored.done_at == AWARE
    assert with_status(authority, record).status == "pending"
    assert parse_time(None) is None and parse_time("2026-03-02T09:00:00+00:00") == AWARE
