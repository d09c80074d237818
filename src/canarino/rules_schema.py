"""Typed models for the rule files under ``rules/``: law as cited, validated data.

One YAML file per jurisdiction (or per list of member authorities). Each rule says who
must tell whom, triggered by which facts, by when, with which content, and where the
rule comes from (citation, source link, verification status). A file that does not fit
these models is refused at load with a :class:`RuleFileError` naming the file, the rule
and the field, so a typo in a statute's deadline can never pass silently.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import RuleFileError

__all__ = [
    "ANCHORS",
    "CATEGORIES",
    "COMPARATORS",
    "CONTENT_ITEMS",
    "EVENTS",
    "RECIPIENTS",
    "ROLES",
    "SECTORS",
    "Authority",
    "Deadline",
    "Member",
    "Ordering",
    "Remedy",
    "Rule",
    "RuleFile",
    "RuleFileError",
    "Threshold",
    "Trigger",
    "format_validation_error",
    "holiday_calendar",
    "parse_jurisdiction",
    "read_rule_file",
]


Category = Literal[
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
]
Event = Literal[
    "acquisition",
    "access",
    "use",
    "disclosure",
    "loss",
    "alteration",
    "destruction",
    "availability",
]
# Beyond the GDPR's two levels: US "harm likely", Canada's "real risk of significant harm",
# Singapore's "significant harm", Australia's "serious harm", Quebec's "serious injury".
RiskTest = Literal[
    "none",
    "risk",
    "high_risk",
    "harm_likely",
    "significant_harm",
    "serious_harm",
    "serious_injury",
]
Recipient = Literal[
    "authority", "individuals", "media", "credit_agencies", "regulator", "controller", "register"
]
Anchor = Literal["occurred", "discovered", "aware", "determined", "contained"]
Unit = Literal["hours", "calendar_days", "business_days"]
Comparator = Literal[">", ">=", "<", "<=", "=="]
Role = Literal["controller", "processor"]
Sector = Literal[
    "hipaa_covered_entity", "hipaa_business_associate", "telecom_provider", "nis2_entity"
]
Verification = Literal["verified", "unverified"]
# What a notice may be required, or forbidden, to say; notices.py renders these items.
ContentItem = Literal[
    "nature_of_breach",
    "number_affected",
    "approximate_records",
    "categories_of_data",
    "date_of_breach",
    "date_of_discovery",
    "date_of_notice",
    "contact_point",
    "dpo_contact",
    "toll_free_contact",
    "likely_consequences",
    "measures_taken",
    "steps_individuals_can_take",
    "reasons_for_delay",
    "law_enforcement_delay",
    "police_report_right",
    "security_freeze_instructions",
    "security_freeze_free",
    "mitigation_services",
    "parent_company",
    "cra_contacts",
    "regulator_contacts",
    "title_notice_of_data_breach",
    "headings_what_happened_etc",
    "notifier_identity",
    "written_security_program",
    "sample_notice",
]

CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]
EVENTS: tuple[str, ...] = Event.__args__  # type: ignore[attr-defined]
RECIPIENTS: tuple[str, ...] = Recipient.__args__  # type: ignore[attr-defined]
ANCHORS: tuple[str, ...] = Anchor.__args__  # type: ignore[attr-defined]
COMPARATORS: tuple[str, ...] = Comparator.__args__  # type: ignore[attr-defined]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
SECTORS: tuple[str, ...] = Sector.__args__  # type: ignore[attr-defined]
CONTENT_ITEMS: tuple[str, ...] = ContentItem.__args__  # type: ignore[attr-defined]

_ALL_EVENTS: tuple[Event, ...] = Event.__args__  # type: ignore[attr-defined]
_CONTROLLER: tuple[Role, ...] = ("controller",)
_CODE = re.compile(r"^(EU|[A-Z]{2})(-[A-Z0-9]{1,3})?$")


def parse_jurisdiction(code: str) -> tuple[str, str | None]:
    """Split ``US-CA`` into ``("US", "CA")``; refuse codes that are not ISO-shaped."""
    if not _CODE.match(code):
        raise ValueError(f"jurisdiction code {code!r} is not ISO 3166 shaped: use IT, US-CA or EU")
    country, _, subdivision = code.partition("-")
    return country, subdivision or None


def holiday_calendar(code: str) -> holidays.HolidayBase:
    """Public holidays of a jurisdiction code (``BR``, ``US-TX``) from ``holidays``."""
    country, subdivision = parse_jurisdiction(code)
    supported = holidays.list_supported_countries()
    if country not in supported or (subdivision and subdivision not in supported[country]):
        raise ValueError(f"no holiday calendar for {code!r} in the holidays package")
    return holidays.country_holidays(country, subdiv=subdivision)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Authority(_Model):
    """Who receives a notice: name, web site, filing portal and the clock it keeps."""

    name: str
    url: str
    portal: str | None = None
    timezone: str
    verification: Verification = "unverified"
    note: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class Member(_Model):
    """A jurisdiction covered by a wider one (a member state of the EU), with its authority."""

    name: str
    authority: Authority | None = None
    timezone: str | None = None
    effective_from: date | None = None
    effective_to: date | None = None


class Trigger(_Model):
    """Which exposed data, events and risk level set the duty off."""

    # Empty lists mean "any personal data" when both are empty.
    data_categories: list[Category] = Field(default_factory=list)
    combined_with: list[Category] = Field(default_factory=list)
    standalone: list[Category] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=lambda: list(_ALL_EVENTS))
    risk_test: RiskTest


class Deadline(_Model):
    """When the duty is due: an anchor plus an offset in a unit, or only 'without undue delay'."""

    anchor: Anchor | None = None
    offset: Annotated[int, Field(ge=0)] | None = None
    unit: Unit | None = None
    without_undue_delay: bool = False
    period_end: Literal["calendar_year"] | None = None
    holiday_calendar: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Deadline:
        if (self.offset is None) != (self.unit is None):
            raise ValueError("offset and unit go together: give both or neither")
        if self.offset is None and not self.without_undue_delay and self.anchor is not None:
            raise ValueError("an anchor without offset needs without_undue_delay: true")
        if self.period_end and (self.anchor is None or self.offset is None):
            raise ValueError("period_end needs an anchor and an offset")
        if self.holiday_calendar is not None:
            holiday_calendar(self.holiday_calendar)
        return self


class Threshold(_Model):
    """A count of affected residents compared with a number, exactly as the law words it."""

    comparator: Comparator
    value: Annotated[int, Field(ge=0)]
    scope: Literal["total", "each_member"] = "total"


class Ordering(_Model):
    """Before, with or after the duty of another rule family (e.g. the AG after individuals)."""

    relation: Literal["before", "with", "after"]
    rule: str


class Remedy(_Model):
    """A service owed to the people affected, such as credit monitoring."""

    kind: Literal["credit_monitoring", "identity_theft_prevention"]
    months: Annotated[int, Field(gt=0)]
    when_categories: list[Category] = Field(default_factory=list)
    condition: str = ""


class AppliesTo(_Model):
    """Whose duty this is: role in the processing and, if any, the regulated sector."""

    roles: list[Role] = Field(default_factory=lambda: list(_CONTROLLER))
    sectors: list[Sector] = Field(default_factory=list)
    exclude_sectors: list[Sector] = Field(default_factory=list)


class Rule(_Model):
    """One duty of one law, with its citation and verification status."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")]
    family: str | None = None
    title: str
    duty: str
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    trigger: Trigger
    recipient: Recipient
    authority: Authority | None = None
    per_member: Literal["none", "each", "lead_or_each"] = "none"
    deadline: Deadline = Field(default_factory=Deadline)
    thresholds: list[Threshold] = Field(default_factory=list)
    ordering: Ordering | None = None
    required_content: list[ContentItem] = Field(default_factory=list)
    forbidden_content: list[ContentItem] = Field(default_factory=list)
    safe_harbour: bool = False
    remedies: list[Remedy] = Field(default_factory=list)
    record_keeping: bool = False
    notes: list[str] = Field(default_factory=list)
    effective_from: date
    effective_to: date | None = None
    citation: str
    source_url: Annotated[str, Field(pattern=r"^https?://")]
    verification: Verification
    verification_note: str = ""

    @property
    def family_id(self) -> str:
        """The version-independent name other rules order against."""
        return self.family or self.id

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        if self.verification == "unverified" and not self.verification_note:
            raise ValueError("an unverified rule needs a verification_note saying what to check")
        clash = set(self.required_content) & set(self.forbidden_content)
        if clash:
            raise ValueError(f"content both required and forbidden: {sorted(clash)}")
        relation = self.ordering.relation if self.ordering else None
        if relation == "after" and self.deadline.anchor is not None:
            raise ValueError("an 'after' ordering counts from the other rule: drop deadline.anchor")
        if (
            relation != "after"
            and self.deadline.offset is not None
            and self.deadline.anchor is None
        ):
            raise ValueError("a deadline offset needs an anchor (or an 'after' ordering)")
        return self


