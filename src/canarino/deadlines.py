"""An incident's deadlines as an iCalendar file, for the calendars of the response team. Pure.

One VEVENT per obligation with a fixed deadline, at the deadline in the authority's time
zone (with its VTIMEZONE), two alarms (a day and two hours before), and a UID that stays
the same across exports so a re-import updates events instead of duplicating them. A duty
whose rule is unverified says so in its title; a duty done carries no alarm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, vText

from .obligations import Obligation

PRODID = "-//canarino//incident deadlines//EN"
ALARMS = (timedelta(days=1), timedelta(hours=2))


def event_uid(incident_id: int, obligation: Obligation) -> str:
    """A UID stable for one duty of one incident (same rule, same jurisdiction)."""
    digest = hashlib.sha256(f"{incident_id}\0{obligation.key}".encode()).hexdigest()[:24]
    return f"incident-{incident_id}-{digest}@canarino"


def _summary(obligation: Obligation, incident_id: int) -> str:
    marks = []
    if obligation.status == "done":
        marks.append("DONE")
    if obligation.unverified:
        marks.append("UNVERIFIED")
    prefix = "".join(f"[{m}] " for m in marks)
    return (
        f"{prefix}#{incident_id} {obligation.title or obligation.duty} [{obligation.jurisdiction}]"
    )


def _description(obligation: Obligation) -> str:
    lines = [obligation.duty[:1].upper() + obligation.duty[1:] + "."]
    if obligation.authority is not None:
        lines.append(f"To: {obligation.authority.name}")
        if obligation.authority.portal:
            lines.append(f"Portal: {obligation.authority.portal}")
    lines.append(f"Citation: {obligation.citation} ({obligation.source_url})")
    lines.append(f"Verification: {obligation.verification}")
    if obligation.unverified and obligation.verification_note:
        lines.append(f"To check: {obligation.verification_note}")
    lines += [f"- {line}" for line in obligation.computation]
    if obligation.status == "done" and obligation.done_at is not None:
        lines.append(f"Done on {obligation.done_at.isoformat(timespec='minutes')}")
    return "\n".join(lines)


def deadlines_calendar(
    incident_id: int, title: str, obligations: Iterable[Obligation], *, now: datetime
) -> bytes:
    """The iCalendar bytes for an incident's dated obligations."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"Incident #{incident_id} deadlines")
    for obligation in obligations:
        if obligation.due_at is None:
            continue
        due = obligation.due_at.astimezone(ZoneInfo(obligation.timezone))
        event = Event()
        event.add("uid", event_uid(incident_id, obligation))
        event.add("dtstamp", now)
        event.add("dtstart", due)
        event.add("summary", _summary(obligation, incident_id))
        event.add("description", _description(obligation))
        event.add("categories", [obligation.recipient or "duty"])
        event.add("url", obligation.source_url)
        event.add("status", "CONFIRMED")
        # Titles are typed by people: one line, escaped as text, never raw content lines.
        event.add("x-canarino-incident", vText(f"#{incident_id} {' '.join(title.split())}"))
        if obligation.status != "done":
            for before in ALARMS:
                alarm = Alarm()
                alarm.add("action", "DISPLAY")
                alarm.add("description", _summary(obligation, incident_id))
                alarm.add("trigger", -before)
                event.add_component(alarm)
        cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()
