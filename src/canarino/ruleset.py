"""The rule set: every rule file loaded, validated together, and cached.

Checks that span files live here: duplicate rule ids, ordering that names a missing rule
or forms a cycle, overlapping versions of one rule, business days without a calendar.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType

from .rules_schema import (
    Authority,
    Member,
    Rule,
    RuleFile,
    RuleFileError,
    holiday_calendar,
    read_rule_file,
)


@dataclass(frozen=True)
class LoadedRule:
    """A rule with the defaults of the file it came from."""

    rule: Rule
    jurisdiction: str
    file: str
    timezone: str
    authority: Authority | None


@dataclass(frozen=True)
class RuleSet:
    """Every rule and member list, validated together."""

    rules: tuple[LoadedRule, ...]
    members: Mapping[str, Mapping[str, Member]]
    names: Mapping[str, str]

    def families(self) -> dict[str, list[LoadedRule]]:
        """Rules grouped by family (the versions of one duty), in dependency order."""
        groups: dict[str, list[LoadedRule]] = {}
        for loaded in self.rules:
            groups.setdefault(loaded.rule.family_id, []).append(loaded)
        ordered: dict[str, list[LoadedRule]] = {}

        def visit(family: str, path: tuple[str, ...]) -> None:
            if family in ordered:
                return
            if family in path:
                raise RuleFileError(f"rule ordering forms a cycle: {' -> '.join((*path, family))}")
            for loaded in groups[family]:
                if loaded.rule.ordering:
                    visit(loaded.rule.ordering.rule, (*path, family))
            ordered[family] = groups[family]

        for family in groups:
            visit(family, ())
        return ordered

    def member(self, jurisdiction: str, code: str) -> Member | None:
        """The member entry of ``code`` inside ``jurisdiction``, if listed."""
        return self.members.get(jurisdiction, {}).get(code)

    def covers(self, jurisdiction: str, code: str, on: date) -> bool:
        """Whether residents of ``code`` fall under ``jurisdiction`` on a date."""
        if code == jurisdiction or code.startswith(jurisdiction + "-"):
            return True
        member = self.member(jurisdiction, code)
        if member is None:
            return False
        starts, ends = member.effective_from, member.effective_to
        return (starts is None or starts <= on) and (ends is None or on <= ends)


def _rules_dir() -> Traversable:
    return resources.files("canarino").joinpath("rules")


def load_rules(directory: str | Path | None = None) -> RuleSet:
    """Load and validate every ``*.yaml`` rule file (the packaged ones by default); cached."""
    return _load_cached(str(directory) if directory is not None else None)


@functools.lru_cache(maxsize=8)
def _load_cached(directory: str | None) -> RuleSet:
    base: Traversable = Path(directory) if directory is not None else _rules_dir()
    if not base.is_dir():
        raise RuleFileError(f"{directory}: rule directory not found")
    files = sorted((p for p in base.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)
    parsed = [(p.name, read_rule_file(p.name, p.read_text(encoding="utf-8"))) for p in files]
    return _assemble(parsed)


def _assemble(parsed: list[tuple[str, RuleFile]]) -> RuleSet:
    rules: list[LoadedRule] = []
    members: dict[str, dict[str, Member]] = {}
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, data in parsed:
        names.setdefault(data.jurisdiction, data.name)
        for code, member in data.members.items():
            if code in members.setdefault(data.jurisdiction, {}):
                raise RuleFileError(f"{name}: rule -: field members.{code}: listed twice")
            members[data.jurisdiction][code] = member
        for rule in data.rules:
            if rule.id in seen:
                raise RuleFileError(f"{name}: rule {rule.id}: field id: also in {seen[rule.id]}")
            seen[rule.id] = name
            rules.append(LoadedRule(rule, data.jurisdiction, name, data.timezone, data.authority))
    families = {r.rule.family_id for r in rules}
    for loaded in rules:
        rule = loaded.rule
        where = f"{loaded.file}: rule {rule.id}"
        if rule.ordering and rule.ordering.rule not in families:
            raise RuleFileError(f"{where}: field ordering.rule: no rule {rule.ordering.rule!r}")
        if rule.deadline.unit == "business_days":
            try:
                holiday_calendar(rule.deadline.holiday_calendar or loaded.jurisdiction)
            except ValueError as exc:
                raise RuleFileError(f"{where}: field deadline.holiday_calendar: {exc}") from None
    for family, versions in _group(rules).items():
        spans = sorted((v.rule.effective_from, v.rule.effective_to or date.max) for v in versions)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start <= end:
                where = f"{versions[0].file}: rule {family}"
                raise RuleFileError(f"{where}: field effective_from: versions overlap")
    ruleset = RuleSet(tuple(rules), MappingProxyType(members), MappingProxyType(names))
    ruleset.families()  # refuses ordering cycles at load
    return ruleset


def _group(rules: Iterable[LoadedRule]) -> dict[str, list[LoadedRule]]:
    groups: dict[str, list[LoadedRule]] = {}
    for loaded in rules:
        groups.setdefault(loaded.rule.family_id, []).append(loaded)
    return groups
