"""Shared helpers of the delivery tests: a small incident, a scriptable SMTP sink."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import Envelope
from sqlalchemy import insert, select

from canarino import models as m
from canarino.delivery import NOTICE_CONTEXT
from canarino.testing import SmtpSink
from canarino.workspace import Workspace

FIELDS = "first_name,last_name,email,phone"
PEOPLE = 45  # affected: every third without e-mail, every fifteenth without any address


@dataclass
class Case:
    ws: Workspace
    incident_id: int
    people: int
    emails: int
    letters: int
    unreachable: int


def make_incident(ws: Workspace, customer_ids: list[int], fields: str = FIELDS) -> int:
    """An incident on ``customer_ids`` written straight into the tables (no trace needed)."""
    with ws.db.session() as s:
        incident = m.Incident(
            title="Leak of a test export",
            aware_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
            occurred_at=datetime(2026, 2, 8, 9, 0, tzinfo=UTC),
        )
        s.add(incident)
        s.flush()
        s.execute(
            insert(m.IncidentPerson),
            [
                {"incident_id": incident.id, "customer_id": c, "fields": fields}
                for c in customer_ids
            ],
        )
        return incident.id


class RecordingSink(SmtpSink):
    """The loopback SMTP sink, scriptable: replies per command, dropped connections."""

    mail_replies: list[str]
    rcpt_script: dict[str, list[str]]
    drop_during_data: set[str]

    def __enter__(self) -> RecordingSink:
        self.mail_replies, self.rcpt_script, self.drop_during_data = [], {}, set()
        super().__enter__()
        return self

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        script = self.rcpt_script.get(address.lower())
        if script:
            return script.pop(0)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        to = {r.lower() for r in envelope.rcpt_tos}
        if to & self.drop_during_data:
            self.drop_during_data -= to
            # The message arrived, but the connection dies before the 250 reply.
            server.transport.close()
        return reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def notices_of(ws: Workspace, incident_id: int, channel: str | None = None) -> list[m.Notice]:
    with ws.db.session() as s:
        query = select(m.Notice).where(m.Notice.incident_id == incident_id)
        if channel:
            query = query.where(m.Notice.channel == channel)
        return list(s.scalars(query.order_by(m.Notice.id)))


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def payload(ws: Workspace, row: m.Notice) -> dict[str, Any]:
    return ws.vault.open(row.sealed, context=NOTICE_CONTEXT)


def stored_mime(ws: Workspace, row: m.Notice) -> EmailMessage:
    import base64
    import zlib

    return parse(zlib.decompress(base64.b64decode(payload(ws, row)["mime"])))


def plain(ws: Workspace, row: m.Notice) -> str:
    body = stored_mime(ws, row).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def address_of(ws: Workspace, row: m.Notice) -> str:
    return str(payload(ws, row)["to"])


def assert_no_personal_data_stored_in_clear(ws: Workspace, incident_id: int) -> None:
    for row in notices_of(ws, incident_id):
        for text in (row.last_error, row.note, json.dumps(row.events or [])):
            assert text is None or "@" not in text, text


def fast(**kw: Any) -> dict[str, Any]:
    return {"retry_backoff": 0.02, **kw}
