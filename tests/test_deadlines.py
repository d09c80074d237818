from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from icalendar import Calendar

from canarino.deadlines import deadlines_calendar, event_uid
from canarino.obligations import IncidentFacts, evaluate

AWARE = datetime(2026, 3, 27, 10, 0, tzinfo=UTC)


def obligations() -> list:
    facts = IncidentFacts(
        categories=frozenset({"identity", "government_id"}),
        affected={"IT": 40, "US-CA": 600, "US-MA": 3},
        aware=AWARE,
        discovered=AWARE - timedelta(hours=5),
        risk="high_risk",
        establishment="IT",
    )
    return evaluate(facts, now=AWARE)


def events(data: bytes) -> list:
    return [c for c in Calendar.from_ical(data).walk() if c.name == "VEVENT"]


def test_one_event_per_dated_obligation_at_the_deadline_in_the_authoritys_zone() -> None:
    obs = obligations()
    dated = [o for o in obs if o.due_at is not None]
    assert len(dated) < len(obs), "duties without a fixed deadline get no event"
    found = events(deadlines_calendar(7, "Vendor leak", obs, now=AWARE))
    assert len(found) == len(dated)
    by_uid = {str(e["UID"]): e for e in found}
    for o in dated:
        event = by_uid[event_uid(7, o)]
        start = event.decoded("DTSTART")
        assert start == o.due_at
        assert str(start.tzinfo) == o.timezone
    garante = by_uid[event_uid(7, next(o for o in dated if o.jurisdiction == "IT"))]
    # 72 hours after 10:00 UTC on 27 March crosses the switch to summer time in Rome.
    assert garante.decoded("DTSTART").isoformat() == "2026-03-30T12:00:00+02:00"
    assert "Garante" in str(garante["DESCRIPTION"]) and "servizi.gpdp.it" in str(
        garante["DESCRIPTION"]
    )


def test_calendar_carries_time_zones_and_alarms() -> None:
    data = deadlines_calendar(7, "Vendor leak", obligations(), now=AWARE)
    cal = Calendar.from_ical(data)
    zones = {str(z["TZID"]) for z in cal.walk("VTIMEZONE")}
    assert {"Europe/Rome", "America/Los_Angeles"} <= zones
    for event in events(data):
        triggers = sorted(a.decoded("TRIGGER") for a in event.walk("VALARM"))
        assert triggers == [timedelta(days=-1), timedelta(hours=-2)]


def test_uids_are_stable_across_exports_and_differ_between_incidents() -> None:
    obs = obligations()
    first = [str(e["UID"]) for e in events(deadlines_calendar(7, "t", obs, now=AWARE))]
    later = AWARE + timedelta(hours=3)
    second = [str(e["UID"]) for e in events(deadlines_calendar(7, "t", obs, now=later))]
    assert first == second and len(set(first)) == len(first)
    other = {str(e["UID"]) for e in events(deadlines_calendar(8, "t", obs, now=AWARE))}
    assert not other & set(first)


def test_unverified_and_done_duties_are_marked_and_done_ones_have_no_alarm() -> None:
    obs = obligations()
    ca = next(o for o in obs if o.rule_id == "us-ca.ag.2026")
    assert ca.unverified
    done = replace(ca, status="done", done_at=AWARE)
    found = {str(e["UID"]): e for e in events(deadlines_calendar(7, "t", [ca, done], now=AWARE))}
    event = found[event_uid(7, done)]
    assert str(event["SUMMARY"]).startswith("[DONE] [UNVERIFIED] #7")
    assert not event.walk("VALARM")
    assert "To check:" in str(event["DESCRIPTION"])


def test_hostile_title_cannot_break_the_file_structure() -> None:
    title = "x\r\nEND:VCALENDAR\r\nBEGIN:VEVENT"
    data = deadlines_calendar(7, title, obligations(), now=AWARE)
    assert data.splitlines().count(b"END:VCALENDAR") == 1
    assert len(events(data)) == len([o for o in obligations() if o.due_at])
