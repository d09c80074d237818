from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from canarino.rules_schema import RuleFileError
from canarino.ruleset import load_rules

from .test_rules_schema import FILE, RULE, write


def test_overlapping_versions_of_one_rule_fail_at_load(tmp_path: Path) -> None:
    data = copy.deepcopy(FILE)
    first = {**RULE, "id": "xx.rule.a", "family": "xx.rule", "effective_to": "2024-12-31"}
    second = {**RULE, "id": "xx.rule.b", "family": "xx.rule", "effective_from": "2024-06-01"}
    data["rules"] = [first, second]
    write(tmp_path, "it.yaml", data)
    with pytest.raises(
        RuleFileError, match=re.escape("rule xx.rule: field effective_from: versions overlap")
    ):
        load_rules(tmp_path)


def test_same_rule_id_in_two_files_fails_at_load(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", FILE)
    write(tmp_path, "b.yaml", FILE)
    with pytest.raises(RuleFileError, match=r"b.yaml: rule xx.rule: field id: also in a.yaml"):
        load_rules(tmp_path)


def test_ordering_cycle_fails_at_load(tmp_path: Path) -> None:
    data = copy.deepcopy(FILE)
    a = {**RULE, "id": "xx.a", "ordering": {"relation": "with", "rule": "xx.b"}, "deadline": {}}
    b = {**RULE, "id": "xx.b", "ordering": {"relation": "with", "rule": "xx.a"}, "deadline": {}}
    data["rules"] = [a, b]
    write(tmp_path, "it.yaml", data)
    with pytest.raises(RuleFileError, match="cycle"):
        load_rules(tmp_path)
