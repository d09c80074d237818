"""Incidents: the response case opened on a trace, its affected people, risk and duties."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import holidays
from sqlalchemy import Integer, String, func, insert, literal, select, update
from sqlalchemy.orm import Session

from . import audit, reports, store
from . import models as m
from .customers import load_customers
from .deadlines import deadlines_calendar
from .errors import InvalidInput, NotFound
from .fields import FIELD_NAMES, category_of
from .history import HistoryEntry as HistoryEntry  # re-exported for callers of incidents
from .history import (
    duty_record,
    iso_utc,
    latest_assessment,
    parse_time,
    save_assessment,
    split_entries,
    with_status,
)
from .history import incident_history as incident_history
from .obligations import RISK_LEVELS, STATUSES, IncidentFacts, Obligation, assess
from .rules_schema import CATEGORIES, EVENTS
from .ruleset import load_rules
from .scope import fields_of
from .workspace import Workspace

# Categories whose exposure makes harm to people likely without further facts
# (EDPB Guidelines 9/2022: identity documents, financial data, credentials, health…).
SENSITIVE = frozenset(
    {
        "government_id",
        "identity_document",
        "financial_account",
        "card",
        "credentials",
        "health",
        "biometric",
        "children",
    }
)


@dataclass
class IncidentView:
    """An incident as shown to people: facts, counts and obligations, no personal data."""

    id: int
    title: str
    status: str
    trace_id: int | None
    aware_at: datetime
    occurred_at: datetime | None
    contained_at: datetime | None
    people: int
    risk: str = "risk"
    risk_reason: str = ""
    by_field: dict[str, int] = field(default_factory=dict)
    by_country: dict[str, int] = field(default_factory=dict)
    by_jurisdiction: dict[str, int] = field(default_factory=dict)
    obligations: list[Obligation] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)
    notices: dict[str, int] = field(default_factory=dict)
    # Facts recorded after opening (discovery, encryption, counts, texts for reports).
    facts: dict[str, Any] = field(default_factory=dict)
    discovered_at: datetime | None = None
    determined_at: datetime | None = None
    not_owed: list[tuple[str, str]] = field(default_factory=list)
    # Duties marked done that the current facts no longer require; kept for the record.
    withdrawn: list[dict[str, Any]] = field(default_factory=list)
    assessed_at: datetime | None = None

    def as_dict(self, now: datetime, tz: str) -> dict[str, Any]:
        """JSON-ready form."""

        def iso(d: datetime | None) -> str | None:
            return d.isoformat(timespec="seconds") if d else None

        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "trace_id": self.trace_id,
            "aware_at": iso(self.aware_at),
            "occurred_at": iso(self.occurred_at),
            "contained_at": iso(self.contained_at),
            "people": self.people,
            "risk": self.risk,
            "risk_reason": self.risk_reason,
            "by_field": self.by_field,
            "by_country": self.by_country,
            "by_jurisdiction": self.by_jurisdiction,
            "obligations": [o.as_dict(now, tz) for o in self.obligations],
            "uncovered_jurisdictions": self.uncovered,
            "notices": self.notices,
            "discovered_at": iso(self.discovered_at),
            "determined_at": iso(self.determined_at),
            "facts": self.facts,
            "not_owed": [{"rule": rule, "reason": reason} for rule, reason in self.not_owed],
            "withdrawn": self.withdrawn,
            "assessed_at": iso(self.assessed_at),
        }


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone, e.g. 2026-03-02T10:00+01:00")
    return value.astimezone(UTC)


def default_risk(categories: set[str]) -> tuple[str, str]:
    """A first risk assessment from the exposed categories, to be confirmed by an analyst."""
    sensitive = sorted(categories & SENSITIVE)
    if sensitive:
        return "high_risk", (
            f"{', '.join(sensitive)} exposed: fraud or identity theft is likely "
            "(first assessment by canarino; confirm or override with a reason)"
        )
    return "risk", (
        "contact and identity data in unauthorised hands enable targeted phishing and "
        "impersonation (first assessment by canarino; confirm or override with a reason)"
    )


def open_incident(
    ws: Workspace,
    trace_id: int,
    *,
    title: str | None = None,
    aware_at: datetime | None = None,
    occurred_at: datetime | None = None,
    now: datetime | None = None,
) -> IncidentView:
    """Open an incident on a trace: its real customers become the affected people."""
    now = now or datetime.now(UTC)
    aware = _aware(aware_at, "--aware-at") or now
    occurred = _aware(occurred_at, "--occurred-at")
    if aware > now:
        raise InvalidInput("the time of awareness cannot be in the future")
    if occurred is not None and occurred > aware:
        raise InvalidInput("the breach cannot have occurred after the company became aware of it")
    with ws.db.session() as s:
        trace = store.get_trace(s, trace_id)
        exposed = set(trace.result.get("scope", {}).get("by_field", {}))
        risk, reason = default_risk({category_of(f) for f in exposed})
        incident = m.Incident(
            title=title or f"Leak traced in {trace.source_name}",
            trace_id=trace.id,
            aware_at=aware,
            occurred_at=occurred,
            risk=risk,
            risk_reason=reason,
        )
        s.add(incident)
        s.flush()
        masks = s.scalars(
            select(m.TraceCustomer.mask).where(m.TraceCustomer.trace_id == trace.id).distinct()
        ).all()
        # One copy per field set (a handful per trace), the field list written out once.
        for mask in masks:
            s.execute(
                insert(m.IncidentPerson).from_select(
                    ["incident_id", "customer_id", "fields"],
                    select(
                        literal(incident.id, Integer),
                        m.TraceCustomer.customer_id,
                        literal(",".join(fields_of(mask)), String),
                    ).where(m.TraceCustomer.trace_id == trace.id, m.TraceCustomer.mask == mask),
                )
            )
        incident_id = incident.id
    return reassess(ws, incident_id, f"opened on trace #{trace_id}", now=now)


def assess_risk(ws: Workspace, incident_id: int, risk: str, reason: str) -> IncidentView:
    """Record an analyst's risk assessment, with its reason; obligations follow it."""
    if risk not in RISK_LEVELS:
        raise InvalidInput(
            f"unknown risk level {risk!r}", hint=f"use one of {', '.join(RISK_LEVELS)}"
        )
    if not reason.strip():
        raise InvalidInput("a risk assessment needs a reason, for the record")
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        s.execute(
            update(m.Incident)
            .where(m.Incident.id == incident_id)
            .values(risk=risk, risk_reason=reason.strip())
        )
    return reassess(ws, incident_id, f"risk set to {risk}: {reason.strip()}")