class RuleFile(_Model):
    """The contents of one YAML file: a jurisdiction, its defaults, members and rules."""

    jurisdiction: str
    name: str
    timezone: str
    authority: Authority | None = None
    members: dict[str, Member] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("jurisdiction")
    @classmethod
    def _code(cls, value: str) -> str:
        parse_jurisdiction(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return Authority._known_zone(value)

    @field_validator("members")
    @classmethod
    def _member_codes(cls, value: dict[str, Member]) -> dict[str, Member]:
        for code in value:
            parse_jurisdiction(code)
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleFile:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        return self


def format_validation_error(file: str, raw: Any, error: ValidationError) -> str:
    """Name file, rule id and field for each problem pydantic found."""
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        rule_id = "-"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rules = raw.get("rules") if isinstance(raw, dict) else None
            entry = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
            rule_id = str(entry.get("id", f"#{loc[1] + 1}")) if isinstance(entry, dict) else "-"
            loc = loc[2:]
        field = ".".join(str(part) for part in loc) or "(file)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{file}: rule {rule_id}: field {field}: {message}")
    return "; ".join(lines)


def read_rule_file(name: str, text: str) -> RuleFile:
    """Parse and validate one rule file; any problem becomes a :class:`RuleFileError`."""
    try:
        # libyaml's parser when present: the pure-Python one takes seconds for every file.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RuleFileError(f"{name}:{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise RuleFileError(f"{name}: rule -: field (file): expected a mapping at the top")
    try:
        return RuleFile.model_validate(raw)
    except ValidationError as exc:
        raise RuleFileError(format_validation_error(name, raw, exc)) from None
