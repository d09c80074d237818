from __future__ import annotations

import doctest
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from canarino import obligations
from canarino.errors import InvalidInput
from canarino.obligations import (
    IncidentFacts,
    assess,
    coverage_table,
    evaluate,
    facts_from_mapping,
    format_remaining,
    gdpr_authority_notice,
    load_rules,
    next_due,
)

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
DOC = Path(__file__).parents[1] / "docs" / "obligations.md"
AWARE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def facts(**overrides: Any) -> IncidentFacts:
    base: dict[str, Any] = {
        "categories": {"contact", "identity"},
        "affected": {"IT": 100},
        "aware": AWARE,
        "risk": "risk",
    }
    base.update(overrides)
    return IncidentFacts(**base)


def test_gdpr_authority_notice_is_due_72_hours_after_awareness() -> None:
    aware = datetime(2026, 3, 27, 10, 0, tzinfo=UTC)
    ob = gdpr_authority_notice(aware)
    assert ob.due_at is not None and ob.due_at - aware == timedelta(hours=72)
    assert ob.remaining(aware + timedelta(hours=1)) == timedelta(hours=71)
    # Across the start of daylight saving time the absolute deadline does not move.
    assert ob.as_dict(aware, "Europe/Rome")["due_local"] == "2026-03-30T12:00+02:00"
    # Whatever zone the viewer asks for, the authority's own clock is given too.
    assert ob.as_dict(aware, "UTC")["due_authority_time"] == "2026-03-30T12:00+02:00"
    assert ob.citation.endswith("Art. 33(1)")
    assert ob.authority is not None and ob.authority.portal == "https://servizi.gpdp.it"
    assert "Garante" in ob.duty


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=71, minutes=5), "2d 23h 05m left"),
        (timedelta(minutes=9), "0h 09m left"),
        (timedelta(hours=-4, minutes=-10), "overdue by 4h 10m"),
        (None, "as soon as possible (no fixed deadline)"),
    ],
)
def test_format_remaining(delta: timedelta | None, text: str) -> None:
    assert format_remaining(delta) == text