def residence(country: str | None, region: str | None) -> str | None:
    """The jurisdiction code of a person: ``US-CA`` where a subdivision is known, else ``IT``."""
    if not country:
        return None
    supported = holidays.list_supported_countries(include_aliases=False)
    if country not in supported:
        return None
    if country in ("US", "CA", "AU") and region and region.upper() in supported[country]:
        return f"{country}-{region.upper()}"
    return country


def show_incident(ws: Workspace, incident_id: int, *, now: datetime | None = None) -> IncidentView:
    """Load an incident with its counts, obligations under the rule files, and notices.

    Each obligation carries the status recorded in the incident's history (``done`` stays
    done whatever the facts later say); nothing is written.
    """
    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        return _load_view(s, ws, incident_id, now)


# The affected-people breakdown joins every affected person to the customer table; pages
# show it on every view, so it is kept per incident until its people or assessment change.
_BREAKDOWNS: dict[tuple[Any, ...], tuple[int, Counter[str], Counter[str], Counter[str]]] = {}


def _breakdown(
    s: Session, incident_id: int, assessment_id: int | None
) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    rows = s.scalar(select(func.count()).where(m.IncidentPerson.incident_id == incident_id))
    key = (str(s.get_bind().url), incident_id, assessment_id, rows)
    if (hit := _BREAKDOWNS.get(key)) is not None:
        return hit
    by_field: Counter[str] = Counter()
    by_country: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    people = 0
    query = (
        select(m.Customer.country, m.Customer.region, m.IncidentPerson.fields, func.count())
        .join(m.IncidentPerson, m.IncidentPerson.customer_id == m.Customer.id)
        .where(m.IncidentPerson.incident_id == incident_id)
        .group_by(m.Customer.country, m.Customer.region, m.IncidentPerson.fields)
    )
    for country, region, fields_text, count in s.execute(query):
        people += count
        by_country[country or "??"] += count
        by_code[residence(country, region) or "unknown"] += count
        for name in filter(None, fields_text.split(",")):
            by_field[name] += count
    if len(_BREAKDOWNS) > 256:
        _BREAKDOWNS.clear()
    _BREAKDOWNS[key] = result = (people, by_field, by_country, by_code)
    return result


