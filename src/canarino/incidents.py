"""Incidents: the response case opened on a trace, with its affected people and clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, func, insert, literal, select

from . import models as m
from . import store
from .errors import InvalidInput
from .fields import FIELD_NAMES
from .obligations import Obligation, gdpr_authority_notice
from .workspace import Workspace


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
    by_field: dict[str, int] = field(default_factory=dict)
    by_country: dict[str, int] = field(default_factory=dict)
    obligations: list[Obligation] = field(default_factory=list)
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
            "by_field": self.by_field,
            "by_country": self.by_country,
            "obligations": [o.as_dict(now, tz) for o in self.obligations],
            "notices": self.notices,
        }


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone, e.g. 2026-03-02T10:00+01:00")
    return value.astimezone(UTC)


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
        incident = m.Incident(
            title=title or f"Leak traced in {trace.source_name}",
            trace_id=trace.id,
            aware_at=aware,
            occurred_at=occurred,
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
    return show_incident(ws, incident_id)


def show_incident(ws: Workspace, incident_id: int) -> IncidentView:
    """Load an incident with its counts, obligations and notice states."""
    with ws.db.session() as s:
        inc = store.get_incident(s, incident_id)
        by_field: Counter[str] = Counter()
        by_country: Counter[str] = Counter()
        people = 0
        query = (
            select(m.Customer.country, m.IncidentPerson.fields, func.count())
            .join(m.IncidentPerson, m.IncidentPerson.customer_id == m.Customer.id)
            .where(m.IncidentPerson.incident_id == inc.id)
            .group_by(m.Customer.country, m.IncidentPerson.fields)
        )
        for country, fields_text, count in s.execute(query):
            people += count
            by_country[country or "??"] += count
            for name in filter(None, fields_text.split(",")):
                by_field[name] += count
        notices = dict(
            s.execute(
                select(m.Notice.state, func.count())
                .where(m.Notice.incident_id == inc.id)
                .group_by(m.Notice.state)
            ).all()
        )
        order = {n: i for i, n in enumerate(FIELD_NAMES)}
        return IncidentView(
            inc.id,
            inc.title,
            inc.status,
            inc.trace_id,
            inc.aware_at,
            inc.occurred_at,
            inc.contained_at,
            people,
            dict(sorted(by_field.items(), key=lambda kv: order.get(kv[0], 99))),
            dict(by_country.most_common()),
            [gdpr_authority_notice(inc.aware_at)],
            notices,
        )


def list_incidents(ws: Workspace) -> list[IncidentView]:
    """Every incident, newest first."""
    with ws.db.session() as s:
        ids = s.scalars(select(m.Incident.id).order_by(m.Incident.id.desc())).all()
    return [show_incident(ws, i) for i in ids]
