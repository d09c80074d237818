"""The audit log: who viewed, revealed, exported or changed what, when and from where.

Personal data is shown masked (``m•••@e•••.it``) unless a person explicitly asks to
reveal it, and that request is logged too. Entries never hold the personal data itself,
only what was looked at (an incident, a page of people, one customer number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from . import models as m
from .workspace import Workspace

DOT = "•••"
# What each action means, for the audit page and the API documentation.
ACTIONS = {
    "view": "looked at personal data, masked",
    "reveal": "asked to see personal data unmasked",
    "export": "downloaded personal data",
    "change": "changed data or settings",
    "send": "sent notices",
    "sign_in": "signed in",
    "sign_in_failed": "a sign-in was refused",
    "sign_out": "signed out",
}


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    address: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "at": self.at.isoformat(timespec="seconds"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "address": self.address,
        }


def record(
    ws: Workspace,
    actor: str,
    action: str,
    target: str,
    *,
    detail: Mapping[str, Any] | None = None,
    address: str | None = None,
) -> None:
    """Append one entry; ``detail`` must not hold personal data (ids and counts only)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    with ws.db.session() as s:
        s.add(
            m.AuditEvent(
                actor=actor[:100],
                action=action,
                target=target[:200],
                detail=dict(detail or {}),
                address=(address or None) and address[:64],
            )
        )


def list_events(
    ws: Workspace,
    *,
    limit: int = 50,
    offset: int = 0,
    actor: str | None = None,
    action: str | None = None,
) -> tuple[int, list[AuditEntry]]:
    """A page of the log, newest first, with the total number of matching entries."""
    query = select(m.AuditEvent)
    if actor:
        query = query.where(m.AuditEvent.actor == actor)
    if action:
        query = query.where(m.AuditEvent.action == action)
    with ws.db.session() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = s.scalars(query.order_by(m.AuditEvent.id.desc()).limit(limit).offset(offset))
        return total, [
            AuditEntry(e.id, e.at, e.actor, e.action, e.target, dict(e.detail), e.address)
            for e in rows
        ]


# --- masking -------------------------------------------------------------------------------


def mask_text(value: str) -> str:
    """Keep the first character of each word: ``Mario Rossi`` → ``M••• R•••``."""
    return " ".join(w[0] + DOT for w in value.split() if w)


def mask_email(value: str) -> str:
    """``mario.rossi@example.it`` → ``m•••@e•••.it``."""
    local, at, domain = value.rpartition("@")
    if not at:
        return mask_text(value)
    host, dot, tld = domain.rpartition(".")
    masked_domain = f"{host[:1]}{DOT}.{tld}" if dot else f"{domain[:1]}{DOT}"
    return f"{local[:1]}{DOT}@{masked_domain}"


def mask_phone(value: str) -> str:
    """``+393471234567`` → ``+39•••67``: country code and the last two digits."""
    digits = value.strip()
    if len(digits) <= 5:
        return DOT
    head = digits[:3] if digits.startswith("+") else digits[:1]
    return f"{head}{DOT}{digits[-2:]}"


def mask_value(field: str, value: str) -> str:
    """Mask one field by its kind; country and language stay readable."""
    if not value:
        return ""
    if field in ("country", "language"):
        return value
    if field == "email":
        return mask_email(value)
    if field == "phone":
        return mask_phone(value)
    return mask_text(value)


def mask_record(record: Mapping[str, str]) -> dict[str, str]:
    """Every field of a customer record masked by :func:`mask_value`."""
    return {k: mask_value(k, v) for k, v in record.items()}