def _load_view(
    s: Session,
    ws: Workspace,
    incident_id: int,
    now: datetime,
    extra: dict[str, Any] | None = None,
    statuses: dict[str, dict[str, Any]] | None = None,
) -> IncidentView:
    inc = store.get_incident(s, incident_id)
    latest = latest_assessment(s, inc.id)
    stored_facts, stored_duties = split_entries(latest.obligations if latest else None)
    extra = stored_facts if extra is None else extra
    statuses = stored_duties if statuses is None else statuses
    people, by_field, by_country, by_code = _breakdown(s, inc.id, latest.id if latest else None)
    order = {n: i for i, n in enumerate(FIELD_NAMES)}
    view = IncidentView(
        inc.id,
        inc.title,
        inc.status,
        inc.trace_id,
        inc.aware_at,
        inc.occurred_at,
        inc.contained_at,
        people,
        inc.risk,
        inc.risk_reason or "",
        dict(sorted(by_field.items(), key=lambda kv: order.get(kv[0], 99))),
        dict(by_country.most_common()),
        dict(by_code.most_common()),
        notices=_notice_states(s, inc.id),
        facts=dict(extra),
        discovered_at=parse_time(extra.get("discovered_at")),
        determined_at=parse_time(extra.get("determined_at")),
        assessed_at=latest.computed_at if latest else None,
    )
    done = {
        key: when
        for key, entry in statuses.items()
        if entry.get("status") == "done" and (when := parse_time(entry.get("done_at")))
    }
    facts = _facts_for(view, extra, ws, done)
    if facts is None:
        return view
    result = assess(facts, now=now)
    owed = [with_status(o, statuses.get(o.key)) for o in result.obligations]
    view.obligations = sorted(
        owed, key=lambda o: (o.due_at is None, o.due_at or now, o.rule_id, o.jurisdiction)
    )
    view.uncovered = list(result.uncovered)
    view.not_owed = list(result.not_owed)
    current = {o.key for o in owed}
    view.withdrawn = [
        entry
        for key, entry in sorted(statuses.items())
        if key not in current and entry.get("status") == "done"
    ]
    return view


def _notice_states(s: Session, incident_id: int) -> dict[str, int]:
    return dict(
        s.execute(
            select(m.Notice.state, func.count())
            .where(m.Notice.incident_id == incident_id)
            .group_by(m.Notice.state)
        ).all()
    )


def list_incidents(ws: Workspace) -> list[IncidentView]:
    """Every incident, newest first."""
    with ws.db.session() as s:
        ids = s.scalars(select(m.Incident.id).order_by(m.Incident.id.desc())).all()
    return [show_incident(ws, i) for i in ids]


# --- read models for pages shown often: kept until the database changes -----------------
#
# An incident's view only depends on stored data (its people, assessment, notices) and the
# rule files; the time of reading only matters for countdowns, which the caller computes
# from ``due_at``. So the views are kept (see ``Database.cached``) and shared: callers
# must not change them.


def current_incident(ws: Workspace, incident_id: int) -> IncidentView:
    """Incident ``incident_id`` as :func:`show_incident` loads it, reused until data changes."""
    return ws.db.cached(("incident", incident_id), lambda: show_incident(ws, incident_id))


