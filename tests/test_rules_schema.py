from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from canarino.obligations import load_rules
from canarino.rules_schema import (
    CATEGORIES,
    RuleFile,
    RuleFileError,
    parse_jurisdiction,
    read_rule_file,
)

RULE: dict[str, Any] = {
    "id": "xx.rule",
    "title": "A rule",
    "duty": "notify {authority}",
    "trigger": {"risk_test": "risk"},
    "recipient": "authority",
    "deadline": {"anchor": "aware", "offset": 72, "unit": "hours"},
    "thresholds": [{"comparator": ">", "value": 500}],
    "effective_from": "2020-01-01",
    "citation": "Act 1, s. 2",
    "source_url": "https://example.org/act",
    "verification": "verified",
}
FILE: dict[str, Any] = {
    "jurisdiction": "IT",
    "name": "Test",
    "timezone": "Europe/Rome",
    "authority": {"name": "Authority", "url": "https://example.org", "timezone": "Europe/Rome"},
    "rules": [RULE],
}


def write(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def with_rule(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(FILE)
    rule = data["rules"][0]
    for key, value in changes.items():
        if value is None:
            rule.pop(key, None)
        else:
            rule[key] = value
    return data


def test_packaged_rules_load_and_cover_the_required_jurisdictions() -> None:
    rules = load_rules()
    places = {loaded.jurisdiction for loaded in rules.rules}
    assert {
        "EU",
        "IT",
        "GB",
        "CH",
        "US",
        "US-CA",
        "US-MA",
        "US-NY",
        "US-TX",
        "US-FL",
        "US-WA",
    } <= places
    assert len(rules.members["EU"]) == 31  # 27 EU + 3 EEA + GB until the end of 2020
    assert load_rules() is rules  # cached


def test_minimal_rule_file_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "it.yaml", FILE)
    (loaded,) = load_rules(tmp_path).rules
    assert loaded.rule.family_id == "xx.rule" and loaded.authority is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_rule(deadlin={"anchor": "aware"}),
            "rule xx.rule: field deadlin: Extra inputs are not permitted",
        ),
        (
            with_rule(thresholds=[{"comparator": "=>", "value": 500}]),
            "rule xx.rule: field thresholds.0.comparator",
        ),
        (
            with_rule(thresholds=[{"comparator": ">", "value": "many"}]),
            "rule xx.rule: field thresholds.0.value",
        ),
        (with_rule(effective_from="2020-13-45"), "rule xx.rule: field effective_from"),
        (with_rule(effective_to="2019-01-01"), "effective_to is before effective_from"),
        (
            with_rule(deadline={"anchor": "noticed", "offset": 1, "unit": "hours"}),
            "field deadline.anchor",
        ),
        (
            with_rule(deadline={"anchor": "aware", "offset": 1, "unit": "weeks"}),
            "field deadline.unit",
        ),
        (with_rule(deadline={"anchor": "aware", "offset": 3}), "offset and unit go together"),
        (
            with_rule(deadline={"anchor": "aware", "offset": -1, "unit": "hours"}),
            "field deadline.offset",
        ),
        (with_rule(recipient="press"), "field recipient"),
        (
            with_rule(trigger={"risk_test": "risk", "data_categories": ["ssn"]}),
            "field trigger.data_categories.0",
        ),
        (with_rule(verification="unverified"), "needs a verification_note"),
        (with_rule(source_url="example.org"), "field source_url"),
        (with_rule(citation=None), "field citation: Field required"),
        (
            with_rule(required_content=["number_affected"], forbidden_content=["number_affected"]),
            "both required and forbidden",
        ),
        (with_rule(id="Bad Id"), "field id"),
        ({**FILE, "timezone": "Mars/Olympus"}, "rule -: field timezone: unknown IANA time zone"),
        ({**FILE, "jurisdiction": "Italy"}, "rule -: field jurisdiction"),
        ({**FILE, "rules": [RULE, RULE]}, "appears twice"),
    ],
)
def test_bad_rule_file_fails_at_load_naming_file_rule_and_field(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    write(tmp_path, "it.yaml", data)
    with pytest.raises(RuleFileError, match=re.escape(message)) as info:
        load_rules(tmp_path)
    assert str(info.value).startswith("it.yaml: ")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "ordering": {"relation": "after", "rule": "xx.missing"},
                "deadline": {"offset": 1, "unit": "hours"},
            },
            "field ordering.rule: no rule 'xx.missing'",
        ),
        (
            {
                "deadline": {
                    "anchor": "aware",
                    "offset": 3,
                    "unit": "business_days",
                    "holiday_calendar": "ZZ",
                }
            },
            "no holiday calendar for 'ZZ'",
        ),
    ],
)
def test_cross_rule_problems_fail_at_load(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    write(tmp_path, "it.yaml", with_rule(**changes))
    with pytest.raises(RuleFileError, match=re.escape(message)):
        load_rules(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jurisdiction: IT\nrules: [\n", "it.yaml: line"),
        ("- just\n- a list\n", "expected a mapping at the top"),
    ],
)
def test_unreadable_yaml_fails_with_the_file_name(text: str, message: str) -> None:
    with pytest.raises(RuleFileError, match=re.escape(message)):
        read_rule_file("it.yaml", text)


def test_missing_directory_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="rule directory not found"):
        load_rules(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("code", "expected"),
    [("IT", ("IT", None)), ("US-CA", ("US", "CA")), ("EU", ("EU", None))],
)
def test_jurisdiction_codes_are_split(code: str, expected: tuple[str, str | None]) -> None:
    assert parse_jurisdiction(code) == expected


