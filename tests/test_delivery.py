from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.smtp import Envelope
from sqlalchemy import select, update

from canarino import models as m
from canarino.customers import import_customers, load_customers
from canarino.delivery import (
    NOTICE_CONTEXT,
    notice_states,
    prepare_notices,
    send_notices,
)
from canarino.errors import DeliveryError, NotFound
from canarino.fields import FIELD_NAMES, label
from canarino.incidents import open_incident
from canarino.recipients import add_recipient
from canarino.shares import create_share
from canarino.testing import SmtpSink, make_customers, make_dump, write_customers_csv
from canarino.trace import run_trace
from canarino.workspace import Workspace, init_workspace


@dataclass
class Case:
    ws: Workspace
    incident_id: int
    people: int
    with_email: int


@pytest.fixture
def case(tmp_path: Path) -> Iterator[Case]:
    """An incident on a leaked share; every third customer has no e-mail address."""
    ws = init_workspace(
        tmp_path / "ws", mail_domains=["canary-mail.it"], phone_ranges=["+39347555"]
    )
    customers = make_customers(150, seed=5)
    for i, c in enumerate(customers):
        if i % 3 == 0:
            c["email"] = ""
    report = import_customers(ws, write_customers_csv(tmp_path / "clienti.csv", customers))
    assert report.imported == 150
    add_recipient(ws, "Vendor A", "vendor")
    share = create_share(ws, "Vendor A", "first_name,last_name,email,phone", tmp_path / "a.csv")
    dump = tmp_path / "dump.csv"
    make_dump(share.path, dump, fraction=0.2, seed=1)
    trace = run_trace(ws, dump)
    incident = open_incident(ws, trace.trace_id)
    with ws.db.session() as s:
        ids = list(
            s.scalars(
                select(m.IncidentPerson.customer_id).where(
                    m.IncidentPerson.incident_id == incident.id
                )
            )
        )
    records = load_customers(ws, ids)
    with_email = sum(1 for r in records.values() if r.get("email"))
    assert 0 < with_email < len(ids)
    yield Case(ws, incident.id, len(ids), with_email)
    ws.close()