def current_incidents(ws: Workspace) -> list[IncidentView]:
    """Every incident, newest first, as :func:`list_incidents` loads them, reused until data changes."""

    def load() -> list[IncidentView]:
        now = datetime.now(UTC)
        with ws.db.session() as s:
            ids = s.scalars(select(m.Incident.id).order_by(m.Incident.id.desc())).all()
            return [_load_view(s, ws, i, now) for i in ids]

    return ws.db.cached(("incidents",), load)


@dataclass(frozen=True)
class PersonView:
    """One affected person of an incident, masked unless ``revealed``."""

    customer_id: int
    name: str
    email: str
    phone: str
    country: str
    exposed: list[str] = field(default_factory=list)
    revealed: bool = False


def affected_people(
    ws: Workspace, incident_id: int, *, limit: int = 50, offset: int = 0, reveal: bool = False
) -> store.Page[PersonView]:
    """A page of an incident's affected people; contact data masked unless ``reveal``.

    Masked pages are reused until data changes; revealed ones are read every time and
    never kept in memory. Recording who looked is the caller's duty (see :mod:`.audit`).
    """
    if reveal:
        return _people(ws, incident_id, limit, offset, reveal=True)
    return ws.db.cached(
        ("people", incident_id, limit, offset),
        lambda: _people(ws, incident_id, limit, offset, reveal=False),
    )


def _people(
    ws: Workspace, incident_id: int, limit: int, offset: int, *, reveal: bool
) -> store.Page[PersonView]:
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        where = m.IncidentPerson.incident_id == incident_id
        total = s.scalar(select(func.count()).select_from(m.IncidentPerson).where(where)) or 0
        rows = s.execute(
            select(m.IncidentPerson.customer_id, m.IncidentPerson.fields)
            .where(where)
            .order_by(m.IncidentPerson.customer_id)
            .limit(limit)
            .offset(offset)
        ).all()
    records = load_customers(ws, [cid for cid, _ in rows])
    people = []
    for cid, fields_text in rows:
        rec = records.get(cid, {})
        name = rec.get("full_name") or " ".join(
            v for v in (rec.get("first_name"), rec.get("last_name")) if v
        )
        email, phone = rec.get("email", ""), rec.get("phone", "")
        if not reveal:
            name = audit.mask_text(name)
            email = audit.mask_email(email) if email else ""
            phone = audit.mask_phone(phone) if phone else ""
        people.append(
            PersonView(
                cid,
                name,
                email,
                phone,
                rec.get("country", ""),
                [f for f in fields_text.split(",") if f],
                reveal,
            )
        )
    return store.Page(people, total, limit, offset)


# --- phased notification: facts that change, duties that stay done, the history kept ----

# Facts an analyst adds after opening; the incidents table has no columns for them, so the
# latest assessment row carries them forward (see the "facts" entry of its JSON list).
FACT_TEXTS = (
    "description",
    "cause",
    "consequences",
    "measures",
    "delay",
    "parent_company",
    "security_program",
)


def _facts_for(
    view: IncidentView, extra: dict[str, Any], ws: Workspace, done: dict[str, datetime]
) -> IncidentFacts | None:
    affected = {code: n for code, n in view.by_jurisdiction.items() if code != "unknown"}
    for code, count in (extra.get("counts") or {}).items():
        affected[code] = count
    if not affected:
        return None
    return IncidentFacts(
        categories=frozenset(category_of(f) for f in view.by_field)
        | set(extra.get("categories") or ()),
        affected=affected,
        aware=view.aware_at,
        occurred=view.occurred_at,
        discovered=parse_time(extra.get("discovered_at")),
        determined=parse_time(extra.get("determined_at")),
        contained=view.contained_at,
        risk=view.risk,
        risk_explanation=view.risk_reason,
        encrypted=bool(extra.get("encrypted", False)),
        key_exposed=bool(extra.get("key_exposed", False)),
        events=frozenset(extra.get("events") or ("acquisition",)),
        role=ws.settings.role,
        sectors=frozenset(ws.settings.sectors),
        establishment=ws.settings.establishment,
        done=done,
    )


