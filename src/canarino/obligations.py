"""Obligations: what the law requires for an incident, by when. Pure.

For now one rule, GDPR Art. 33(1): notify the supervisory authority without undue delay
and, where feasible, within 72 hours of becoming aware of a personal data breach.
The rules-as-data engine replaces this table without changing the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Obligation:
    """One duty, with the rule that creates it and the facts that date it."""

    rule_id: str
    duty: str
    citation: str
    source_url: str
    anchor: str
    anchor_at: datetime
    due_at: datetime

    def remaining(self, now: datetime) -> timedelta:
        """Time left until the deadline (negative once it has passed)."""
        return self.due_at - now

    def as_dict(self, now: datetime, tz: str = "UTC") -> dict[str, str | float]:
        """JSON-ready form with the deadline in UTC and in ``tz``."""
        return {
            "rule_id": self.rule_id,
            "duty": self.duty,
            "citation": self.citation,
            "source_url": self.source_url,
            "anchor": self.anchor,
            "anchor_at": self.anchor_at.isoformat(timespec="seconds"),
            "due_at": self.due_at.isoformat(timespec="seconds"),
            "due_local": self.due_at.astimezone(ZoneInfo(tz)).isoformat(timespec="minutes"),
            "remaining_hours": round(self.remaining(now).total_seconds() / 3600, 2),
        }


def gdpr_authority_notice(aware_at: datetime) -> Obligation:
    """GDPR Art. 33(1): the supervisory authority, 72 hours from awareness."""
    return Obligation(
        rule_id="eu.gdpr.art33.authority",
        duty="notify the competent supervisory authority (Italy: Garante per la protezione "
        "dei dati personali) unless the breach is unlikely to result in a risk",
        citation="Regulation (EU) 2016/679, Art. 33(1)",
        source_url="https://eur-lex.europa.eu/eli/reg/2016/679/oj",
        anchor="aware",
        anchor_at=aware_at,
        due_at=aware_at + timedelta(hours=72),
    )


def format_remaining(delta: timedelta) -> str:
    """``2d 5h 03m left`` or ``overdue by 4h 10m``."""
    seconds = int(delta.total_seconds())
    late = seconds < 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    text = (f"{days}d " if days else "") + f"{hours}h {minutes:02d}m"
    return f"overdue by {text}" if late else f"{text} left"
