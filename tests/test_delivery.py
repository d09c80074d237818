from __future__ import annotations

import email
import email.policy
import itertools
import json
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from sqlalchemy import insert, select, update

from canarino import models as m
from canarino.customers import CUSTOMER_CONTEXT, import_customers, load_customers
from canarino.delivery import (
    NO_CHANNEL,
    NOTICE_CONTEXT,
    DkimKey,
    in_doubt_notices,
    notice_problems,
    notice_states,
    prepare_notices,
    print_letters,
    provider_of,
    record_bounces,
    resolve_in_doubt,
    send_notices,
)
from canarino.errors import DeliveryError, InvalidInput, NotFound
from canarino.fields import FIELD_NAMES
from canarino.notices import ContentRule, label, reference_token
from canarino.obligations import load_rules
from canarino.settings import load_settings
from canarino.testing import SmtpSink, make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

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


def _make_incident(ws: Workspace, customer_ids: list[int], fields: str = FIELDS) -> int:
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


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("delivery")
    ws = init_workspace(root / "ws", mail_domains=["canary-mail.it"], phone_ranges=["+39347555"])
    customers = make_customers(PEOPLE, seed=5)
    for i, c in enumerate(customers):
        if i % 3 == 0:
            c["email"] = ""
        if i % 15 == 0:
            c["address"] = ""
    assert import_customers(ws, write_customers_csv(root / "c.csv", customers)).imported == PEOPLE
    with ws.db.session() as s:
        ids = list(s.scalars(select(m.Customer.id).order_by(m.Customer.id)))
    _make_incident(ws, ids)
    ws.close()
    return root / "ws"


@pytest.fixture
def case(template: Path, tmp_path: Path) -> Iterator[Case]:
    shutil.copytree(template, tmp_path / "ws")
    ws = Workspace.open(load_settings(tmp_path / "ws"))
    yield Case(ws, 1, PEOPLE, emails=30, letters=12, unreachable=3)
    ws.close()


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


@pytest.fixture
def smtp() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _notices(ws: Workspace, incident_id: int, channel: str | None = None) -> list[m.Notice]:
    with ws.db.session() as s:
        query = select(m.Notice).where(m.Notice.incident_id == incident_id)
        if channel:
            query = query.where(m.Notice.channel == channel)
        return list(s.scalars(query.order_by(m.Notice.id)))


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _payload(ws: Workspace, row: m.Notice) -> dict[str, Any]:
    return ws.vault.open(row.sealed, context=NOTICE_CONTEXT)


def _stored_mime(ws: Workspace, row: m.Notice) -> EmailMessage:
    import base64
    import zlib

    return _parse(zlib.decompress(base64.b64decode(_payload(ws, row)["mime"])))


def _plain(ws: Workspace, row: m.Notice) -> str:
    body = _stored_mime(ws, row).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def _address_of(ws: Workspace, row: m.Notice) -> str:
    return str(_payload(ws, row)["to"])


def _assert_no_personal_data_stored_in_clear(ws: Workspace, incident_id: int) -> None:
    for row in _notices(ws, incident_id):
        for text in (row.last_error, row.note, json.dumps(row.events or [])):
            assert text is None or "@" not in text, text


def _fast(**kw: Any) -> dict[str, Any]:
    return {"retry_backoff": 0.02, **kw}


# --- prepare ---------------------------------------------------------------------------------


