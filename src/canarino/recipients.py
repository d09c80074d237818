"""The recipient ledger: vendors, employees and systems that receive customer data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import models as m
from . import store
from .errors import InvalidInput, NotFound
from .workspace import Workspace

KINDS = ("vendor", "employee", "system")


@dataclass(frozen=True)
class RecipientInfo:
    """A recipient as shown to people."""

    id: int
    name: str
    kind: str
    parent: str | None


def add_recipient(ws: Workspace, name: str, kind: str, parent: str | None = None) -> RecipientInfo:
    """Register a recipient; an employee may name the vendor it works for as ``parent``."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a recipient name must have 1 to 200 characters")
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown recipient kind {kind!r}", hint=f"use one of {', '.join(KINDS)}"
        )
    with ws.db.session() as s:
        parent_row = store.get_recipient(s, parent) if parent else None
        if parent_row is not None and parent_row.kind != "vendor":
            raise InvalidInput(f"--parent {parent!r} is a {parent_row.kind}, not a vendor")
        row = m.Recipient(name=name, kind=kind, parent_id=parent_row.id if parent_row else None)
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise InvalidInput(f"a recipient named {name!r} already exists") from None
        return RecipientInfo(row.id, row.name, row.kind, parent_row.name if parent_row else None)


def list_recipients(ws: Workspace) -> list[RecipientInfo]:
    """All recipients, by name."""
    with ws.db.session() as s:
        rows = store.list_recipients(s)
        names = {r.id: r.name for r in rows}
        return [
            RecipientInfo(r.id, r.name, r.kind, names.get(r.parent_id) if r.parent_id else None)
            for r in rows
        ]


def current_recipients(ws: Workspace) -> list[RecipientInfo]:
    """:func:`list_recipients`, reused until data changes (callers must not change it)."""
    return ws.db.cached(("recipients",), lambda: list_recipients(ws))


def recipient_detail(ws: Workspace, recipient_id: int) -> dict[str, Any]:
    """Recipient ``recipient_id`` with its employer, staff and authorised senders."""
    with ws.db.session() as s:
        r = s.get(m.Recipient, recipient_id)
        if r is None:
            raise NotFound(f"no recipient {recipient_id}", hint="the overview lists them all")
        parent = s.get(m.Recipient, r.parent_id) if r.parent_id else None
        staff = s.scalars(
            select(m.Recipient).where(m.Recipient.parent_id == r.id).order_by(m.Recipient.name)
        ).all()
        senders = s.scalars(
            select(m.AllowedSender).where(m.AllowedSender.recipient_id == r.id)
        ).all()
        return {
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "parent": {"id": parent.id, "name": parent.name} if parent else None,
            "staff": [{"id": e.id, "name": e.name, "kind": e.kind} for e in staff],
            "allowed_senders": [{"kind": a.kind, "value": a.value} for a in senders],
            "created_at": r.created_at.isoformat(timespec="seconds"),
        }
