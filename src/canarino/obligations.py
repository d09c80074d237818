"""Obligations: what the law requires for an incident, by when, and why. Pure.

The engine is generic: every jurisdiction, threshold, clock and content rule comes from
the cited YAML files under ``rules/`` (validated by :mod:`canarino.rules_schema`).
:func:`evaluate` takes :class:`IncidentFacts` and returns one :class:`Obligation` per duty
owed, each carrying the rule, the facts that triggered it and how its deadline was
computed. :func:`assess` also says which rules were not owed and why.

>>> facts = IncidentFacts(categories={"contact"}, affected={"IT": 120},
...     aware=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), risk="risk")
>>> [o.rule_id for o in evaluate(facts, now=facts.aware)]
['eu.gdpr.art33.authority', 'eu.gdpr.art33-5.register']
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from .errors import InvalidInput
from .rules_schema import (
    ANCHORS,
    CATEGORIES,
    EVENTS,
    ROLES,
    SECTORS,
    Authority,
    Member,
    Rule,
    RuleFileError,
    holiday_calendar,
    parse_jurisdiction,
)
from .ruleset import LoadedRule, RuleSet, load_rules

RISK_LEVELS = ("none", "risk", "high_risk")
# Which facts-risk levels meet each rule risk test; "harm_likely" is the US-state wording.
_RISK_MEETS = {
    "none": set(RISK_LEVELS),
    "risk": {"risk", "high_risk"},
    "harm_likely": {"risk", "high_risk"},
    "high_risk": {"high_risk"},
    # Other laws' harm tests are met by any risk, so a duty is shown rather than missed;
    # the obligation says the analyst must confirm the test in that law's own terms.
    "significant_harm": {"risk", "high_risk"},
    "serious_harm": {"risk", "high_risk"},
    "serious_injury": {"risk", "high_risk"},
}
_OWN_TERMS = {"significant_harm", "serious_harm", "serious_injury"}
# A missing anchor may be replaced only by one that cannot be later, so deadlines never grow.
_SAFER_ANCHORS = {
    "determined": ("aware", "discovered", "occurred"),
    "aware": ("discovered", "occurred"),
    "discovered": ("occurred",),
}
STATUSES = ("pending", "done")
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True)
class IncidentFacts:
    """What is known about an incident, as the rules need it (no personal data)."""

    categories: frozenset[str]
    affected: Mapping[str, int]
    aware: datetime
    risk: str
    risk_explanation: str = ""
    occurred: datetime | None = None
    discovered: datetime | None = None
    determined: datetime | None = None
    contained: datetime | None = None
    encrypted: bool = False
    key_exposed: bool = False
    role: str = "controller"
    sectors: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset({"acquisition"})
    establishment: str | None = None
    # When duties were actually done, by obligation key: a duty due "after" another counts
    # from the day the other was done, not from its latest lawful date.
    done: Mapping[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "done", MappingProxyType(dict(self.done)))
        for key, value in self.done.items():
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidInput(f"done time of {key} needs a time zone")
        object.__setattr__(self, "categories", frozenset(self.categories))
        object.__setattr__(self, "sectors", frozenset(self.sectors))
        object.__setattr__(self, "events", frozenset(self.events))
        object.__setattr__(self, "affected", MappingProxyType(dict(self.affected)))
        _check_members("data category", self.categories, CATEGORIES)
        _check_members("sector", self.sectors, SECTORS)
        _check_members("event", self.events, EVENTS)
        _check_members("role", {self.role}, ROLES)
        _check_members("risk level", {self.risk}, RISK_LEVELS)
        if not self.affected:
            raise InvalidInput("affected counts are empty: give residents per jurisdiction code")
        for code, count in self.affected.items():
            _check_residence(code)
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise InvalidInput(f"affected count for {code} must be a whole number >= 0")
        if self.establishment is not None:
            _check_residence(self.establishment)
        if self.key_exposed and not self.encrypted:
            raise InvalidInput("key_exposed is set but the data were not encrypted")
        for name in ANCHORS:
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{name} needs a time zone, e.g. 2026-03-02T10:00+01:00")
        if self.occurred is not None:
            for name in ("discovered", "aware", "determined", "contained"):
                value = getattr(self, name)
                if value is not None and value < self.occurred:
                    raise InvalidInput(
                        f"{name} is before occurred: a breach is known after it happens"
                    )

    def anchor(self, name: str) -> datetime | None:
        """The time of one clock anchor, or ``None`` when not recorded."""
        value: datetime | None = getattr(self, name)
        return value


def _check_members(what: str, values: Iterable[str], known: tuple[str, ...]) -> None:
    for value in values:
        if value not in known:
            raise InvalidInput(f"unknown {what} {value!r}; known: {', '.join(known)}")


def _check_residence(code: str) -> None:
    try:
        country, subdivision = parse_jurisdiction(code)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    # The holidays package doubles as the ISO 3166 registry; aliases (UK) are not ISO codes.
    supported = holidays.list_supported_countries(include_aliases=False)
    if country not in supported or (subdivision and subdivision not in supported[country]):
        aliases = holidays.list_supported_countries()
        hint = ""
        if country in aliases and country not in supported:
            hint = f" (use {holidays.country_holidays(country).country})"
        raise InvalidInput(
            f"unknown jurisdiction code {code!r}{hint}: use an ISO 3166 country (IT) "
            "or subdivision (US-CA) where the people live"
        )


def facts_from_mapping(data: Mapping[str, Any]) -> IncidentFacts:
    """Build facts from JSON/YAML-shaped data; times are ISO 8601 strings with offsets."""
    known = set(IncidentFacts.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"unknown incident fact(s): {', '.join(unknown)}")
    values = dict(data)
    for name in ANCHORS:
        raw = values.get(name)
        if isinstance(raw, str):
            try:
                values[name] = datetime.fromisoformat(raw)
            except ValueError:
                raise InvalidInput(f"{name} is not an ISO 8601 date-time: {raw!r}") from None
    for name in ("categories", "sectors", "events"):
        if name in values:
            values[name] = frozenset(values[name])
    done = values.get("done")
    if isinstance(done, Mapping):
        try:
            values["done"] = {
                key: datetime.fromisoformat(v) if isinstance(v, str) else v
                for key, v in done.items()
            }
        except ValueError:
            raise InvalidInput("a done time is not an ISO 8601 date-time") from None
    try:
        return IncidentFacts(**values)
    except TypeError as exc:
        raise InvalidInput(f"incomplete incident facts: {exc}") from None


@dataclass(frozen=True)
class Obligation:
    """One duty owed under one rule, with the facts that triggered it and dated it."""

    rule_id: str
    duty: str
    citation: str
    source_url: str
    anchor: str | None
    anchor_at: datetime | None
    due_at: datetime | None
    jurisdiction: str = ""
    title: str = ""
    recipient: str = ""
    authority: Authority | None = None
    timezone: str = "UTC"
    without_undue_delay: bool = False
    verification: str = "unverified"
    verification_note: str = ""
    triggered_by: tuple[str, ...] = ()
    computation: tuple[str, ...] = ()
    required_content: tuple[str, ...] = ()
    forbidden_content: tuple[str, ...] = ()
    remedies: tuple[str, ...] = ()
    record_keeping: bool = False
    notes: tuple[str, ...] = ()
    # Set by the incident's history, not by the rules: the engine always says "pending".
    status: str = "pending"
    done_at: datetime | None = None
    status_note: str = ""

    @property
    def key(self) -> str:
        """Stable name of this duty within an incident: ``rule_id@jurisdiction``."""
        return f"{self.rule_id}@{self.jurisdiction}"

    @property
    def unverified(self) -> bool:
        """Whether the rule behind this duty was not checked against its cited text."""
        return self.verification != "verified"

    def remaining(self, now: datetime) -> timedelta | None:
        """Time left until the deadline (negative once passed); ``None`` if no fixed deadline."""
        return None if self.due_at is None else self.due_at - now

    def as_dict(self, now: datetime, tz: str = "UTC") -> dict[str, Any]:
        """JSON-ready form with the deadline in UTC and in ``tz``."""
        left = self.remaining(now)

        def iso(value: datetime | None, spec: str = "seconds") -> str | None:
            return value.isoformat(timespec=spec) if value else None

        local = self.due_at.astimezone(ZoneInfo(tz)) if self.due_at else None
        return {
            "rule_id": self.rule_id,
            "jurisdiction": self.jurisdiction,
            "title": self.title,
            "duty": self.duty,
            "recipient": self.recipient,
            "authority": self.authority.name if self.authority else None,
            "authority_url": self.authority.url if self.authority else None,
            "portal": self.authority.portal if self.authority else None,
            "citation": self.citation,
            "source_url": self.source_url,
            "verification": self.verification,
            "verification_note": self.verification_note,
            "anchor": self.anchor,
            "anchor_at": iso(self.anchor_at),
            "due_at": iso(self.due_at),
            "due_local": iso(local, "minutes"),
            "due_authority_time": iso(
                self.due_at.astimezone(ZoneInfo(self.timezone)) if self.due_at else None,
                "minutes",
            ),
            "timezone": self.timezone,
            "remaining_hours": None if left is None else round(left.total_seconds() / 3600, 2),
            "without_undue_delay": self.without_undue_delay,
            "triggered_by": list(self.triggered_by),
            "computation": list(self.computation),
            "required_content": list(self.required_content),
            "forbidden_content": list(self.forbidden_content),
            "remedies": list(self.remedies),
            "record_keeping": self.record_keeping,
            "notes": list(self.notes),
            "key": self.key,
            "status": self.status,
            "done_at": iso(self.done_at),
            "status_note": self.status_note,
        }


@dataclass(frozen=True)
class Assessment:
    """Everything the rules say about an incident: duties owed, not owed, and gaps."""

    obligations: tuple[Obligation, ...]
    not_owed: tuple[tuple[str, str], ...]
    uncovered: tuple[str, ...]


def evaluate(
    facts: IncidentFacts, rules: RuleSet | None = None, now: datetime | None = None
) -> list[Obligation]:
    """Every obligation the loaded rules impose for ``facts``."""
    return list(assess(facts, rules, now).obligations)


def assess(
    facts: IncidentFacts, rules: RuleSet | None = None, now: datetime | None = None
) -> Assessment:
    """Evaluate every rule family; also report rules not owed (with the reason) and uncovered codes."""
    rules = rules if rules is not None else load_rules()
    now = now or datetime.now(UTC)
    for name in ANCHORS:
        value = facts.anchor(name)
        if value is not None and value > now:
            raise InvalidInput(f"{name} is in the future")
    done: dict[str, list[Obligation]] = {}
    not_owed: list[tuple[str, str]] = []
    for family, versions in rules.families().items():
        owed, reasons = _evaluate_family(versions, facts, rules, done)
        done[family] = owed
        not_owed.extend((family, reason) for reason in reasons)
    day = facts.aware.date()
    jurisdictions = {loaded.jurisdiction for loaded in rules.rules}
    uncovered = tuple(
        sorted(c for c in facts.affected if not any(rules.covers(j, c, day) for j in jurisdictions))
    )
    owed_all = tuple(o for family in done.values() for o in family)
    return Assessment(owed_all, tuple(not_owed), uncovered)


@dataclass
class _Context:
    loaded: LoadedRule
    anchor_name: str | None
    anchor_at: datetime | None
    why_anchor: list[str] = field(default_factory=list)
    reference: list[Obligation] = field(default_factory=list)


def _evaluate_family(
    versions: list[LoadedRule],
    facts: IncidentFacts,
    rules: RuleSet,
    done: Mapping[str, list[Obligation]],
) -> tuple[list[Obligation], list[str]]:
    context = _pick_version(versions, facts, done)
    if context is None:
        place = versions[0].jurisdiction
        if any(rules.covers(place, code, facts.aware.date()) for code in facts.affected):
            return [], ["no version in force on the clock-anchor date"]
        return [], []
    loaded = context.loaded
    rule = loaded.rule
    day = (context.anchor_at or facts.aware).date()
    codes = {c: n for c, n in facts.affected.items() if rules.covers(loaded.jurisdiction, c, day)}
    if not codes:
        return [], []
    reasons: list[str] = []
    why = _trigger_reasons(rule, facts, reasons)
    if why is None:
        return [], reasons
    if rule.ordering and not context.reference:
        return [], [f"depends on {rule.ordering.rule}, which is not owed"]
    owed: list[Obligation] = []
    total = sum(codes.values())
    for target, count, member in _targets(rule, loaded.jurisdiction, codes, facts, rules, day):
        checks = _thresholds(rule, loaded.jurisdiction, target, count, total, reasons)
        if checks is None:
            continue
        authority = rule.authority or (member.authority if member else None) or loaded.authority
        zone = (authority.timezone if authority else None) or (member.timezone if member else None)
        zone = zone or loaded.timezone
        reference = _reference_for(context.reference, target, loaded.jurisdiction)
        done_at = facts.done.get(reference.key) if reference else None
        due, computation = _deadline(rule, context, reference, zone, target, done_at)
        shown = authority if rule.recipient in ("authority", "regulator") else None
        duty = rule.duty.format(authority=authority.name if authority else "the authority")
        owed.append(
            Obligation(
                rule_id=rule.id,
                duty=duty,
                citation=rule.citation,
                source_url=rule.source_url,
                anchor=context.anchor_name,
                anchor_at=context.anchor_at,
                due_at=due,
                jurisdiction=target,
                title=rule.title,
                recipient=rule.recipient,
                authority=shown,
                timezone=zone,
                without_undue_delay=rule.deadline.without_undue_delay,
                verification=rule.verification,
                verification_note=rule.verification_note,
                triggered_by=(*why, *checks),
                computation=(*context.why_anchor, *computation),
                required_content=tuple(rule.required_content),
                forbidden_content=tuple(rule.forbidden_content),
                remedies=_remedies(rule, facts),
                record_keeping=rule.record_keeping,
                notes=tuple(rule.notes),
            )
        )
    return owed, reasons


def _pick_version(
    versions: list[LoadedRule], facts: IncidentFacts, done: Mapping[str, list[Obligation]]
) -> _Context | None:
    for loaded in versions:
        rule = loaded.rule
        reference = done.get(rule.ordering.rule, []) if rule.ordering else []
        context = _anchor(loaded, facts, reference)
        day = (context.anchor_at or facts.aware).date()
        if rule.effective_from <= day and (rule.effective_to is None or day <= rule.effective_to):
            context.why_anchor.append(
                f"rule version in force on {day.isoformat()} "
                f"(from {rule.effective_from.isoformat()}"
                + (f" to {rule.effective_to.isoformat()})" if rule.effective_to else ")")
            )
            return context
    return None


def _anchor(loaded: LoadedRule, facts: IncidentFacts, reference: list[Obligation]) -> _Context:
    name = loaded.rule.deadline.anchor
    if name is None:
        if reference:
            first = reference[0]
            return _Context(loaded, first.anchor, first.anchor_at, [], reference)
        return _Context(loaded, None, None, [], reference)
    value = facts.anchor(name)
    if value is not None:
        return _Context(
            loaded, name, value, [f"clock starts at '{name}' = {_iso(value)}"], reference
        )
    known = [(facts.anchor(a), a) for a in _SAFER_ANCHORS.get(name, ()) if facts.anchor(a)]
    if known:
        value, safer = min(known, key=lambda pair: pair[0] or facts.aware)
        note = (
            f"'{name}' is not recorded: counted from '{safer}' = {_iso(value or facts.aware)}, "
            "which is not later, so the deadline is not later either"
        )
        return _Context(loaded, safer, value, [note], reference)
    return _Context(
        loaded, name, None, [f"'{name}' is not recorded: record it to date this duty"], reference
    )


def _trigger_reasons(rule: Rule, facts: IncidentFacts, reasons: list[str]) -> list[str] | None:
    applies = rule.applies_to
    if facts.role not in applies.roles:
        reasons.append(f"duty of a {' or '.join(applies.roles)}, not of a {facts.role}")
        return None
    if applies.sectors and not facts.sectors & set(applies.sectors):
        reasons.append(f"applies only to sector {' or '.join(applies.sectors)}")
        return None
    excluded = facts.sectors & set(applies.exclude_sectors)
    if excluded:
        reasons.append(f"does not apply to sector {', '.join(sorted(excluded))}")
        return None
    trigger = rule.trigger
    exposed = facts.categories
    if not (trigger.data_categories or trigger.standalone):
        hit = sorted(exposed)
        data_ok = bool(hit)
    else:
        alone = exposed & set(trigger.standalone)
        main = exposed & set(trigger.data_categories)
        combined = exposed & set(trigger.combined_with)
        data_ok = bool(alone) or (bool(main) and (not trigger.combined_with or bool(combined)))
        hit = sorted(alone | (main | combined if data_ok and main else set()))
    if not data_ok:
        needs = ", ".join(trigger.data_categories)
        if trigger.combined_with:
            needs += f" together with {', '.join(trigger.combined_with)}"
        if trigger.standalone:
            needs += f"; or {', '.join(trigger.standalone)} alone"
        reasons.append(f"exposed data ({', '.join(sorted(exposed))}) do not include {needs}")
        return None
    events = facts.events & set(trigger.events)
    if not events:
        reasons.append(f"event not covered: rule needs {', '.join(trigger.events)}")
        return None
    if facts.risk not in _RISK_MEETS[trigger.risk_test]:
        reasons.append(f"risk level '{facts.risk}' does not meet the '{trigger.risk_test}' test")
        return None
    if rule.safe_harbour and facts.encrypted and not facts.key_exposed:
        reasons.append("safe harbour: data encrypted and the key was not exposed")
        return None
    verdict = "meets"
    if trigger.risk_test in _OWN_TERMS:
        verdict = "is taken to meet (confirm in that law's own terms)"
    why = [
        f"exposed data: {', '.join(hit)}",
        f"event: {', '.join(sorted(events))}",
        f"risk level '{facts.risk}' {verdict} the '{trigger.risk_test}' test"
        + (f" ({facts.risk_explanation})" if facts.risk_explanation else ""),
    ]
    if rule.safe_harbour and facts.encrypted:
        why.append("encryption safe harbour lost: the key was exposed too")
    return why


def _targets(
    rule: Rule,
    jurisdiction: str,
    codes: Mapping[str, int],
    facts: IncidentFacts,
    rules: RuleSet,
    day: date,
) -> list[tuple[str, int, Member | None]]:
    total = sum(codes.values())
    if rule.per_member == "none":
        return [(jurisdiction, total, rules.member(jurisdiction, jurisdiction))]
    lead = facts.establishment
    if rule.per_member == "lead_or_each" and lead and rules.covers(jurisdiction, lead, day):
        return [(lead, total, rules.member(jurisdiction, lead))]
    return [(c, n, rules.member(jurisdiction, c)) for c, n in sorted(codes.items()) if n > 0]


def _thresholds(
    rule: Rule, jurisdiction: str, target: str, count: int, total: int, reasons: list[str]
) -> list[str] | None:
    checks = [f"{total} affected residents of {jurisdiction}"]
    for threshold in rule.thresholds:
        value = count if threshold.scope == "each_member" else total
        place = target if threshold.scope == "each_member" else jurisdiction
        sentence = f"{value} residents of {place} {threshold.comparator} {threshold.value}"
        if not _COMPARE[threshold.comparator](value, threshold.value):
            reasons.append(f"threshold not met: {sentence} is false")
            return None
        checks.append(f"threshold met: {sentence}")
    return checks


def _reference_for(
    reference: list[Obligation], target: str, jurisdiction: str
) -> Obligation | None:
    for wanted in (target, jurisdiction):
        for obligation in reference:
            if obligation.jurisdiction == wanted:
                return obligation
    return reference[0] if reference else None


def _deadline(
    rule: Rule,
    context: _Context,
    reference: Obligation | None,
    zone: str,
    target: str,
    done_at: datetime | None = None,
) -> tuple[datetime | None, list[str]]:
    deadline = rule.deadline
    relation = rule.ordering.relation if rule.ordering else None
    lines: list[str] = []
    start = context.anchor_at
    if relation == "after" and reference is not None and done_at is not None:
        start = done_at
        lines.append(f"counted from {_iso(done_at)}, when {reference.rule_id} was done")
    elif relation == "after":
        start = reference.due_at if reference else None
        if reference:
            lines.append(
                f"counted from the deadline of {reference.rule_id} (the latest lawful date)"
            )
    own: datetime | None = None
    if start is not None and deadline.offset is not None and deadline.unit is not None:
        calendar = deadline.holiday_calendar or target
        own = _add(
            start, deadline.offset, deadline.unit, deadline.period_end, zone, calendar, lines
        )
    elif deadline.without_undue_delay:
        lines.append("no fixed deadline: without undue delay / as soon as possible")
    if relation in ("with", "before") and reference is not None:
        word = "together with" if relation == "with" else "before"
        lines.append(f"must be sent {word} {reference.rule_id}")
        if reference.due_at is not None and (own is None or reference.due_at < own):
            lines.append(f"so due by that rule's deadline, {_iso(reference.due_at)}")
            return reference.due_at, lines
    if (
        relation == "after"
        and reference is not None
        and reference.due_at is None
        and done_at is None
    ):
        lines.append(f"{reference.rule_id} has no fixed deadline: date this once it is sent")
    return own, lines


def _add(
    start: datetime,
    offset: int,
    unit: str,
    period_end: str | None,
    zone: str,
    calendar_code: str,
    lines: list[str],
) -> datetime:
    tz = ZoneInfo(zone)
    local = start.astimezone(tz)
    if period_end == "calendar_year":
        local = datetime.combine(date(local.year, 12, 31), time(23, 59, 59), tz)
        lines.append(f"counted from the end of calendar year {local.year}")
    if unit == "hours":
        due = (
            start + timedelta(hours=offset)
            if period_end is None
            else local + timedelta(hours=offset)
        )
        lines.append(f"+{offset} hours (calendar hours, weekends included) = {_iso(due)}")
        return due
    if unit == "calendar_days":
        day = local.date() + timedelta(days=offset)
        due = datetime.combine(day, time(23, 59, 59), tz)
        lines.append(f"+{offset} calendar days = end of {day.isoformat()} in {zone}")
        return due
    closed = holiday_calendar(calendar_code)
    day, skipped, counted = local.date(), [], 0
    while counted < offset:
        day += timedelta(days=1)
        if day.weekday() >= 5:
            continue
        if day in closed:
            skipped.append(f"{day.isoformat()} ({closed.get(day)})")
            continue
        counted += 1
    due = datetime.combine(day, time(23, 59, 59), tz)
    lines.append(f"+{offset} business days in {calendar_code} = end of {day.isoformat()} in {zone}")
    if skipped:
        lines.append(f"holidays skipped: {', '.join(skipped)}")
    return due


def _remedies(rule: Rule, facts: IncidentFacts) -> tuple[str, ...]:
    owed = []
    for remedy in rule.remedies:
        if remedy.when_categories and not facts.categories & set(remedy.when_categories):
            continue
        text = f"{remedy.kind.replace('_', ' ')} for {remedy.months} months, free of charge"
        if remedy.condition:
            text += f" ({remedy.condition})"
        owed.append(text)
    return tuple(owed)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="minutes")


def gdpr_authority_notice(aware_at: datetime, member: str = "IT") -> Obligation:
    """GDPR Art. 33(1) for an incident affecting residents of one member state."""
    facts = IncidentFacts(
        categories=frozenset({"contact"}),
        affected={member: 1},
        aware=aware_at,
        risk="risk",
        establishment=member,
    )
    for obligation in evaluate(facts, now=aware_at):
        if obligation.rule_id == "eu.gdpr.art33.authority":
            return obligation
    raise RuleFileError("rules/eu_gdpr.yaml: rule eu.gdpr.art33.authority: missing")


def next_due(obligations: Iterable[Obligation]) -> Obligation | None:
    """The obligation with the earliest fixed deadline, if any has one."""
    dated = [o for o in obligations if o.due_at is not None]
    return min(dated, key=lambda o: o.due_at or datetime.max.replace(tzinfo=UTC), default=None)


def format_remaining(delta: timedelta | None) -> str:
    """``2d 5h 03m left``, ``overdue by 4h 10m`` or ``as soon as possible`` without a deadline."""
    if delta is None:
        return "as soon as possible (no fixed deadline)"
    seconds = int(delta.total_seconds())
    late = seconds < 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    text = (f"{days}d " if days else "") + f"{hours}h {minutes:02d}m"
    return f"overdue by {text}" if late else f"{text} left"


def coverage_table(rules: RuleSet | None = None) -> str:
    """Markdown tables of every rule and member authority, generated from the rule files."""
    rules = rules if rules is not None else load_rules()

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    counts: dict[str, list[int]] = {}
    for loaded in rules.rules:
        tally = counts.setdefault(loaded.jurisdiction, [0, 0])
        tally[loaded.rule.verification != "verified"] += 1
    lines = ["| Jurisdiction | Name | Verified rules | Unverified rules |", "|---|---|---|---|"]
    for code, (verified, unverified) in sorted(counts.items()):
        lines.append(f"| {code} | {cell(rules.names[code])} | {verified} | {unverified} |")
    total = [sum(c[i] for c in counts.values()) for i in (0, 1)]
    lines += [f"| all | {len(counts)} jurisdictions | {total[0]} | {total[1]} |", ""]
    lines += [
        "| Jurisdiction | Rule | Citation | In force | Verification |",
        "|---|---|---|---|---|",
    ]
    for loaded in sorted(rules.rules, key=lambda r: (r.jurisdiction, r.rule.id)):
        rule = loaded.rule
        span = f"{rule.effective_from.isoformat()} – {rule.effective_to.isoformat() if rule.effective_to else ''}"
        lines.append(
            f"| {loaded.jurisdiction} | `{rule.id}` {cell(rule.title)} | "
            f"[{cell(rule.citation)}]({rule.source_url}) | {span.strip()} | {rule.verification} |"
        )
    lines += ["", "| Jurisdiction | Member | Authority | Verification |", "|---|---|---|---|"]
    for jurisdiction in sorted(rules.members):
        for code, member in sorted(rules.members[jurisdiction].items()):
            authority = member.authority
            name = f"[{cell(authority.name)}]({authority.url})" if authority else "–"
            status = authority.verification if authority else "–"
            lines.append(f"| {jurisdiction} | {code} {cell(member.name)} | {name} | {status} |")
    return "\n".join(lines) + "\n"
