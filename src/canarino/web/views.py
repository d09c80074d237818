"""Read-only views the web shows that the CLI has no command for.

Share ledger pages, recent sightings, and pages of an incident's affected people
(masked unless revealed).

Each returns plain dataclasses; nothing here says which records are canaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select

from .. import audit, store
from .. import models as m
from ..customers import load_customers
from ..errors import NotFound
from ..workspace import Workspace

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of a longer list, with the total count."""

    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class ShareView:
    """One share as the ledger recorded it."""

    id: int
    recipient: str
    recipient_id: int
    created_at: datetime
    fields: list[str]
    customer_filter: str
    rows: int
    export_sha256: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat(timespec="seconds")
        return data


@dataclass(frozen=True)
class SightingView:
    """A contact with a monitored address or number; the contact itself is never shown."""

    id: int
    seen_at: datetime
    channel: str
    kind: str
    strong: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["seen_at"] = self.seen_at.isoformat(timespec="seconds")
        return data


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


def _share(row: m.Share, recipient: m.Recipient) -> ShareView:
    return ShareView(
        row.id,
        recipient.name,
        recipient.id,
        row.created_at,
        list(row.fields),
        row.customer_filter,
        row.customer_count + row.canary_count,
        row.export_sha256,
    )


def list_shares(
    ws: Workspace, *, limit: int = 50, offset: int = 0, recipient_id: int | None = None
) -> Page[ShareView]:
    """Shares, newest first, optionally of one recipient."""
    query = select(m.Share, m.Recipient).join(m.Recipient, m.Recipient.id == m.Share.recipient_id)
    if recipient_id is not None:
        query = query.where(m.Share.recipient_id == recipient_id)
    with ws.db.session() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = s.execute(query.order_by(m.Share.id.desc()).limit(limit).offset(offset)).all()
        return Page([_share(sh, r) for sh, r in rows], total, limit, offset)


def get_share(ws: Workspace, share_id: int) -> ShareView:
    """Share ``share_id``."""
    with ws.db.session() as s:
        row = s.execute(
            select(m.Share, m.Recipient)
            .join(m.Recipient, m.Recipient.id == m.Share.recipient_id)
            .where(m.Share.id == share_id)
        ).first()
        if row is None:
            raise NotFound(f"no share {share_id}", hint="the overview lists every share")
        return _share(*row)


def get_recipient(ws: Workspace, recipient_id: int) -> dict[str, Any]:
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


def recent_sightings(ws: Workspace, *, limit: int = 20, offset: int = 0) -> Page[SightingView]:
    """Sightings, newest first, classified as evidence, expected use or not a canary."""
    with ws.db.session() as s:
        total = s.scalar(select(func.count()).select_from(m.Sighting)) or 0
        rows = s.scalars(
            select(m.Sighting).order_by(m.Sighting.seen_at.desc()).limit(limit).offset(offset)
        ).all()
        items = [
            SightingView(
                r.id,
                r.seen_at,
                r.channel,
                "not_canary"
                if r.canary_id is None
                else ("expected_use" if r.expected_use else "evidence"),
                r.strong,
            )
            for r in rows
        ]
    return Page(items, total, limit, offset)


def incident_people(
    ws: Workspace, incident_id: int, *, limit: int = 50, offset: int = 0, reveal: bool = False
) -> Page[PersonView]:
    """A page of an incident's affected people; contact data masked unless ``reveal``."""
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
        shown = {
            "name": name,
            "email": rec.get("email", ""),
            "phone": rec.get("phone", ""),
        }
        if not reveal:
            shown = {
                "name": audit.mask_text(name),
                "email": audit.mask_email(shown["email"]) if shown["email"] else "",
                "phone": audit.mask_phone(shown["phone"]) if shown["phone"] else "",
            }
        people.append(
            PersonView(
                cid,
                shown["name"],
                shown["email"],
                shown["phone"],
                rec.get("country", ""),
                [f for f in fields_text.split(",") if f],
                reveal,
            )
        )
    return Page(people, total, limit, offset)
