from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from canarino.errors import InvalidInput
from canarino.incidents import draft_report, open_incident, update_facts
from canarino.obligations import IncidentFacts, evaluate
from canarino.reports import FORMS, Notifier, Report, form_names, render, resolve_form
from canarino.reports import draft_report as draft_from_dict
from canarino.shares import ShareResult
from canarino.testing import make_dump
from canarino.trace import run_trace
from canarino.workspace import Workspace

AWARE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
MEMBERS = {"FR": "Commission Nationale de l'Informatique et des Libertés (CNIL)"}


@pytest.fixture
def incident_id(shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path) -> int:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.25, seed=3)
    trace = run_trace(loaded, dump).trace_id
    return open_incident(loaded, trace, aware_at=AWARE, now=NOW).id


def test_draft_from_a_workspace_fills_fields_lists_gaps_and_holds_no_personal_data(
    loaded: Workspace, incident_id: int, people: list[dict[str, str]]
) -> None:
    report = draft_report(loaded, incident_id, "garante", now=NOW)
    assert report.authority == "Garante per la protezione dei dati personali"
    fields = {f["label"]: f["value"] for s in report.sections for f in s["fields"]}
    assert fields["Numero (approssimativo) di interessati"]
    assert "email address" in fields["Categorie di dati personali"]
    assert fields["Responsabile della protezione dei dati (RPD/DPO)"] == loaded.settings.dpo_contact
    assert any("Descrizione della violazione" in g and "--description" in g for g in report.gaps)
    assert any(d["rule_id"] == "eu.gdpr.art33.authority" for d in report.duties)
    assert any("form layout unverified" in w for w in report.warnings)
    update_facts(
        loaded,
        incident_id,
        "forensics",
        occurred_at=datetime(2026, 11, 18, tzinfo=UTC),
        texts={
            "description": "a vendor's export was published",
            "cause": "phished vendor agent",
            "consequences": "phishing",
            "measures": "vendor access revoked",
        },
        now=NOW,
    )
    filled = draft_report(loaded, incident_id, "IT", now=NOW)
    assert filled.form == "garante" and filled.gaps == []
    text = render(filled, "md")
    for person in people:
        assert person["email"] not in text and person["last_name"] not in text


def incident(
    affected: dict[str, int] | None = None, now: datetime = NOW, **facts: Any
) -> dict[str, Any]:
    """An incident's JSON form as IncidentView.as_dict gives it, built from the engine."""
    affected = affected or {"IT": 120, "FR": 30}
    ob = evaluate(
        IncidentFacts(
            categories=frozenset({"contact", "identity"}),
            affected=affected,
            aware=AWARE,
            risk="risk",
            establishment="IT",
        ),
        now=now,
    )
    return {
        "id": 9,
        "people": sum(affected.values()),
        "by_field": {"email": sum(affected.values()), "first_name": 10},
        "by_jurisdiction": affected,
        "aware_at": AWARE.isoformat(),
        "occurred_at": None,
        "risk": "risk",
        "risk_reason": "phishing is likely",
        "facts": facts,
        "obligations": [o.as_dict(now, "Europe/Rome") for o in ob],
    }


NOTIFIER = Notifier("Example S.p.A.", "privacy@example.com", "dpo@example.com")


def draft(data: dict[str, Any], to: str, now: datetime = NOW) -> Report:
    return draft_from_dict(data, to, NOTIFIER, eu_members=MEMBERS, drafted_at=now, tz="Europe/Rome")


def test_member_state_code_gets_the_gdpr_form_and_one_stop_shop_warning() -> None:
    report = draft(incident(), "FR")
    assert report.form == "gdpr" and "CNIL" in report.authority
    # The company's establishment is Italy: the lead authority is the Garante, not the CNIL.
    assert any("voluntary notice" in w for w in report.warnings)
    lead = draft(incident(), "IT")
    assert [d["rule_id"] for d in lead.duties] == ["eu.gdpr.art33.authority"]
    assert not any("voluntary" in w for w in lead.warnings)


