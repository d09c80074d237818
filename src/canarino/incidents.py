"""Incidents: the response case opened on a trace, its affected people, risk and duties."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import holidays
from sqlalchemy import Integer, func, insert, literal, select, update
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .errors import InvalidInput
from .fields import FIELD_NAMES, category_of
from .obligations import RISK_LEVELS, IncidentFacts, Obligation, assess
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
        s.execute(
            insert(m.IncidentPerson).from_select(
                ["incident_id", "customer_id", "fields"],
                select(
                    literal(incident.id, Integer),
                    m.TraceCustomer.customer_id,
                    m.TraceCustomer.fields,
                ).where(m.TraceCustomer.trace_id == trace.id),
            )
        )
        incident_id = incident.id
    return show_incident(ws, incident_id, now=now)


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
    return show_incident(ws, incident_id)


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
    """Load an incident with its counts, obligations under the rule files, and notices."""
    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        inc = store.get_incident(s, incident_id)
        by_field: Counter[str] = Counter()
        by_country: Counter[str] = Counter()
        by_code: Counter[str] = Counter()
        people = 0
        query = (
            select(m.Customer.country, m.Customer.region, m.IncidentPerson.fields, func.count())
            .join(m.IncidentPerson, m.IncidentPerson.customer_id == m.Customer.id)
            .where(m.IncidentPerson.incident_id == inc.id)
            .group_by(m.Customer.country, m.Customer.region, m.IncidentPerson.fields)
        )
        for country, region, fields_text, count in s.execute(query):
            people += count
            by_country[country or "??"] += count
            by_code[residence(country, region) or "unknown"] += count
            for name in filter(None, fields_text.split(",")):
                by_field[name] += count
        notices = _notice_states(s, inc.id)
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
            notices=notices,
        )
    affected = {code: n for code, n in by_code.items() if code != "unknown"}
    if affected:
        facts = IncidentFacts(
            categories=frozenset(category_of(f) for f in by_field),
            affected=affected,
            aware=view.aware_at,
            occurred=view.occurred_at,
            contained=view.contained_at,
            risk=view.risk,
            risk_explanation=view.risk_reason,
            role=ws.settings.role,
            sectors=frozenset(ws.settings.sectors),
            establishment=ws.settings.establishment,
        )
        result = assess(facts, now=now)
        view.obligations = sorted(
            result.obligations,
            key=lambda o: (o.due_at is None, o.due_at or now, o.rule_id),
        )
        view.uncovered = list(result.uncovered)
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