def test_prepare_makes_one_notice_per_person_and_channel_and_counts_the_rest(case: Case) -> None:
    report = prepare_notices(case.ws, case.incident_id)
    assert report.prepared == case.emails
    assert report.letters == case.letters and report.unreachable == case.unreachable
    assert report.skipped == {"no email address": case.letters + case.unreachable}
    assert report.already_prepared == 0
    assert sum(report.by_language.values()) == case.people
    assert set(report.readability) == set(report.by_language)
    for language, scores in report.readability.items():
        assert len(scores) == 1 and all(isinstance(v, float) for v in scores.values()), language
    rows = _notices(case.ws, case.incident_id)
    assert len(rows) == case.people
    assert Counter(r.channel for r in rows) == {
        "email": case.emails,
        "letter": case.letters,
        "none": case.unreachable,
    }
    assert len({r.customer_id for r in rows}) == case.people
    emails = [r for r in rows if r.channel == "email"]
    assert all(r.state == "queued" and r.attempts == 0 for r in emails)
    assert all(r.message_id == f"<{r.idempotency_key}@canary-mail.it>" for r in emails)
    assert all(r.route and r.content_sha256 and r.reference for r in emails)
    nobody = [r for r in rows if r.channel == "none"]
    assert all(r.state == "failed" and r.last_error == NO_CHANNEL for r in nobody)
    assert notice_states(case.ws, case.incident_id) == {
        "failed": case.unreachable,
        "queued": case.emails + case.letters,
    }
    reasons = {p.reason for p in notice_problems(case.ws, case.incident_id)}
    assert NO_CHANNEL in reasons and "instead of e-mail: no email address" in reasons
    _assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_prepared_email_is_sealed_and_lists_the_persons_exposed_fields(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    rows = _notices(case.ws, case.incident_id, "email")
    records = load_customers(case.ws, [r.customer_id for r in rows])
    for row in rows:
        record = records[row.customer_id]
        assert record["email"].encode() not in row.sealed
        assert _address_of(case.ws, row) == record["email"]
        msg = _stored_mime(case.ws, row)
        assert msg["Message-ID"] == row.message_id and msg["To"] == record["email"]
        assert msg["Date"] is None  # set when it is sent
        text = msg.get_body(("plain",))
        assert text is not None
        body = text.get_content().replace("\r\n", "\n")
        listed = [ln[2:] for ln in body.split("\n\n")[4].splitlines() if ln.startswith("- ")]
        assert listed == [label(f, row.language) for f in FIELDS.split(",")]
        assert record["last_name"] in body.split("\n\n")[1]
        for name in set(FIELD_NAMES) - set(FIELDS.split(",")):
            assert f"- {label(name, row.language)}\n" not in body


def test_language_follows_the_customer_and_a_missing_translation_is_noted(case: Case) -> None:
    with case.ws.db.session() as s:
        first = s.scalar(select(m.Notice.id).limit(1))  # none yet
        assert first is None
        s.execute(update(m.Customer).where(m.Customer.id.in_([2, 3])).values(language="pt"))
        languages = dict(s.execute(select(m.Customer.id, m.Customer.language)).all())
    report = prepare_notices(case.ws, case.incident_id)
    rows = {r.customer_id: r for r in _notices(case.ws, case.incident_id) if r.channel != "none"}
    for cid, row in rows.items():
        expected = "en" if languages[cid] == "pt" else languages[cid]
        assert row.language == expected
    assert report.fallback == 2
    assert report.fallback_reasons == {"no notice texts in 'pt'": 2}
    assert rows[2].note == "written in en: no notice texts in 'pt'"
    assert len(report.by_language) >= 3  # Italian plus other languages of the customer mix


def test_preparing_twice_creates_no_duplicates(case: Case) -> None:
    first = prepare_notices(case.ws, case.incident_id)
    second = prepare_notices(case.ws, case.incident_id)
    assert second.prepared == second.letters == second.unreachable == 0
    assert second.already_prepared == case.people
    assert len(_notices(case.ws, case.incident_id)) == first.prepared + first.letters + 3


def test_invalid_address_fails_with_its_reason_and_gets_a_letter(case: Case) -> None:
    with case.ws.db.session() as s:
        sealed = s.scalar(select(m.Customer.sealed).where(m.Customer.id == 2))
        assert sealed is not None
        record = case.ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
        record["email"] = "mario.rossi@@example..com"
        s.execute(
            update(m.Customer)
            .where(m.Customer.id == 2)
            .values(sealed=case.ws.vault.seal(record, context=CUSTOMER_CONTEXT))
        )
    report = prepare_notices(case.ws, case.incident_id)
    assert report.skipped["invalid e-mail address"] == 1
    rows = [r for r in _notices(case.ws, case.incident_id) if r.customer_id == 2]
    assert {(r.channel, r.state) for r in rows} == {("email", "failed"), ("letter", "queued")}
    failed = next(r for r in rows if r.channel == "email")
    assert failed.last_error is not None and failed.last_error.startswith("invalid e-mail address")
    assert "mario.rossi" not in failed.last_error and "example" not in failed.last_error
    assert "@" not in failed.last_error
    _assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_massachusetts_resident_is_told_without_nature_or_count(case: Case) -> None:
    with case.ws.db.session() as s:
        s.execute(
            update(m.Customer)
            .where(m.Customer.id == 2)
            .values(country="US", region="MA", language="en")
        )
    rule = next(r.rule for r in load_rules().rules if r.rule.id == "us-ma.individuals")
    rules = {
        "US-MA": ContentRule(frozenset(rule.required_content), frozenset(rule.forbidden_content))
    }
    report = prepare_notices(case.ws, case.incident_id, content_rules=rules, monitoring_months=18)
    assert report.omitted == {"nature_of_breach": 1, "number_affected": 1}
    assert report.missing == {}
    rows = {r.customer_id: r for r in _notices(case.ws, case.incident_id, "email")}
    ma, other = rows[2], rows[3]
    ma_text, other_text = (_plain(case.ws, row) for row in (ma, other))
    assert f": {PEOPLE}." in other_text  # the count, in the reader's language
    assert f": {PEOPLE}." not in ma_text and "Number of people affected" not in ma_text
    assert "found a copy" not in ma_text and "The copy contains" not in ma_text
    assert "right to get a police report" in ma_text and "security freeze" in ma_text
    assert "18 months of credit monitoring" in ma_text
    assert ma.note is not None and "US-MA" in ma.note and "nature_of_breach" in ma.note


# --- send ------------------------------------------------------------------------------------


def test_send_delivers_every_email_once_with_its_message_id(
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
    assert report.sent == case.emails
    assert (report.failed, report.retry_later, report.in_doubt, report.already_sent) == (0, 0, 0, 0)
    assert report.problems == {}
    assert ticks[-1] == (case.emails, case.emails) and len(ticks) == case.emails
    rows = _notices(case.ws, case.incident_id, "email")
    assert {r.state for r in rows} == {"sent"}
    assert all(r.sent_at is not None and r.attempts == 1 and r.lease_until is None for r in rows)
    assert len(smtp.messages) == case.emails
    by_id = {_parse(msg.data)["Message-ID"]: msg for msg in smtp.messages}
    assert set(by_id) == {r.message_id for r in rows}
    for row in rows:
        received = by_id[row.message_id]
        assert received.recipients == [_address_of(case.ws, row)]
        assert (
            received.mail_from == f"privacy+{reference_token(row.reference or '')}@canary-mail.it"
        )
        msg = _parse(received.data)
        stored = _stored_mime(case.ws, row)
        assert msg["To"] == stored["To"] and msg["Subject"] == stored["Subject"]
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["From"].addresses[0].addr_spec == "privacy@canary-mail.it"
        assert msg["Date"] is not None
        assert msg.get_content_type() == "multipart/alternative"
        for kind in ("plain", "html"):
            got, want = msg.get_body((kind,)), stored.get_body((kind,))
            assert got is not None and want is not None
            assert got.get_content() == want.get_content()
    assert notice_states(case.ws, case.incident_id)["sent"] == case.emails


def test_second_send_delivers_nothing(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    again = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert again.sent == 0 and again.already_sent == case.emails == len(smtp.messages)


def test_permanent_refusal_fails_the_email_queues_a_letter_and_says_why(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id, "email")[0]
    address = _address_of(case.ws, victim)
    smtp.reject[address.lower()] = f"550 5.1.1 <{address}>: no such user"
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **_fast())
    assert report.failed == 1 and report.sent == case.emails - 1
    assert report.letters_queued == 1
    assert report.problems == {"refused 550 5.1.1; letter queued": 1}
    rows = [r for r in _notices(case.ws, case.incident_id) if r.customer_id == victim.customer_id]
    failed = next(r for r in rows if r.channel == "email")
    assert failed.state == "failed" and failed.attempts == 1
    assert failed.last_error is not None and failed.last_error.startswith("550 5.1.1")
    assert "no such user" in failed.last_error and "@" not in failed.last_error
    letter = next(r for r in rows if r.channel == "letter")
    assert letter.state == "queued" and "550 5.1.1" in (letter.note or "")
    assert [e["event"] for e in failed.events or []] == ["letter_queued"]
    assert all(address not in msg.recipients for msg in smtp.messages)
    again = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert again.sent == 0 and len(smtp.messages) == case.emails - 1  # never retried
    _assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_temporary_refusal_is_retried_with_backoff_in_the_same_run(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id, "email")[1]
    smtp.rcpt_script[_address_of(case.ws, victim).lower()] = ["451 4.3.0 try again later"] * 2
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **_fast())
    assert report.sent == case.emails and report.retried == 2
    assert report.problems == {"temporary refusal 451 4.3.0: retried": 2}
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "sent" and row.attempts == 3 and row.last_error is None
    assert len(smtp.messages) == case.emails


def test_temporary_refusals_give_up_at_max_attempts_and_fall_back_to_a_letter(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id, "email")[0]
    smtp.reject[_address_of(case.ws, victim).lower()] = "452 4.2.2 mailbox full"
    report = send_notices(
        case.ws, case.incident_id, host=smtp.host, port=smtp.port, **_fast(max_attempts=3)
    )
    assert report.retried == 2 and report.failed == 1 and report.letters_queued == 1
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "failed" and row.attempts == 3
    assert row.last_error == "gave up after 3 temporary refusals; last: 452 4.2.2 mailbox full"


def test_without_backoff_a_temporary_refusal_waits_for_a_later_run(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id, "email")[1]
    smtp.rcpt_script[_address_of(case.ws, victim).lower()] = ["451 4.3.0 try again later"]
    first = send_notices(
        case.ws, case.incident_id, host=smtp.host, port=smtp.port, retry_backoff=None
    )
    assert first.retry_later == 1 and first.sent == case.emails - 1
    second = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert second.sent == 1 and second.already_sent == case.emails - 1


def test_server_closing_the_connection_with_421_is_reconnected(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    smtp.mail_replies.append("421 4.7.0 too many messages, closing")
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **_fast())
    assert report.sent == case.emails and report.retried == 1
    assert len(smtp.messages) == case.emails


def test_connection_dropped_mid_data_is_in_doubt_listed_and_resolved_explicitly(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = _notices(case.ws, case.incident_id, "email")[2]
    smtp.drop_during_data.add(_address_of(case.ws, victim).lower())
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, workers=2)
    assert report.in_doubt == 1 and report.sent == case.emails - 1
    assert report.problems == {"connection lost during DATA: delivery uncertain": 1}
    doubt = in_doubt_notices(case.ws, case.incident_id)
    assert [d.notice_id for d in doubt] == [victim.id]
    assert doubt[0].last_error is not None and "during DATA" in doubt[0].last_error
    # A later run neither resends it nor forgets it.
    again = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert again.sent == 0 and again.in_doubt == 1
    assert again.problems == {"left in doubt by an earlier run": 1}
    assert resolve_in_doubt(case.ws, case.incident_id, "resend") == 1
    final = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert final.sent == 1 and in_doubt_notices(case.ws, case.incident_id) == []
    ids = Counter(_parse(msg.data)["Message-ID"] for msg in smtp.messages)
    assert ids[victim.message_id] == 2  # the relay had it: a duplicate, same Message-ID
    assert sum(ids.values()) == case.emails + 1
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "sent" and row.events is not None
    assert row.events[0]["event"] == "in_doubt_resolved"
    assert row.events[0]["resolution"] == "resend"


def test_in_doubt_needs_an_expired_lease_and_mark_sent_settles_it(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    stuck, live = _notices(case.ws, case.incident_id, "email")[:2]
    now = datetime.now(UTC)
    with case.ws.db.session() as s:
        s.execute(
            update(m.Notice)
            .where(m.Notice.id == stuck.id)
            .values(state="sending", attempts=1, lease_until=now - timedelta(seconds=1))
        )
        s.execute(
            update(m.Notice)
            .where(m.Notice.id == live.id)
            .values(state="sending", attempts=1, lease_until=now + timedelta(minutes=5))
        )
    assert [d.notice_id for d in in_doubt_notices(case.ws, case.incident_id)] == [stuck.id]
    later = now + timedelta(minutes=6)
    assert len(in_doubt_notices(case.ws, case.incident_id, now=later)) == 2
    with pytest.raises(InvalidInput, match="not in doubt"):
        resolve_in_doubt(case.ws, case.incident_id, "mark_sent", notice_ids=[live.id])
    with pytest.raises(InvalidInput, match="unknown resolution"):
        resolve_in_doubt(case.ws, case.incident_id, "ignore")  # type: ignore[arg-type]
    assert resolve_in_doubt(case.ws, case.incident_id, "mark_sent", notice_ids=[stuck.id]) == 1
    row = next(r for r in _notices(case.ws, case.incident_id) if r.id == stuck.id)
    assert row.state == "sent" and row.sent_at is not None


def test_notice_leased_by_another_run_is_busy_not_resent(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    live = _notices(case.ws, case.incident_id, "email")[0]
    with case.ws.db.session() as s:
        s.execute(
            update(m.Notice)
            .where(m.Notice.id == live.id)
            .values(state="sending", lease_until=datetime.now(UTC) + timedelta(minutes=5))
        )
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert report.busy == 1 and report.in_doubt == 0 and report.sent == case.emails - 1


def test_connection_refused_raises_and_leaves_every_notice_queued(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    port = _free_port()
    with pytest.raises(DeliveryError, match=rf"cannot connect to SMTP server 127\.0\.0\.1:{port}"):
        send_notices(case.ws, case.incident_id, host="127.0.0.1", port=port, timeout=5)
    rows = _notices(case.ws, case.incident_id, "email")
    assert {r.state for r in rows} == {"queued"} and all(r.attempts == 0 for r in rows)


def test_prepare_and_send_refuse_an_unknown_incident(case: Case) -> None:
    with pytest.raises(NotFound):
        prepare_notices(case.ws, 999)
    with pytest.raises(NotFound):
        send_notices(case.ws, 999, host="127.0.0.1", port=_free_port())
    with pytest.raises(NotFound):
        notice_states(case.ws, 999)
    with pytest.raises(NotFound):
        in_doubt_notices(case.ws, 999)


def test_nothing_to_send_needs_no_server(case: Case) -> None:
    report = send_notices(case.ws, case.incident_id, host="127.0.0.1", port=_free_port())
    assert report.sent == 0 and report.already_sent == 0


# --- relay features --------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class AuthSink(RecordingSink):
    """A relay that demands STARTTLS, then AUTH, like a company's submission server."""

    tls: ssl.SSLContext
    logins: list[str]

    def __enter__(self) -> AuthSink:
        self.mail_replies, self.rcpt_script, self.drop_during_data = [], {}, set()
        self.logins = []
        self.port = _free_port()

        def check(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.password == b"s3cret-Pa55"
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok, handled=False)

        self._controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            tls_context=self.tls,
            require_starttls=True,
            authenticator=check,
            auth_require_tls=True,
        )
        self._controller.start()
        return self


def test_starttls_and_auth_and_the_password_is_never_logged(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    prepare_notices(case.ws, case.incident_id)
    caplog.set_level(logging.DEBUG)
    sink = AuthSink()
    sink.tls = server_tls
    with sink:
        with pytest.raises(DeliveryError, match="does not offer AUTH") as bad:
            send_notices(
                case.ws, case.incident_id, host=sink.host, port=sink.port, username="relay"
            )
        assert "s3cret" not in str(bad.value)
        with pytest.raises(DeliveryError, match=r"refused the login \(535\)") as wrong:
            send_notices(
                case.ws,
                case.incident_id,
                host=sink.host,
                port=sink.port,
                starttls=True,
                tls_context=client_tls,
                username="relay",
                password="wrong-Pa55",
            )
        assert "wrong-Pa55" not in str(wrong.value)
        report = send_notices(
            case.ws,
            case.incident_id,
            host=sink.host,
            port=sink.port,
            starttls=True,
            tls_context=client_tls,
            username="relay",
            password="s3cret-Pa55",
        )
    assert report.sent == case.emails and len(sink.messages) == case.emails
    assert set(sink.logins) == {"relay"}
    ours = [r for r in caplog.records if r.name.startswith("canarino")]
    assert ours and any("auth=yes" in r.getMessage() for r in ours)
    for record in ours:
        assert "s3cret" not in record.getMessage() and "wrong-Pa55" not in record.getMessage()


def test_dkim_signature_verifies_against_the_published_key(case: Case, smtp: RecordingSink) -> None:
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    prepare_notices(case.ws, case.incident_id)
    key = DkimKey("notice2026", "canary-mail.it", pem)
    assert "PRIVATE" not in repr(key)
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, dkim_key=key)
    assert report.sent == case.emails
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    for msg in smtp.messages[:5]:
        assert msg.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(msg.data, dnsfunc=dns)
        tampered = msg.data.replace(b"Example S.p.A.</p>", b"Exemplary S.p.A.</p>")
        assert tampered != msg.data and not dkim.verify(tampered, dnsfunc=dns)
    assert set(asked) == {b"notice2026._domainkey.canary-mail.it."}
    with pytest.raises(DeliveryError, match="DKIM key for selector 'bad' cannot sign"):
        send_notices(
            case.ws,
            case.incident_id,
            host=smtp.host,
            port=smtp.port,
            dkim_key=DkimKey("bad", "canary-mail.it", b"not a key"),
        )


def test_rate_limit_per_provider_paces_one_provider_without_blocking_others() -> None:
    from canarino.delivery import _Scheduler

    jobs = [(i, "google") for i in range(6)] + [(100 + i, "d:small") for i in range(6)]
    scheduler = _Scheduler(jobs, rate=25, burst=1)
    started = time.monotonic()
    order: list[tuple[int, str, float]] = []
    while (job := scheduler.take()) is not None:
        order.append((*job, time.monotonic() - started))
        scheduler.finish()
    google = [t for _, route, t in order if route == "google"]
    assert len(order) == 12
    assert google[-1] >= 5 / 25 * 0.9  # one message per 40 ms after the first
    assert all(b - a >= 0.03 for a, b in itertools.pairwise(google))
    assert provider_of("googlemail.com") == provider_of("gmail.com") == "google"
    assert provider_of("hotmail.it") == "microsoft" and provider_of("esempio.it") is None


# --- bounces and letters ---------------------------------------------------------------------


def _dsn(to: str, original_id: str, status: str = "5.1.1", action: str = "failed") -> bytes:
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{random.random()}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"

--BOUND
Content-Type: text/plain

Your message to mario.rossi@example.com could not be delivered.

--BOUND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; mario.rossi@example.com
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {status[0]}50 {status} <mario.rossi@example.com>: user unknown

--BOUND
Content-Type: text/rfc822-headers

Message-ID: {original_id}
Subject: a notice

--BOUND--
"""
    return text.replace("\n", "\r\n").encode()


def test_hard_bounce_sets_bounced_keeps_evidence_and_queues_a_letter(
    case: Case, smtp: RecordingSink, tmp_path: Path
) -> None:
    prepare_notices(case.ws, case.incident_id)
    send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    hard, soft, by_id = _notices(case.ws, case.incident_id, "email")[:3]
    verp = f"privacy+{reference_token(hard.reference or '')}@canary-mail.it"
    mbox = tmp_path / "bounces.mbox"
    auto_reply = b"From: someone@example.org\r\nSubject: Out of office\r\n\r\nI am away.\r\n"
    stranger = _dsn("privacy@canary-mail.it", "<not-ours@elsewhere.example>")
    with mbox.open("wb") as fp:
        for raw in (
            _dsn(verp, "<unrelated@x>"),  # matched by VERP alone
            _dsn("privacy@canary-mail.it", soft.message_id, "4.2.2", "delayed"),
            _dsn("privacy@canary-mail.it", by_id.message_id),  # matched by Message-ID
            auto_reply,
            stranger,
        ):
            fp.write(
                b"From MAILER-DAEMON Thu Mar  5 10:00:00 2026\n"
                + raw.replace(b"\r\n", b"\n")
                + b"\n"
            )
    report = record_bounces(case.ws, mbox)
    assert (report.messages, report.hard, report.soft) == (5, 2, 1)
    assert (report.not_bounces, report.unmatched, report.letters_queued) == (1, 1, 2)
    assert report.by_status == {"5.1.1": 2, "4.2.2": 1}
    rows = {r.id: r for r in _notices(case.ws, case.incident_id)}
    assert rows[hard.id].state == "bounced" and rows[by_id.id].state == "bounced"
    assert rows[soft.id].state == "sent"
    evidence = (rows[hard.id].events or [])[0]
    assert evidence["event"] == "bounce" and evidence["status"] == "5.1.1"
    assert evidence["matched_by"] == "verp" and evidence["source"] == "dsn"
    assert (rows[by_id.id].events or [])[0]["matched_by"] == "message-id"
    assert "mario.rossi" not in json.dumps(evidence) and len(evidence["sha256"]) == 64
    assert (rows[hard.id].last_error or "").startswith("hard bounce 5.1.1")
    letters = [
        r for r in rows.values() if r.channel == "letter" and r.customer_id == hard.customer_id
    ]
    assert len(letters) == 1 and letters[0].state == "queued"
    again = record_bounces(case.ws, mbox)
    assert again.already_recorded == 3 and again.letters_queued == 0
    _assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_bounce_of_a_person_without_postal_address_is_reported_unreachable(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    row = _notices(case.ws, case.incident_id, "email")[0]
    with case.ws.db.session() as s:
        sealed = s.scalar(select(m.Customer.sealed).where(m.Customer.id == row.customer_id))
        assert sealed is not None
        record = case.ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
        record.pop("address", None)
        s.execute(
            update(m.Customer)
            .where(m.Customer.id == row.customer_id)
            .values(sealed=case.ws.vault.seal(record, context=CUSTOMER_CONTEXT))
        )
    report = record_bounces(case.ws, _dsn("privacy@canary-mail.it", row.message_id))
    assert report.hard == 1 and report.unreachable == 1 and report.letters_queued == 0


def test_letters_are_printed_in_batches_with_address_blocks(case: Case, tmp_path: Path) -> None:
    prepare_notices(case.ws, case.incident_id)
    html_report = print_letters(
        case.ws, case.incident_id, tmp_path / "html", batch_size=5, pdf=False
    )
    assert html_report.format == "html" and html_report.printed == case.letters
    assert len(html_report.files) == 3 and "print-ready HTML" in html_report.note
    page = html_report.files[0].read_text()
    assert page.count('<section class="letter"') == 5
    letters = _notices(case.ws, case.incident_id, "letter")
    first = case.ws.vault.open(letters[0].sealed, context=NOTICE_CONTEXT)
    assert all(line in page for line in first["address"][:2])
    assert oct(html_report.files[0].stat().st_mode & 0o777) == "0o600"
    assert {r.state for r in letters} == {"sent"}
    assert all((r.events or [])[-1]["event"] == "printed" for r in letters)
    assert print_letters(case.ws, case.incident_id, tmp_path / "again").printed == 0


def test_letters_become_a_pdf_when_weasyprint_works(case: Case, tmp_path: Path) -> None:
    from canarino.delivery import _weasyprint

    engine, why = _weasyprint()
    if engine is None:
        pytest.skip(why)
    prepare_notices(case.ws, case.incident_id)
    report = print_letters(case.ws, case.incident_id, tmp_path, batch_size=50)
    assert report.format == "pdf" and report.printed == case.letters and len(report.files) == 1
    assert report.files[0].read_bytes().startswith(b"%PDF")


# --- crash ------------------------------------------------------------------------------------

SENDER = """
import sys
from pathlib import Path
from canarino.delivery import send_notices
from canarino.settings import load_settings
from canarino.workspace import Workspace
ws = Workspace.open(load_settings(Path(sys.argv[1])))
sys.stdin.readline()  # wait for the go, so the imports are not part of the timing
send_notices(ws, int(sys.argv[2]), host=sys.argv[3], port=int(sys.argv[4]), workers=4,
             lease_seconds=0.3)
"""


def test_killed_sender_loses_nothing_and_only_in_doubt_notices_repeat(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    ws = init_workspace(
        tmp_path / "ws", mail_domains=["canary-mail.it"], phone_ranges=["+39347555"]
    )
    assert (
        import_customers(
            ws, write_customers_csv(tmp_path / "c.csv", make_customers(240, seed=9))
        ).imported
        == 240
    )
    with ws.db.session() as s:
        ids = list(s.scalars(select(m.Customer.id)))
    incident = _make_incident(ws, ids)
    assert prepare_notices(ws, incident).prepared == 240
    expected = {r.message_id for r in _notices(ws, incident)}
    kills, listed = 0, Counter[str]()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    with SmtpSink() as sink:
        args = [str(tmp_path / "ws"), str(incident), sink.host, str(sink.port)]
        procs = [
            subprocess.Popen([sys.executable, "-c", SENDER, *args], stdin=subprocess.PIPE, env=env)
            for _ in range(4)
        ]
        for proc in procs[:-1]:
            target = len(sink.messages) + rng.randint(5, 45)
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.close()
            deadline = time.monotonic() + 60
            while (
                len(sink.messages) < target and proc.poll() is None and time.monotonic() < deadline
            ):
                time.sleep(0.001)
            if proc.poll() is None:
                kills += 1
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.35)  # let the dead run's leases expire
            doubt = in_doubt_notices(ws, incident)
            listed.update(d.message_id for d in doubt)
            resolve_in_doubt(ws, incident, "resend")
        last = procs[-1]
        assert last.stdin is not None
        last.stdin.write(b"go\n")
        last.stdin.close()
        assert last.wait(timeout=120) == 0
        received = Counter(_parse(msg.data)["Message-ID"] for msg in sink.messages)
    assert kills >= 2
    assert set(received) == expected  # nothing lost
    duplicates = {mid: n - 1 for mid, n in received.items() if n > 1}
    for mid, extra in duplicates.items():
        assert extra <= listed[mid], mid  # every repeat was a listed notice in doubt
    assert notice_states(ws, incident) == {"sent": 240}
    assert in_doubt_notices(ws, incident) == []
    ws.close()