def test_late_notice_needs_reasons_for_the_delay() -> None:
    late = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    report = draft(incident(now=late), "gdpr", now=late)
    assert any("Reasons for a notice after 72 hours" in g for g in report.gaps)
    report = draft(incident(now=late, delay="scope unclear"), "gdpr", now=late)
    assert not any("72 hours" in g for g in report.gaps)
    on_time = draft(incident(), "gdpr")
    assert not any("72 hours" in g for g in on_time.gaps)


@pytest.mark.parametrize("fmt", ["md", "html", "json"])
def test_every_format_shows_gaps_and_unverified_marks(fmt: str) -> None:
    hostile = incident(description="<script>alert(1)</script> & more")
    text = render(draft(hostile, "garante"), fmt)
    if fmt == "json":
        data = json.loads(text)
        assert data["gaps"] and data["verification"] == "unverified"
        return
    assert "GAP" in text and "unverified" in text
    if fmt == "html":
        assert "<script>" not in text and "&lt;script&gt;" in text


def test_unverified_duties_are_flagged_in_the_draft() -> None:
    data = incident({"US-CA": 900})
    data["obligations"] = [
        o.as_dict(NOW, "UTC")
        for o in evaluate(
            IncidentFacts(
                categories=frozenset({"identity", "government_id"}),
                affected={"US-CA": 900},
                aware=AWARE,
                discovered=AWARE,
                risk="risk",
            ),
            now=NOW,
        )
    ]
    report = draft(data, "us-ca")
    assert [d["rule_id"] for d in report.duties] == ["us-ca.ag.2026"]
    assert any(w.startswith("us-ca.ag.2026 is unverified") for w in report.warnings)
    assert "(UNVERIFIED)" in render(report, "md")
    fields = {f["label"]: f["value"] for s in report.sections for f in s["fields"]}
    assert fields["California residents notified"] == "900"


def test_hipaa_form_lists_the_hhs_portal_fields() -> None:
    incident = {
        "id": 3,
        "people": 700,
        "by_field": {"email": 700},
        "by_jurisdiction": {"US-WA": 700},
        "facts": {"discovered_at": "2026-01-02T10:00:00+00:00", "categories": ["health"]},
        "discovered_at": "2026-01-02T10:00:00+00:00",
        "aware_at": "2026-01-02T12:00:00+00:00",
        "risk": "risk",
        "risk_reason": "health data",
        "obligations": [],
    }
    notifier = Notifier("Clinic", "privacy@clinic.example", "dpo@clinic.example")
    report = draft_from_dict(incident, "hhs", notifier, eu_members=MEMBERS, drafted_at=NOW)
    fields = {f["label"]: f["value"] for s in report.sections for f in s["fields"]}
    assert fields["Approximate number of individuals affected"] == "700"
    assert "health" in fields["Type of PHI involved"]
    assert fields["Date of discovery"].startswith("2026-01-02 10:00")
    assert any("Breach start date" in g for g in report.gaps)
    assert any("voluntary notice" in w for w in report.warnings)


def test_massachusetts_form_counts_only_massachusetts_residents() -> None:
    incident = {
        "id": 4,
        "people": 90,
        "by_field": {"email": 90},
        "by_jurisdiction": {"US-MA": 12, "US-NY": 78},
        "facts": {},
        "aware_at": "2026-01-02T12:00:00+00:00",
        "obligations": [],
    }
    notifier = Notifier("Shop", "privacy@shop.example", "dpo@shop.example")
    report = draft_from_dict(incident, "US-MA", notifier, eu_members=MEMBERS, drafted_at=NOW)
    fields = {f["label"]: f["value"] for s in report.sections for f in s["fields"]}
    assert fields["Number of Massachusetts residents affected"] == "12"


@pytest.mark.parametrize("to", ["nobody", "XX", "", "../etc/passwd"])
def test_unknown_recipient_is_refused_with_the_forms_listed(to: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape("garante, gdpr, hhs, us-ca, us-ma")):
        resolve_form(to, MEMBERS)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown format"):
        render(draft(incident(), "gdpr"), "docx")


def test_every_form_states_its_basis_and_verification() -> None:
    assert form_names() == sorted(FORMS)
    for form in FORMS.values():
        assert form.basis and form.verification in ("verified", "unverified")
        assert form.verification_note
