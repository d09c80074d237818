"""The recipient ledger: vendors, employees and systems that receive customer data."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from . import models as m
from . import store
from .errors import InvalidInput
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
