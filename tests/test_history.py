from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from canarino.customers import import_customers
from canarino.errors import InvalidInput, NotFound
from canarino.history import duty_record, iso_utc, parse_time, split_entries, with_status
from canarino.incidents import (
    assess_risk,
    incident_history,
    mark_obligation,
    merge_trace,
    open_incident,
    show_incident,
    update_facts,
)
from canarino.obligations import IncidentFacts, evaluate
from canarino.recipients import add_recipient
from canarino.shares import create_share
from canarino.testing import make_dump, write_customers_csv
from canarino.trace import run_trace
from canarino.workspace import Workspace, init_workspace

from .conftest import MAIL_DOMAINS, PHONE_RANGES

MARCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_malformed_assessment_rows_are_read_as_empty_not_as_errors() -> None:
    hostile = [None, 3, "x", {"kind": "obligation"}, {"kind": "obligation", "key": 7}, {}]
    assert split_entries(hostile) == ({}, {})
    assert split_entries(None) == ({}, {})
    assert split_entries([{"kind": "facts", "facts": None}]) == ({}, {})


def test_a_duty_round_trips_through_its_record_with_its_state() -> None:
    facts = IncidentFacts(
        categories=frozenset({"contact"}), affected={"IT": 3}, aware=MARCH, risk="risk"
    )
    (authority, _register) = evaluate(facts, now=MARCH)
    record = duty_record(authority)
    assert record["key"] == "eu.gdpr.art33.authority@IT" and record["status"] == "pending"
    assert record["verification"] == "verified"
    done = {**record, "status": "done", "done_at": iso_utc(MARCH), "status_note": "case 1"}
    _, duties = split_entries([done])
    restored = with_status(authority, duties[authority.key])
    assert restored.status == "done" and restored.done_at == MARCH
    assert with_status(authority, record).status == "pending"
    assert parse_time(None) is None and parse_time("2026-03-02T09:00:00+00:00") == MARCH


@pytest.fixture(scope="module")
def phased(
    tmp_path_factory: pytest.TempPathFactory, people: list[dict[str, str]]
) -> Iterator[tuple[Workspace, int, Path]]:
    """One workspace and trace for the module: every test opens its own incident on it."""
    base = tmp_path_factory.mktemp("phased")
    ws = init_workspace(base / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    import_customers(ws, write_customers_csv(base / "clienti.csv", people))
    fields = "customer_id,first_name,last_name,email,phone,address"
    shares = {}
    for name in ("Vendor A", "Vendor B"):
        add_recipient(ws, name, "vendor")
        shares[name] = create_share(ws, name, fields, base / f"{name[-1]}.csv")
    dump = base / "dump.csv"
    make_dump(shares["Vendor A"].path, dump, fraction=0.25, seed=3)
    yield ws, run_trace(ws, dump).trace_id, shares["Vendor B"].path
    ws.close()


@pytest.fixture
def loaded(phased: tuple[Workspace, int, Path]) -> Workspace:
    return phased[0]


@pytest.fixture
def trace_id(phased: tuple[Workspace, int, Path]) -> int:
    return phased[1]


# --- phased notification (through incidents) ----------------------------------------------------------------

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
    phased: tuple[Workspace, int, Path], loaded: Workspace, trace_id: int, tmp_path: Path
) -> None:
    view = open_incident(loaded, trace_id, aware_at=AWARE)
    dump = tmp_path / "second.csv"
    make_dump(phased[2], dump, fraction=0.25, seed=5)
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