def _parse_due(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_yields_exactly_the_expected_obligations(path: Path) -> None:
    scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = dict(scenario["facts"])
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    result = assess(facts_from_mapping(data), now=_parse_due(scenario["now"]))
    got = {(o.rule_id, o.jurisdiction): o for o in result.obligations}
    wanted = {(e["rule"], e["jurisdiction"]): e for e in scenario["expect"]}
    assert sorted(got) == sorted(wanted)
    for key, expected in wanted.items():
        ob = got[key]
        assert ob.due_at == _parse_due(expected["due"]), key
        for field in ("forbidden_content", "remedies"):
            if field in expected:
                assert list(getattr(ob, field)) == expected[field], key
        if "authority" in expected:
            assert ob.authority is not None and ob.authority.name == expected["authority"]
    assert list(result.uncovered) == scenario.get("uncovered", [])
    reasons = dict(result.not_owed)
    for rule, because in scenario.get("not_owed", {}).items():
        assert because in reasons.get(rule, ""), (rule, reasons.get(rule))


def test_every_scenario_about_a_seed_names_its_source_and_assumptions() -> None:
    seeds = [p for p in SCENARIOS if p.stem.startswith("seed_")]
    assert len(seeds) == 5
    for path in seeds:
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert scenario["source"].startswith("shared/seeds/")
        assert scenario["assumptions"]


def test_obligation_explains_trigger_and_deadline() -> None:
    (ob,) = [o for o in evaluate(facts(), now=AWARE) if o.recipient == "authority"]
    assert "threshold" not in " ".join(ob.triggered_by)
    assert any("risk level 'risk' meets the 'risk' test" in t for t in ob.triggered_by)
    assert ob.computation[0].startswith("clock starts at 'aware'")
    assert any("+72 hours" in line for line in ob.computation)
    data = ob.as_dict(AWARE, "Europe/Rome")
    assert data["remaining_hours"] == 72.0 and data["verification"] == "verified"


def test_duty_without_fixed_deadline_renders_as_soon_as_possible() -> None:
    ob = next(
        o for o in evaluate(facts(risk="high_risk"), now=AWARE) if o.recipient == "individuals"
    )
    assert ob.due_at is None and ob.remaining(AWARE) is None
    assert ob.as_dict(AWARE)["due_local"] is None
    assert "without undue delay" in ob.computation[-1]


def test_next_due_skips_duties_without_a_deadline() -> None:
    obs = evaluate(facts(risk="high_risk"), now=AWARE)
    first = next_due(obs)
    assert first is not None and first.rule_id == "eu.gdpr.art33.authority"
    assert next_due([o for o in obs if o.due_at is None]) is None


def test_non_eu_controller_notifies_every_authority_where_people_live() -> None:
    obs = evaluate(facts(affected={"FR": 10, "ES": 5}, establishment="US"), now=AWARE)
    names = {o.jurisdiction: o.authority.name for o in obs if o.authority}
    assert set(names) == {"FR", "ES"}
    one_stop = evaluate(facts(affected={"FR": 10, "ES": 5}, establishment="IE"), now=AWARE)
    assert [o.jurisdiction for o in one_stop if o.authority] == ["IE"]


def test_assessment_says_why_a_rule_is_not_owed() -> None:
    result = assess(facts(encrypted=True, risk="high_risk"), now=AWARE)
    reasons = dict(result.not_owed)
    assert "safe harbour" in reasons["eu.gdpr.art34.individuals"]
    assert "processor" in reasons["eu.gdpr.art33-2.processor"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"contained": AWARE - timedelta(days=2), "occurred": AWARE - timedelta(days=1)},
            "contained is before occurred",
        ),
        ({"occurred": AWARE + timedelta(hours=1)}, "aware is before occurred"),
        ({"affected": {"IT": -1}}, "whole number >= 0"),
        ({"affected": {}}, "affected counts are empty"),
        ({"affected": {"XX": 3}}, "unknown jurisdiction code 'XX'"),
        ({"affected": {"UK": 3}}, "unknown jurisdiction code 'UK' (use GB)"),
        ({"affected": {"US-ZZ": 3}}, "unknown jurisdiction code 'US-ZZ'"),
        ({"affected": {"EU": 3}}, "unknown jurisdiction code 'EU'"),
        ({"affected": {"italy": 3}}, "not ISO 3166 shaped"),
        ({"categories": {"ssn"}}, "unknown data category 'ssn'"),
        ({"risk": "medium"}, "unknown risk level 'medium'"),
        ({"role": "vendor"}, "unknown role 'vendor'"),
        ({"key_exposed": True}, "not encrypted"),
        ({"aware": datetime(2026, 3, 2, 9, 0)}, "aware needs a time zone"),
        ({"done": {"eu.gdpr.art33.authority@IT": datetime(2026, 3, 2)}}, "needs a time zone"),
    ],
)
def test_contradictory_or_unknown_facts_are_refused_with_the_reason(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        facts(**overrides)


def test_anchor_in_the_future_is_refused() -> None:
    with pytest.raises(InvalidInput, match="aware is in the future"):
        evaluate(facts(), now=AWARE - timedelta(minutes=1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"colour": "red"}, "unknown incident fact(s): colour"),
        ({"aware": "yesterday"}, "aware is not an ISO 8601 date-time"),
        ({"aware": "2026-03-02T09:00+00:00"}, "incomplete incident facts"),
        ({"done": {"x@IT": "last week"}}, "not an ISO 8601 date-time"),
    ],
)
def test_facts_from_mapping_rejects_bad_input(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        facts_from_mapping(data)


def test_error_messages_carry_no_counts_or_times_of_people() -> None:
    with pytest.raises(InvalidInput) as info:
        facts(affected={"IT": -41234})
    assert "41234" not in str(info.value)


def test_engine_has_no_per_country_branches() -> None:
    source = Path(obligations.__file__).read_text(encoding="utf-8")
    assert not re.search(r"""==\s*["'](?:IT|US|EU|GB|CH|BR|US-[A-Z]{2})["']""", source)


def test_module_examples_run() -> None:
    assert doctest.testmod(obligations).failed == 0


def test_coverage_doc_is_up_to_date() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- coverage:start -->\n", "<!-- coverage:end -->"
    block = text[text.index(start) + len(start) : text.index(end)]
    assert block == coverage_table(), "regenerate docs/obligations.md with coverage_table()"


def test_every_rule_has_a_citation_and_a_source_link() -> None:
    for loaded in load_rules().rules:
        assert loaded.rule.citation and loaded.rule.source_url.startswith("http")


def test_local_deadline_uses_the_requested_zone() -> None:
    aware = datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=1)))
    ob = gdpr_authority_notice(aware)
    assert ob.as_dict(aware, "Europe/Rome")["due_local"] == "2026-11-23T23:30+01:00"