class RecordingSink(SmtpSink):
    """The loopback SMTP sink, able to answer MAIL FROM with a reply from a script."""

    mail_replies: list[str]

    def __enter__(self) -> RecordingSink:
        self.mail_replies = []
        super().__enter__()
        return self

    async def handle_MAIL(
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _notices(ws: Workspace, incident_id: int) -> list[m.Notice]:
    with ws.db.session() as s:
        return list(
            s.scalars(
                select(m.Notice).where(m.Notice.incident_id == incident_id).order_by(m.Notice.id)
            )
        )


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_prepare_makes_one_notice_per_person_with_email_and_counts_the_rest(case: Case) -> None:
    report = prepare_notices(case.ws, case.incident_id)
    assert report.prepared == case.with_email
    assert report.already_prepared == 0
    assert report.skipped == {"no email address": case.people - case.with_email}
    assert sum(report.by_language.values()) == case.with_email
    assert set(report.by_language) <= {"it", "en"}
    rows = _notices(case.ws, case.incident_id)
    assert len(rows) == case.with_email
    assert len({r.customer_id for r in rows}) == len(rows)
    assert {r.state for r in rows} == {"queued"}
    assert all(r.channel == "email" and r.attempts == 0 for r in rows)
    assert all(r.message_id == f"<{r.idempotency_key}@canary-mail.it>" for r in rows)
    assert notice_states(case.ws, case.incident_id) == {"queued": case.with_email}


def test_prepared_notice_is_sealed_and_lists_the_persons_exposed_fields(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    rows = _notices(case.ws, case.incident_id)
    with case.ws.db.session() as s:
        exposed = dict(
            s.execute(
                select(m.IncidentPerson.customer_id, m.IncidentPerson.fields).where(
                    m.IncidentPerson.incident_id == case.incident_id
                )
            ).all()
        )
    records = load_customers(case.ws, [r.customer_id for r in rows])
    for row in rows:
        record = records[row.customer_id]
        assert record["email"].encode() not in row.sealed
        payload = case.ws.vault.open(row.sealed, context=NOTICE_CONTEXT)
        assert payload["to"] == record["email"]
        fields = exposed[row.customer_id].split(",")
        listed = payload["text"].split("\n\n")[4]  # title, greeting, intro, what happened, data
        for name in FIELD_NAMES:
            assert (f"- {label(name, row.language)}\n" in listed + "\n") == (name in fields)
        assert record["last_name"] in payload["text"].split("\n\n")[1]


def test_language_follows_the_customer_and_falls_back_to_english(case: Case) -> None:
    report = prepare_notices(case.ws, case.incident_id)
    rows = _notices(case.ws, case.incident_id)
    with case.ws.db.session() as s:
        languages = dict(
            s.execute(
                select(m.Customer.id, m.Customer.language).where(
                    m.Customer.id.in_([r.customer_id for r in rows])
                )
            ).all()
        )
    fallbacks = 0
    for row in rows:
        wanted = languages[row.customer_id]
        if wanted in ("it", "en"):
            assert row.language == wanted
        else:
            assert row.language == "en"
            fallbacks += 1
    assert report.fallback == fallbacks
    assert report.by_language.get("it", 0) > 0


def test_preparing_twice_creates_no_duplicates(case: Case) -> None:
    first = prepare_notices(case.ws, case.incident_id)
    second = prepare_notices(case.ws, case.incident_id)
    assert second.prepared == 0
    assert second.already_prepared == first.prepared
    assert second.skipped == first.skipped
    assert len(_notices(case.ws, case.incident_id)) == first.prepared


def test_prepare_and_send_refuse_an_unknown_incident(case: Case) -> None:
    with pytest.raises(NotFound):
        prepare_notices(case.ws, 999)
    with pytest.raises(NotFound):
        send_notices(case.ws, 999, host="127.0.0.1", port=_free_port())
    with pytest.raises(NotFound):
        notice_states(case.ws, 999)


def test_send_delivers_every_notice_once_with_its_message_id(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    ticks: list[tuple[int, int]] = []
    report = send_notices(
        case.ws,
        case.incident_id,
        host=smtp.host,
        port=smtp.port,
        progress=lambda done, total: ticks.append((done, total)),
    )
    assert report.sent == case.with_email
    assert (report.failed, report.retry_later, report.in_doubt, report.already_sent) == (0, 0, 0, 0)
    assert ticks[-1] == (case.with_email, case.with_email)
    rows = _notices(case.ws, case.incident_id)
    assert {r.state for r in rows} == {"sent"}
    assert all(r.sent_at is not None and r.attempts == 1 for r in rows)
    assert len(smtp.messages) == case.with_email
    by_id = {_parse(msg.data)["Message-ID"]: msg for msg in smtp.messages}
    assert set(by_id) == {r.message_id for r in rows}
    for row in rows:
        payload = case.ws.vault.open(row.sealed, context=NOTICE_CONTEXT)
        received = by_id[row.message_id]
        assert received.recipients == [payload["to"]]
        assert received.mail_from == "privacy@canary-mail.it"
        msg = _parse(received.data)
        assert msg["To"] == payload["to"]
        assert msg["Subject"] == payload["subject"]
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["From"].addresses[0].addr_spec == "privacy@canary-mail.it"
        assert msg["Date"] is not None
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",))
        page = msg.get_body(("html",))
        assert text is not None and page is not None
        assert text.get_content().replace("\r\n", "\n") == payload["text"]
        assert page.get_content().replace("\r\n", "\n") == payload["html"]
    assert notice_states(case.ws, case.incident_id) == {"sent": case.with_email}


def test_second_send_delivers_nothing(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    delivered = len(smtp.messages)
    again = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert again.sent == 0
    assert again.already_sent == delivered == case.with_email
    assert len(smtp.messages) == delivered


def test_permanent_refusal_marks_only_that_notice_failed_without_the_address(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id)[0]
    address = case.ws.vault.open(victim.sealed, context=NOTICE_CONTEXT)["to"]
    smtp.reject[address.lower()] = f"550 5.1.1 <{address}>: no such user"
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert report.failed == 1
    assert report.sent == case.with_email - 1
    rows = {r.id: r for r in _notices(case.ws, case.incident_id)}
    failed = rows[victim.id]
    assert failed.state == "failed"
    assert failed.last_error is not None
    assert failed.last_error.startswith("550")
    assert "no such user" in failed.last_error
    assert address.lower() not in failed.last_error.lower()
    assert "@" not in failed.last_error
    assert all(r.state == "sent" for i, r in rows.items() if i != victim.id)
    assert all(address not in msg.recipients for msg in smtp.messages)


def test_temporary_refusal_keeps_the_notice_queued_for_a_later_run(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id)[1]
    address = case.ws.vault.open(victim.sealed, context=NOTICE_CONTEXT)["to"]
    smtp.reject[address.lower()] = "451 4.3.0 try again later"
    first = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert first.retry_later == 1 and first.sent == case.with_email - 1
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "queued" and row.attempts == 1
    assert row.last_error == "451 4.3.0 try again later"
    smtp.reject.clear()
    second = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert second.sent == 1 and second.already_sent == case.with_email - 1
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "sent" and row.attempts == 2 and row.last_error is None
    assert len(smtp.messages) == case.with_email


def test_connection_closed_by_the_server_is_reopened(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    # 421 makes the client drop the connection; the next notice needs a new one.
    smtp.mail_replies.append("421 4.7.0 too many messages, closing")
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert report.retry_later == 1
    assert report.sent == case.with_email - 1
    assert len(smtp.messages) == case.with_email - 1
    again = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert again.sent == 1
    assert notice_states(case.ws, case.incident_id) == {"sent": case.with_email}


def test_connection_refused_raises_and_leaves_every_notice_queued(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    port = _free_port()
    with pytest.raises(DeliveryError, match=rf"cannot connect to SMTP server 127\.0\.0\.1:{port}"):
        send_notices(case.ws, case.incident_id, host="127.0.0.1", port=port, timeout=5)
    rows = _notices(case.ws, case.incident_id)
    assert {r.state for r in rows} == {"queued"}
    assert all(r.attempts == 0 for r in rows)


def test_notice_left_sending_by_a_crash_is_reported_not_resent(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    stuck = _notices(case.ws, case.incident_id)[0]
    with case.ws.db.session() as s:
        s.execute(
            update(m.Notice).where(m.Notice.id == stuck.id).values(state="sending", attempts=1)
        )
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert report.in_doubt == 1
    assert report.sent == case.with_email - 1
    assert stuck.message_id not in {_parse(msg.data)["Message-ID"] for msg in smtp.messages}
    assert notice_states(case.ws, case.incident_id) == {
        "sending": 1,
        "sent": case.with_email - 1,
    }


def test_permanent_refusal_is_not_retried(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id)[0]
    address = case.ws.vault.open(victim.sealed, context=NOTICE_CONTEXT)["to"]
    smtp.reject[address.lower()] = "550 5.1.1 no such user"
    for _ in range(3):
        send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "failed" and row.attempts == 1
    assert len(smtp.messages) == case.with_email - 1


def test_temporary_refusal_gives_up_after_three_attempts(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id)[0]
    address = case.ws.vault.open(victim.sealed, context=NOTICE_CONTEXT)["to"]
    smtp.reject[address.lower()] = "451 4.3.0 try later"
    reports = [
        send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port) for _ in range(4)
    ]
    assert [r.retry_later for r in reports] == [1, 1, 0, 0] and reports[2].failed == 1
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "failed" and row.attempts == 3 and "451" in (row.last_error or "")


def test_nothing_to_send_needs_no_server(case: Case) -> None:
    report = send_notices(case.ws, case.incident_id, host="127.0.0.1", port=_free_port())
    assert report.sent == 0 and report.already_sent == 0
    assert notice_states(case.ws, case.incident_id) == {}
