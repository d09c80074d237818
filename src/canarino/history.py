"""An incident's history: every assessment of its duties, kept with the reason it was made.

The schema has no column for a duty's state or for facts added after opening, so each
row of ``assessments`` holds a JSON list: one ``{"kind": "facts", ...}`` entry (the facts
recorded so far) and one ``{"kind": "obligation", ...}`` entry per duty (key, due date,
status, done time, note, verification). The latest row is the current state; earlier
rows are the history. A duty done stays in the record even when later facts drop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .obligations import Obligation
from .workspace import Workspace

if TYPE_CHECKING:
    from .incidents import IncidentView

HISTORY_REASON_MAX = 300


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded assessment: why it was made, the facts then, and each duty's state."""

    id: int
    computed_at: datetime
    reason: str
    facts: dict[str, Any]
    obligations: list[dict[str, Any]]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "computed_at": self.computed_at.isoformat(timespec="seconds"),
            "reason": self.reason,
            "facts": self.facts,
            "obligations": self.obligations,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second, or ``None``."""
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def parse_time(value: Any) -> datetime | None:
    """The datetime of an ISO 8601 string, ``None`` for anything else."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def latest_assessment(s: Session, incident_id: int) -> m.Assessment | None:
    """The newest assessment row of an incident, if any."""
    return s.scalar(
        select(m.Assessment)
        .where(m.Assessment.incident_id == incident_id)
        .order_by(m.Assessment.id.desc())
        .limit(1)
    )


def split_entries(entries: list[Any] | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The facts entry and the obligation entries (by key) of one assessment row."""
    facts: dict[str, Any] = {}
    duties: dict[str, dict[str, Any]] = {}
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("kind") == "facts":
            facts = dict(entry.get("facts") or {})
        elif entry.get("kind") == "obligation" and isinstance(entry.get("key"), str):
            duties[entry["key"]] = entry
    return facts, duties


def duty_record(o: Obligation) -> dict[str, Any]:
    """The JSON entry of one duty in an assessment row."""
    return {
        "kind": "obligation",
        "key": o.key,
        "rule_id": o.rule_id,
        "jurisdiction": o.jurisdiction,
        "title": o.title,
        "recipient": o.recipient,
        "authority": o.authority.name if o.authority else None,
        "due_at": iso_utc(o.due_at),
        "citation": o.citation,
        "verification": o.verification,
        "status": o.status,
        "done_at": iso_utc(o.done_at),
        "status_note": o.status_note,
        "owed": True,
    }


def with_status(o: Obligation, stored: dict[str, Any] | None) -> Obligation:
    """The duty with the state recorded for it (``done`` stays done)."""
    if not stored or stored.get("status") != "done":
        return o
    return replace(
        o,
        status="done",
        done_at=parse_time(stored.get("done_at")),
        status_note=stored.get("status_note", ""),
    )


def save_assessment(
    s: Session, incident_id: int, view: IncidentView, reason: str, now: datetime
) -> m.Assessment:
    """Record the view's duties and facts as a new assessment row, with its reason."""
    previous = latest_assessment(s, incident_id)
    _, before = split_entries(previous.obligations if previous else None)
    entries: list[dict[str, Any]] = [{"kind": "facts", "facts": view.facts}]
    current = {o.key for o in view.obligations}
    entries += [duty_record(o) for o in view.obligations]
    # A duty already done stays in the record even when new facts no longer require it.
    for key, old in before.items():
        if key not in current and old.get("status") == "done":
            entries.append({**old, "owed": False})
    row = m.Assessment(
        incident_id=incident_id,
        computed_at=now,
        reason=reason.strip()[:HISTORY_REASON_MAX],
        obligations=entries,
    )
    s.add(row)
    s.flush()
    return row


def incident_history(ws: Workspace, incident_id: int) -> list[HistoryEntry]:
    """Every recorded assessment of an incident, oldest first, with what changed each time."""
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        rows = s.scalars(
            select(m.Assessment)
            .where(m.Assessment.incident_id == incident_id)
            .order_by(m.Assessment.id)
        ).all()
        entries: list[HistoryEntry] = []
        before: dict[str, dict[str, Any]] = {}
        for row in rows:
            facts, duties = split_entries(row.obligations)
            owed = {k: v for k, v in duties.items() if v.get("owed", True)}
            changed = [
                key
                for key, entry in owed.items()
                if key in before
                and (entry.get("due_at"), entry.get("status"))
                != (before[key].get("due_at"), before[key].get("status"))
            ]
            entries.append(
                HistoryEntry(
                    row.id,
                    row.computed_at,
                    row.reason,
                    facts,
                    list(duties.values()),
                    added=sorted(set(owed) - set(before)),
                    removed=sorted(set(before) - set(owed)),
                    changed=sorted(changed),
                )
            )
            before = owed
    return entries
