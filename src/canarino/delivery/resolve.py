"""Notices in doubt: listed when a run stopped mid-send, settled by a person's decision."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update

from .. import models as m
from .. import store
from ..errors import InvalidInput
from ..workspace import Workspace
from .outbox import QUEUED, SENT, _append_event, _event, _in_doubt, _now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InDoubtNotice:
    """A notice a run left in ``sending``: the relay may or may not have it."""

    notice_id: int
    channel: str
    message_id: str
    reference: str | None
    attempts: int
    lease_until: datetime | None
    last_error: str | None


def in_doubt_notices(
    ws: Workspace, incident_id: int, *, now: datetime | None = None
) -> list[InDoubtNotice]:
    """Notices left in ``sending`` whose lease has expired: their delivery is uncertain."""
    now = _now(now)
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        rows = s.execute(
            select(
                m.Notice.id,
                m.Notice.channel,
                m.Notice.message_id,
                m.Notice.reference,
                m.Notice.attempts,
                m.Notice.lease_until,
                m.Notice.last_error,
            )
            .where(m.Notice.incident_id == incident_id, _in_doubt(now))
            .order_by(m.Notice.id)
        ).all()
    return [InDoubtNotice(*row) for row in rows]


def resolve_in_doubt(
    ws: Workspace,
    incident_id: int,
    action: Literal["resend", "mark_sent"],
    *,
    notice_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Settle notices in doubt by a person's decision; return how many were settled.

    ``resend`` queues them again under the same Message-ID (a receiver that already has
    the message can recognise the duplicate); ``mark_sent`` records that the relay's log
    shows it accepted them. The decision is kept in the notice's history.
    """
    if action not in ("resend", "mark_sent"):
        raise InvalidInput(f"unknown resolution {action!r}", hint="use resend or mark_sent")
    now = _now(now)
    doubtful = {n.notice_id: n for n in in_doubt_notices(ws, incident_id, now=now)}
    chosen = list(doubtful) if notice_ids is None else list(notice_ids)
    stray = [i for i in chosen if i not in doubtful]
    if stray:
        raise InvalidInput(
            f"notices {', '.join(map(str, stray))} are not in doubt",
            hint="list them with in_doubt_notices / 'canarino notices in-doubt'",
        )
    with ws.db.engine.begin() as conn:
        for nid in chosen:
            values: dict[str, Any] = {"lease_until": None, "lease_owner": None, "updated_at": now}
            if action == "resend":
                values["state"] = QUEUED
            else:
                values.update(state=SENT, sent_at=now)
            conn.execute(
                update(m.Notice).where(m.Notice.id == nid, _in_doubt(now)).values(**values)
            )
            _append_event(
                conn,
                nid,
                _event("in_doubt_resolved", now, resolution=action, error=doubtful[nid].last_error),
            )
    log.info("resolved %d notices in doubt of incident %d: %s", len(chosen), incident_id, action)
    return len(chosen)
