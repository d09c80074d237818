from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import select, update

from canarino import models as m
from canarino.customers import CUSTOMER_CONTEXT
from canarino.delivery import fetch_bounces, prepare_notices, record_bounces, send_notices
from canarino.errors import DeliveryError
from canarino.notices import reference_token

from ..inbound.test_imap import PASSWORD, USER, _append
from .support import (
    Case,
    RecordingSink,
    assert_no_personal_data_stored_in_clear,
    free_port,
    notices_of,
)


def dsn(to: str, original_id: str, status: str = "5.1.1", action: str = "failed") -> bytes:
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{secrets.token_hex(8)}@mx.example.net>
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
    hard, soft, by_id = notices_of(case.ws, case.incident_id, "email")[:3]
    verp = f"privacy+{reference_token(hard.reference or '')}@canary-mail.it"
    mbox = tmp_path / "bounces.mbox"
    auto_reply = b"From: someone@example.org\r\nSubject: Out of office\r\n\r\nI am away.\r\n"
    stranger = dsn("privacy@canary-mail.it", "<not-ours@elsewhere.example>")
    with mbox.open("wb") as fp:
        for raw in (
            dsn(verp, "<unrelated@x>"),  # matched by VERP alone
            dsn("privacy@canary-mail.it", soft.message_id, "4.2.2", "delayed"),
            dsn("privacy@canary-mail.it", by_id.message_id),  # matched by Message-ID
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
    rows = {r.id: r for r in notices_of(case.ws, case.incident_id)}
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
    assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_bounce_of_a_person_without_postal_address_is_reported_unreachable(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    row = notices_of(case.ws, case.incident_id, "email")[0]
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
    report = record_bounces(case.ws, dsn("privacy@canary-mail.it", row.message_id))
    assert report.hard == 1 and report.unreachable == 1 and report.letters_queued == 0


def test_bounces_are_read_from_the_imap_mailbox_once_and_marked_seen(
    case: Case, smtp: RecordingSink, dovecot: int
) -> None:
    prepare_notices(case.ws, case.incident_id)
    send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    hard = notices_of(case.ws, case.incident_id, "email")[0]
    verp = f"privacy+{reference_token(hard.reference or '')}@canary-mail.it"
    chatter = b"From: someone@example.org\r\nSubject: Thanks\r\n\r\nThank you.\r\n"
    _append(dovecot, dsn(verp, "<unrelated@x>"), chatter)
    report = fetch_bounces(case.ws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False)
    assert (report.messages, report.hard, report.not_bounces) == (2, 1, 1)
    assert report.letters_queued == 1 and report.by_status == {"5.1.1": 1}
    row = next(r for r in notices_of(case.ws, case.incident_id) if r.id == hard.id)
    assert row.state == "bounced" and (row.events or [])[0]["matched_by"] == "verp"
    again = fetch_bounces(case.ws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False)
    assert again.messages == 0  # read once: the first run marked them seen
    with IMAPClient("127.0.0.1", port=dovecot, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        assert client.search(["UNSEEN"]) == [] and len(client.search(["ALL"])) >= 2


def test_unreachable_or_refused_bounce_mailbox_says_why(case: Case, dovecot: int) -> None:
    with pytest.raises(DeliveryError, match="refused the login") as refused:
        fetch_bounces(case.ws, "127.0.0.1", USER, "wrong-Pa55", port=dovecot, use_ssl=False)
    assert "wrong-Pa55" not in str(refused.value)
    with pytest.raises(DeliveryError, match="cannot reach"):
        fetch_bounces(case.ws, "127.0.0.1", USER, "x", port=free_port(), use_ssl=False, timeout=5)
    with pytest.raises(DeliveryError, match="no folder"):
        fetch_bounces(
            case.ws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False, folder="Nope"
        )


def test_bounces_imap_command_reads_the_mailbox_with_the_password_from_the_env(
    case: Case, tmp_path: Path, dovecot: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from canarino.cli import app

    args = ["notices", "bounces-imap", "--host", "127.0.0.1", "--port", str(dovecot)]
    args += ["--user", USER, "--password-env", "BOUNCE_PW", "--no-ssl"]
    args += ["-w", str(tmp_path / "ws"), "--json"]
    runner = CliRunner()
    monkeypatch.delenv("BOUNCE_PW", raising=False)
    missing = runner.invoke(app, args)
    assert missing.exit_code == 1 and "BOUNCE_PW is not set" in missing.output
    monkeypatch.setenv("BOUNCE_PW", PASSWORD)
    _append(dovecot, b"From: someone@example.org\r\nSubject: Hello\r\n\r\nHi.\r\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["messages"] >= 1 and report["not_bounces"] >= 1 and report["hard"] == 0
