from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from canarino.errors import InvalidInput, NotFound
from canarino.incidents import (
    assess_risk,
    incident_history,
    list_incidents,
    mark_obligation,
    merge_trace,
    open_incident,
    show_incident,
    update_facts,
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


# --- phased notification ----------------------------------------------------------------

AWARE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_opening_records_the_first_assessment_in_the_history(
    loaded: Workspace, trace_id: int
) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    (entry,) = incident_history(loaded, view.id)
    assert entry.reason == f"opened on trace #{trace_id}"
    assert set(entry.added) == {o.key for o in view.obligations}
    assert all(o.status == "pending" for o in view.obligations)


def test_done_duty_stays_done_when_the_facts_change_and_history_is_kept(
    loaded: Workspace, trace_id: int
) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    done_at = AWARE + timedelta(hours=30)
    marked = mark_obligation(
        loaded, view.id, "eu.gdpr.art33.authority", at=done_at, note="portal case 123"
    )
    (gdpr,) = [o for o in marked.obligations if o.rule_id == "eu.gdpr.art33.authority"]
    assert gdpr.status == "done" and gdpr.done_at == done_at
    # Encryption with a safe key removes the people's duty; the authority notice stays done.
    raised = assess_risk(loaded, view.id, "high_risk", "fake agents are calling customers")
    assert "eu.gdpr.art34.individuals" in {o.rule_id for o in raised.obligations}
    after = update_facts(loaded, view.id, "data were encrypted", encrypted=True)
    assert "eu.gdpr.art34.individuals" not in {o.rule_id for o in after.obligations}
    (still,) = [o for o in after.obligations if o.rule_id == "eu.gdpr.art33.authority"]
    assert still.status == "done" and still.status_note == "portal case 123"
    # Lowering the risk to none removes the authority duty, but the record keeps it done.
    low = assess_risk(loaded, view.id, "none", "encrypted, key safe")
    assert "eu.gdpr.art33.authority" not in {o.rule_id for o in low.obligations}
    assert [w["rule_id"] for w in low.withdrawn] == ["eu.gdpr.art33.authority"]
    history = incident_history(loaded, view.id)
    assert [h.reason.split(":")[0] for h in history] == [
        f"opened on trace #{trace_id}",
        f"{gdpr.key} marked done",
        "risk set to high_risk",
        "data were encrypted",
        "risk set to none",
    ]
    assert "eu.gdpr.art34.individuals@EU" in history[2].added
    assert "eu.gdpr.art34.individuals@EU" in history[3].removed
    assert history[1].changed == [gdpr.key]


def test_recorded_discovery_dates_the_us_duties(loaded: Workspace, trace_id: int) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    ids = update_facts(loaded, view.id, "ID numbers in the dump", categories=["government_id"])
    undated = [o for o in ids.obligations if o.jurisdiction.startswith("US-")]
    assert undated and all(o.due_at is None for o in undated if o.anchor == "discovered")
    discovered = AWARE - timedelta(days=2)
    after = update_facts(loaded, view.id, "forensics report", discovered_at=discovered)
    assert after.discovered_at == discovered
    dated = [o for o in after.obligations if o.anchor == "discovered"]
    assert dated and all(o.anchor_at == discovered for o in dated)
    assert any(o.due_at is not None for o in dated)


def test_counts_and_texts_are_recorded_for_reports(loaded: Workspace, trace_id: int) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    after = update_facts(
        loaded,
        view.id,
        "vendor sent its own count",
        counts={"US-TX": 300},
        texts={"measures": "vendor account closed", "cause": "phished vendor agent"},
        categories=["government_id"],
    )
    assert after.facts["counts"] == {"US-TX": 300}
    assert after.facts["measures"] == "vendor account closed"
    assert "us-tx.ag.2023@US-TX" in {o.key for o in after.obligations}


BAD_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"contained_at": datetime(2020, 1, 1, tzinfo=UTC)}, "contained is before occurred"),
    ({"key_exposed": True}, "not encrypted"),
    ({"counts": {"XX": 3}}, "unknown jurisdiction code 'XX'"),
    ({"counts": {"IT": -3}}, "whole number >= 0"),
    ({"events": ["exfiltration"]}, "unknown event"),
    ({"categories": ["ssn"]}, "unknown data category"),
    ({"texts": {"password": "x"}}, "unknown text"),
    ({"discovered_at": datetime(2026, 1, 2)}, "time zone"),
    ({"discovered_at": datetime.now(UTC) + timedelta(days=3)}, "future"),
]


def test_contradictory_fact_changes_are_refused_and_change_nothing(
    loaded: Workspace, trace_id: int
) -> None:
    # One incident for every row: opening one costs a trace.
    view = open_incident(loaded, trace_id, aware_at=AWARE, occurred_at=AWARE - timedelta(days=3))
    for changes, message in BAD_CHANGES:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            update_facts(loaded, view.id, "new facts", **changes)
    assert len(incident_history(loaded, view.id)) == 1
    again = show_incident(loaded, view.id)
    assert again.contained_at is None and again.facts == {}


def test_fact_change_without_reason_is_refused(loaded: Workspace, trace_id: int) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    with pytest.raises(InvalidInput, match="reason"):
        update_facts(loaded, view.id, " ", encrypted=True)


def test_merging_a_second_trace_grows_the_scope_and_is_recorded(
    shared: dict[str, ShareResult], loaded: Workspace, trace_id: int, tmp_path: Path
) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    dump = tmp_path / "second.csv"
    make_dump(shared["Vendor B"].path, dump, fraction=0.25, seed=5)
    second = run_trace(loaded, dump).trace_id
    merged = merge_trace(loaded, view.id, second)
    assert merged.people > view.people
    assert incident_history(loaded, view.id)[-1].reason.startswith(f"trace #{second} merged")
    again = merge_trace(loaded, view.id, second)
    assert again.people == merged.people


def test_marking_an_unknown_duty_names_the_valid_ones(loaded: Workspace, trace_id: int) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    with pytest.raises(NotFound, match=re.escape("eu.gdpr.art33.authority@")):
        mark_obligation(loaded, view.id, "us-zz.nothing")
    with pytest.raises(InvalidInput, match="future"):
        mark_obligation(
            loaded, view.id, "eu.gdpr.art33.authority", at=datetime.now(UTC) + timedelta(days=1)
        )
    with pytest.raises(InvalidInput, match="unknown status"):
        mark_obligation(loaded, view.id, "eu.gdpr.art33.authority", status="half")