@pytest.mark.parametrize("code", ["it", "ITA", "US_CA", "US-", ""])
def test_badly_shaped_jurisdiction_codes_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match="not ISO 3166 shaped"):
        parse_jurisdiction(code)


def test_taxonomy_matches_the_documented_categories() -> None:
    assert set(CATEGORIES) == {
        "contact",
        "identity",
        "identity_document",
        "government_id",
        "financial_account",
        "card",
        "credentials",
        "health",
        "biometric",
        "children",
        "location",
        "account",
        "preference",
    }


def test_every_packaged_unverified_item_says_what_to_check() -> None:
    rules = load_rules()
    for loaded in rules.rules:
        if loaded.rule.verification == "unverified":
            assert loaded.rule.verification_note
    for members in rules.members.values():
        for member in members.values():
            assert member.authority is None or member.authority.note


def test_rule_file_model_exports_json_schema() -> None:
    schema = RuleFile.model_json_schema()
    assert "rules" in schema["properties"]


US_STATES = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "PR",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
]
EU_EEA = [
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
    "IS",
    "LI",
    "NO",
]


def test_every_us_state_dc_and_puerto_rico_has_a_resident_notice_rule() -> None:
    assert len(US_STATES) == 52
    rules = load_rules()
    individuals = {
        loaded.jurisdiction
        for loaded in rules.rules
        if loaded.rule.recipient == "individuals" and loaded.jurisdiction.startswith("US-")
    }
    assert {f"US-{s}" for s in US_STATES} <= individuals


def test_every_eu_and_eea_state_has_a_named_authority_with_a_web_site() -> None:
    assert len(EU_EEA) == 30
    members = load_rules().members["EU"]
    for code in EU_EEA:
        authority = members[code].authority
        assert authority is not None and authority.name and authority.url.startswith("https://")


def test_the_rest_of_the_world_required_by_the_issue_is_covered() -> None:
    places = {loaded.jurisdiction for loaded in load_rules().rules}
    assert {"CA", "CA-QC", "AU", "BR", "JP", "SG", "IN", "KR", "CN"} <= places


def test_every_unverified_rule_says_what_to_check() -> None:
    for loaded in load_rules().rules:
        if loaded.rule.verification == "unverified":
            assert len(loaded.rule.verification_note) > 20, loaded.rule.id


@pytest.mark.parametrize(
    ("code", "comparator", "value"),
    [
        ("US-CA", ">", 500),
        ("US-DE", ">", 500),
        ("US-IL", ">", 500),
        ("US-WA", ">", 500),
        ("US-CO", ">=", 500),
        ("US-FL", ">=", 500),
        ("US-TX", ">=", 250),
        ("US-OR", ">", 250),
        ("US-ND", ">", 250),
        ("US-SD", ">", 250),
    ],
)
def test_attorney_general_thresholds_keep_the_laws_exact_comparator(
    code: str, comparator: str, value: int
) -> None:
    # Pitfall 9 of the research notes: ">500" and ">=500" are different laws.
    found = {
        (t.comparator, t.value)
        for loaded in load_rules().rules
        if loaded.jurisdiction == code and loaded.rule.recipient == "authority"
        for t in loaded.rule.thresholds
    }
    assert (comparator, value) in found
