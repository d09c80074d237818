from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from canarino.errors import InvalidInput, NotFound
from canarino.incidents import (
    assess_risk,
    list_incidents,
    open_incident,
    show_incident,
)
from canarino.shares import ShareResult
from canarino.testing import make_dump
from canarino.trace import run_trace
from canarino.workspace import Workspace


@pytest.fixture
def trace_id(shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path) -> int:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.25, seed=3)
    return run_trace(loaded, dump).trace_id


def test_open_incident_copies_affected_people_and_fields(loaded: Workspace, trace_id: int) -> None:
    view = open_incident(loaded, trace_id, title="Vendor A leak")
    assert view.title == "Vendor A leak" and view.status == "open"
    assert view.people > 0 and view.by_field["email"] == view.people
    assert sum(view.by_country.values()) == view.people
    assert show_incident(loaded, view.id).people == view.people
    assert [v.id for v in list_incidents(loaded)] == [view.id]


def test_gdpr_deadline_is_72_hours_after_awareness(loaded: Workspace, trace_id: int) -> None:
    aware = datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=1)))
    view = open_incident(loaded, trace_id, aware_at=aware)
    (gdpr,) = [o for o in view.obligations if o.rule_id == "eu.gdpr.art33.authority"]
    assert gdpr.due_at == aware + timedelta(hours=72)
    assert "Art. 33" in gdpr.citation and gdpr.authority is not None
    assert "Garante" in gdpr.authority.name
    data = gdpr.as_dict(aware + timedelta(hours=70), "Europe/Rome")
    assert data["remaining_hours"] == 2.0
    assert data["due_local"] == "2026-11-23T23:30+01:00"


def test_obligations_follow_where_people_live_and_list_uncovered_places(
    loaded: Workspace, trace_id: int
) -> None:
    view = open_incident(loaded, trace_id)
    assert sum(view.by_jurisdiction.values()) == view.people
    assert any(code.startswith("US-") for code in view.by_jurisdiction)
    covered = {o.jurisdiction for o in view.obligations}
    assert "EU" in covered
    for code in view.uncovered:
        assert code in view.by_jurisdiction


def test_first_risk_assessment_is_recorded_and_an_analyst_can_override_it(
    loaded: Workspace, trace_id: int
) -> None:
    view = open_incident(loaded, trace_id)
    assert view.risk == "risk" and "phishing" in view.risk_reason
    rules = {o.rule_id for o in view.obligations}
    assert "eu.gdpr.art34.individuals" not in rules
    raised = assess_risk(loaded, view.id, "high_risk", "customers already phoned by scammers")
    assert raised.risk_reason == "customers already phoned by scammers"
    assert "eu.gdpr.art34.individuals" in {o.rule_id for o in raised.obligations}
    with pytest.raises(InvalidInput, match="reason"):
        assess_risk(loaded, view.id, "none", "  ")
    with pytest.raises(InvalidInput, match="unknown risk level"):
        assess_risk(loaded, view.id, "apocalyptic", "x")


@pytest.mark.parametrize(
    ("aware", "occurred", "message"),
    [
        (datetime.now(UTC) + timedelta(days=1), None, "future"),
        (datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC), "after"),
        (datetime(2026, 1, 2), None, "time zone"),
    ],
)
def test_contradictory_times_are_refused(
    loaded: Workspace, trace_id: int, aware: datetime, occurred: datetime | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        open_incident(loaded, trace_id, aware_at=aware, occurred_at=occurred)
    assert list_incidents(loaded) == []


def test_unknown_trace_and_incident_are_not_found(loaded: Workspace) -> None:
    with pytest.raises(NotFound):
        open_incident(loaded, 42)
    with pytest.raises(NotFound):
        show_incident(loaded, 42)