def reassess(
    ws: Workspace, incident_id: int, reason: str, *, now: datetime | None = None
) -> IncidentView:
    """Recompute the obligations and keep the result, with its reason, in the history."""
    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        view = _load_view(s, ws, incident_id, now)
        save_assessment(s, incident_id, view, reason, now)
    return view


def _check_time(value: datetime | None, name: str, now: datetime) -> str | None:
    checked = _aware(value, name)
    if checked is not None and checked > now:
        raise InvalidInput(f"{name} is in the future", hint="give the time it happened")
    return iso_utc(checked)


def update_facts(
    ws: Workspace,
    incident_id: int,
    reason: str,
    *,
    discovered_at: datetime | None = None,
    determined_at: datetime | None = None,
    occurred_at: datetime | None = None,
    contained_at: datetime | None = None,
    encrypted: bool | None = None,
    key_exposed: bool | None = None,
    events: list[str] | None = None,
    categories: list[str] | None = None,
    counts: Mapping[str, int] | None = None,
    texts: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> IncidentView:
    """Record new facts of an incident; obligations are recomputed, done duties stay done.

    ``counts`` replaces the number of affected people of a jurisdiction code (e.g. people
    who are not in the customer master); ``texts`` holds the narrative a report needs
    (description, cause, consequences, measures, reasons for delay…). Contradictory facts are refused
    and nothing is stored.
    """
    if not reason.strip():
        raise InvalidInput("a change of facts needs a reason, for the record")
    now = now or datetime.now(UTC)
    for name, values, known in (
        ("event", events, EVENTS),
        ("data category", categories, CATEGORIES),
    ):
        for value in values or ():
            if value not in known:
                raise InvalidInput(
                    f"unknown {name} {value!r}", hint=f"use one of {', '.join(known)}"
                )
    for name in texts or {}:
        if name not in FACT_TEXTS:
            raise InvalidInput(f"unknown text {name!r}", hint=f"use one of {', '.join(FACT_TEXTS)}")
    for code, count in (counts or {}).items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InvalidInput(f"the count for {code} must be a whole number >= 0")
    with ws.db.session() as s:
        inc = store.get_incident(s, incident_id)
        latest = latest_assessment(s, inc.id)
        extra, statuses = split_entries(latest.obligations if latest else None)
        for anchor, when in (("discovered_at", discovered_at), ("determined_at", determined_at)):
            if when is not None:
                extra[anchor] = _check_time(when, anchor.replace("_", " "), now)
        if occurred_at is not None:
            _check_time(occurred_at, "occurred at", now)
            inc.occurred_at = _aware(occurred_at, "occurred at")
        if contained_at is not None:
            _check_time(contained_at, "contained at", now)
            inc.contained_at = _aware(contained_at, "contained at")
        if encrypted is not None:
            extra["encrypted"] = encrypted
        if key_exposed is not None:
            extra["key_exposed"] = key_exposed
        if events is not None:
            extra["events"] = sorted(set(events))
        if categories is not None:
            extra["categories"] = sorted(set(categories))
        if counts:
            extra["counts"] = {**(extra.get("counts") or {}), **dict(counts)}
        for name, text in (texts or {}).items():
            extra[name] = text.strip()
        s.flush()
        # Builds the facts, so contradictions (contained before occurred, unknown codes,
        # a key exposed without encryption) raise here and the session rolls back.
        view = _load_view(s, ws, inc.id, now, extra, statuses)
        save_assessment(s, inc.id, view, reason, now)
    return view


def merge_trace(
    ws: Workspace, incident_id: int, trace_id: int, *, now: datetime | None = None
) -> IncidentView:
    """Add the people of another trace to an incident (scope grows); duties are recomputed."""
    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        inc = store.get_incident(s, incident_id)
        trace = store.get_trace(s, trace_id)
        known = dict(
            s.execute(
                select(m.IncidentPerson.customer_id, m.IncidentPerson.fields).where(
                    m.IncidentPerson.incident_id == inc.id
                )
            ).all()
        )
        added = 0
        rows = s.execute(
            select(m.TraceCustomer.customer_id, m.TraceCustomer.mask).where(
                m.TraceCustomer.trace_id == trace.id
            )
        )
        for customer_id, mask in rows:
            fields_text = ",".join(fields_of(mask))
            if customer_id not in known:
                s.add(
                    m.IncidentPerson(
                        incident_id=inc.id, customer_id=customer_id, fields=fields_text
                    )
                )
                added += 1
                continue
            union = sorted(
                set(filter(None, known[customer_id].split(",")))
                | set(filter(None, fields_text.split(",")))
            )
            if ",".join(union) != known[customer_id]:
                s.execute(
                    update(m.IncidentPerson)
                    .where(m.IncidentPerson.incident_id == inc.id)
                    .where(m.IncidentPerson.customer_id == customer_id)
                    .values(fields=",".join(union))
                )
        s.flush()
        view = _load_view(s, ws, inc.id, now)
        save_assessment(s, inc.id, view, f"trace #{trace.id} merged: {added} more people", now)
    return view


def mark_obligation(
    ws: Workspace,
    incident_id: int,
    which: str,
    *,
    status: str = "done",
    at: datetime | None = None,
    note: str = "",
    now: datetime | None = None,
) -> IncidentView:
    """Record that a duty was done (or reopen it); ``which`` is a key or a rule id."""
    if status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}", hint=f"use one of {', '.join(STATUSES)}")
    now = now or datetime.now(UTC)
    when = _aware(at, "--at") or now
    if when > now:
        raise InvalidInput("a duty cannot be done in the future", hint="give the time it was done")
    with ws.db.session() as s:
        view = _load_view(s, ws, incident_id, now)
        matches = [o for o in view.obligations if which in (o.key, o.rule_id)]
        if len(matches) != 1:
            keys = ", ".join(o.key for o in view.obligations) or "none"
            problem = "matches several duties" if matches else "is not a duty of this incident"
            raise NotFound(f"{which!r} {problem}", hint=f"use one of: {keys}")
        (target,) = matches
        changed = replace(
            target,
            status=status,
            done_at=when if status == "done" else None,
            status_note=note.strip(),
        )
        latest = latest_assessment(s, incident_id)
        extra, statuses = split_entries(latest.obligations if latest else None)
        statuses[target.key] = duty_record(changed)
        # Recomputed with the new state: a duty due "after" this one now counts from today.
        view = _load_view(s, ws, incident_id, now, extra, statuses)
        save_assessment(
            s,
            incident_id,
            view,
            f"{target.key} marked {status}" + (f": {note.strip()}" if note.strip() else ""),
            now,
        )
    return view


def draft_report(
    ws: Workspace, incident_id: int, to: str, *, now: datetime | None = None
) -> reports.Report:
    """Draft the notification of an incident to the authority ``to`` (a form or a code)."""
    now = now or datetime.now(UTC)
    view = show_incident(ws, incident_id, now=now)
    settings = ws.settings
    notifier = reports.Notifier(settings.company_name, settings.company_email, settings.dpo_contact)
    members = {
        code: member.authority.name
        for code, member in load_rules().members.get("EU", {}).items()
        if member.authority is not None
    }
    return reports.draft_report(
        view.as_dict(now, settings.timezone),
        to,
        notifier,
        eu_members=members,
        drafted_at=now,
        tz=settings.timezone,
    )


def deadline_calendar(ws: Workspace, incident_id: int, *, now: datetime | None = None) -> bytes:
    """The incident's dated obligations as iCalendar bytes (one event per deadline)."""
    now = now or datetime.now(UTC)
    view = show_incident(ws, incident_id, now=now)
    return deadlines_calendar(view.id, view.title, view.obligations, now=now)
