from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from canarino import models as m
from canarino.customers import import_customers
from canarino.delivery import (
    in_doubt_notices,
    notice_states,
    prepare_notices,
    resolve_in_doubt,
    send_notices,
)
from canarino.errors import DeliveryError
from canarino.notices import reference_token
from canarino.testing import SmtpSink, make_customers, write_customers_csv
from canarino.workspace import init_workspace

from .support import (
    Case,
    RecordingSink,
    address_of,
    assert_no_personal_data_stored_in_clear,
    fast,
    free_port,
    make_incident,
    notices_of,
    parse,
    stored_mime,
)


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
    rows = notices_of(case.ws, case.incident_id, "email")
    assert {r.state for r in rows} == {"sent"}
    assert all(r.sent_at is not None and r.attempts == 1 and r.lease_until is None for r in rows)
    assert len(smtp.messages) == case.emails
    by_id = {parse(msg.data)["Message-ID"]: msg for msg in smtp.messages}
    assert set(by_id) == {r.message_id for r in rows}
    for row in rows:
        received = by_id[row.message_id]
        assert received.recipients == [address_of(case.ws, row)]
        assert (
            received.mail_from == f"privacy+{reference_token(row.reference or '')}@canary-mail.it"
        )
        msg = parse(received.data)
        stored = stored_mime(case.ws, row)
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
    victim = notices_of(case.ws, case.incident_id, "email")[0]
    address = address_of(case.ws, victim)
    smtp.reject[address.lower()] = f"550 5.1.1 <{address}>: no such user"
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **fast())
    assert report.failed == 1 and report.sent == case.emails - 1
    assert report.letters_queued == 1
    assert report.problems == {"refused 550 5.1.1; letter queued": 1}
    rows = [r for r in notices_of(case.ws, case.incident_id) if r.customer_id == victim.customer_id]
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
    assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_temporary_refusal_is_retried_with_backoff_in_the_same_run(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = notices_of(case.ws, case.incident_id, "email")[1]
    smtp.rcpt_script[address_of(case.ws, victim).lower()] = ["451 4.3.0 try again later"] * 2
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **fast())
    assert report.sent == case.emails and report.retried == 2
    assert report.problems == {"temporary refusal 451 4.3.0: retried": 2}
    row = next(r for r in notices_of(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "sent" and row.attempts == 3 and row.last_error is None
    assert len(smtp.messages) == case.emails


def test_temporary_refusals_give_up_at_max_attempts_and_fall_back_to_a_letter(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = notices_of(case.ws, case.incident_id, "email")[0]
    smtp.reject[address_of(case.ws, victim).lower()] = "452 4.2.2 mailbox full"
    report = send_notices(
        case.ws, case.incident_id, host=smtp.host, port=smtp.port, **fast(max_attempts=3)
    )
    assert report.retried == 2 and report.failed == 1 and report.letters_queued == 1
    row = next(r for r in notices_of(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "failed" and row.attempts == 3
    assert row.last_error == "gave up after 3 temporary refusals; last: 452 4.2.2 mailbox full"


def test_without_backoff_a_temporary_refusal_waits_for_a_later_run(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = notices_of(case.ws, case.incident_id, "email")[1]
    smtp.rcpt_script[address_of(case.ws, victim).lower()] = ["451 4.3.0 try again later"]
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
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **fast())
    assert report.sent == case.emails and report.retried == 1
    assert len(smtp.messages) == case.emails


def test_notice_leased_by_another_run_is_busy_not_resent(case: Case, smtp: RecordingSink) -> None:
    prepare_notices(case.ws, case.incident_id)
    live = notices_of(case.ws, case.incident_id, "email")[0]
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
    port = free_port()
    with pytest.raises(DeliveryError, match=rf"cannot connect to SMTP server 127\.0\.0\.1:{port}"):
        send_notices(case.ws, case.incident_id, host="127.0.0.1", port=port, timeout=5)
    rows = notices_of(case.ws, case.incident_id, "email")
    assert {r.state for r in rows} == {"queued"} and all(r.attempts == 0 for r in rows)


def test_nothing_to_send_needs_no_server(case: Case) -> None:
    report = send_notices(case.ws, case.incident_id, host="127.0.0.1", port=free_port())
    assert report.sent == 0 and report.already_sent == 0


def test_run_summary_shows_refusals_and_uncertain_deliveries(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    refused, cut = notices_of(case.ws, case.incident_id, "email")[:2]
    smtp.reject[address_of(case.ws, refused).lower()] = "550 5.1.1 no such user"
    smtp.drop_during_data.add(address_of(case.ws, cut).lower())
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **fast())
    summary = report.summary()
    assert summary[0] == (
        f"sent {case.emails - 2}, failed 1, to retry later 0, in doubt 1, already sent 0"
    )
    assert "1 letters queued instead of e-mails" in summary
    assert "1 × refused 550 5.1.1; letter queued" in summary
    assert "1 × connection lost during DATA: delivery uncertain" in summary
    assert any("canarino notices in-doubt" in line for line in summary)
    assert all("@" not in line for line in summary)


def test_send_command_paces_providers_and_prints_the_summary(
    case: Case, smtp: RecordingSink, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from canarino.cli import app

    prepare_notices(case.ws, case.incident_id)
    args = ["notices", "send", str(case.incident_id), "--smtp", f"{smtp.host}:{smtp.port}"]
    result = CliRunner().invoke(app, [*args, "--rate", "500", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert f"sent {case.emails}, failed 0, to retry later 0, in doubt 0" in result.output
    assert len(smtp.messages) == case.emails


# --- crash ------------------------------------------------------------------------------------

# Imports canarino once, then forks one fresh sending process per line read; prints the
# child's pid, then its exit code (-9 when killed). Each child opens the workspace anew.
SENDERS = """
import os, sys
from pathlib import Path
from canarino.delivery import send_notices
from canarino.settings import load_settings
from canarino.workspace import Workspace
folder, incident, host, port = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ws = Workspace.open(load_settings(folder))
            send_notices(ws, incident, host=host, port=port, workers=4, lease_seconds=0.3)
            code = 0
        finally:
            os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""
CRASH_PEOPLE = 200
KILLS = 10


class Senders:
    """The forking sender above, driven from the test: start a run, kill it, wait for it."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SENDERS, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def start(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return int(self.lines.get(timeout=60))

    def exit_code(self, timeout: float | None = 120) -> int | None:
        try:
            return int(self.lines.get(timeout=timeout))
        except queue.Empty:
            return None

    def __enter__(self) -> Senders:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


def test_sender_killed_ten_times_loses_nothing_and_repeats_only_listed_notices(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(20261126)
    ws = init_workspace(
        tmp_path / "ws", mail_domains=["canary-mail.it"], phone_ranges=["+39347555"]
    )
    people = make_customers(CRASH_PEOPLE, seed=9)
    assert import_customers(ws, write_customers_csv(tmp_path / "c.csv", people)).imported == len(
        people
    )
    with ws.db.session() as s:
        ids = list(s.scalars(select(m.Customer.id)))
    incident = make_incident(ws, ids)
    assert prepare_notices(ws, incident).prepared == CRASH_PEOPLE
    expected = {r.message_id for r in notices_of(ws, incident)}
    kills, listed = 0, Counter[str]()
    with SmtpSink() as sink:
        args = [str(tmp_path / "ws"), str(incident), sink.host, str(sink.port)]
        with Senders(args) as senders:
            for _ in range(KILLS):
                # A random moment: after 0 to 15 more messages reach the sink (0: while claiming).
                target = len(sink.messages) + int(rng.integers(0, 16))
                pid = senders.start()
                code = None
                while len(sink.messages) < target and code is None:
                    code = senders.exit_code(timeout=0.001)
                if code is None:
                    os.kill(pid, signal.SIGKILL)
                    code = senders.exit_code()
                kills += code == -signal.SIGKILL
                time.sleep(0.35)  # let the dead run's leases expire
                listed.update(d.message_id for d in in_doubt_notices(ws, incident))
                resolve_in_doubt(ws, incident, "resend")
            senders.start()
            assert senders.exit_code() == 0  # the run after the last restart completes
        received = Counter(parse(msg.data)["Message-ID"] for msg in sink.messages)
        recipients: dict[str, set[tuple[str, ...]]] = {}
        for msg in sink.messages:
            recipients.setdefault(parse(msg.data)["Message-ID"], set()).add(tuple(msg.recipients))
    assert kills == KILLS
    assert set(received) == expected  # nothing lost
    duplicates = {mid: n - 1 for mid, n in received.items() if n > 1}
    for mid, extra in duplicates.items():
        assert extra <= listed[mid], mid  # every repeat was a listed notice in doubt
    assert all(len(to) == 1 for to in recipients.values())  # a repeat goes to the same person
    assert notice_states(ws, incident) == {"sent": CRASH_PEOPLE}
    assert in_doubt_notices(ws, incident) == []
    ws.close()
