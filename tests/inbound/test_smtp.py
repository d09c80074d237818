from __future__ import annotations

import dataclasses
import smtplib
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from canarino import models as m
from canarino.errors import InvalidInput
from canarino.inbound.smtp import SmtpListener, load_tls, parse_listen, start_listener
from canarino.sightings import allow_sender, noise_counts, read_raw_message
from canarino.workspace import Workspace

from .conftest import control_emails


@pytest.fixture(scope="module")
def calls() -> list[float]:
    return []


@pytest.fixture(scope="module")
def listener(mailws: Workspace, calls: list[float]) -> Iterator[SmtpListener]:
    with start_listener(mailws, "127.0.0.1", 0, on_sightings=lambda: calls.append(1.0)) as lst:
        yield lst


def _with(ws: Workspace, **settings: object) -> Workspace:
    return dataclasses.replace(ws, settings=ws.settings.model_copy(update=settings))


def _phish(to: str, first_name: str = "Cliente", *, subject: str = "Pratica sospesa") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Assistenza <help@phish.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.monotonic_ns()}@phish.example>"
    msg.set_content(f"Gentile {first_name}, confermi i dati su https://login.phish.example/x")
    return msg.as_bytes()


def _sightings_of(ws: Workspace, raw_id: int) -> list[m.Sighting]:
    with ws.db.session() as s:
        rows = s.scalars(select(m.Sighting).order_by(m.Sighting.id)).all()
        return [r for r in rows if r.evidence.get("raw_message_id") == raw_id]


def _count(ws: Workspace, table: type[m.Base]) -> int:
    with ws.db.session() as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


class _Raw:
    """A hand-driven SMTP session for what smtplib would never send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> str:
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return ""
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                return line.decode()

    def send(self, data: bytes) -> str:
        self.sock.sendall(data)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def test_canary_mail_becomes_a_sighting_with_evidence_and_the_raw_message(
    mailws: Workspace,
    listener: SmtpListener,
    canaries: dict[str, list[dict[str, str]]],
    calls: list[float],
) -> None:
    row = canaries["Vendor B"][0]
    raw = _phish(row["email"], row["first_name"])
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        client.sendmail("bounce@bulk.example", [row["email"]], raw)
    with mailws.db.session() as s:
        sighting = s.scalars(select(m.Sighting).order_by(m.Sighting.id.desc())).first()
        assert sighting is not None and sighting.canary_id is not None
        assert sighting.channel == "email" and not sighting.expected_use and sighting.strong
        ev = sighting.evidence
    assert ev["provider"] == "smtp"
    assert (ev["from_domain"], ev["return_path_domain"]) == ("phish.example", "bulk.example")
    assert ev["sender_ip"] == "127.0.0.1"
    assert ev["url_domains"] == ["login.phish.example"] and "name" in ev["uses"]
    assert ev["subject"] == "Pratica sospesa" and len(ev["simhash"]) == 16
    kept, truncated = read_raw_message(mailws, ev["raw_message_id"])
    assert kept.replace(b"\r\n", b"\n").rstrip() == raw.rstrip() and not truncated
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls, "on_sightings was not called after new evidence"


def test_one_message_to_two_canaries_is_kept_once_for_both(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    to = [canaries["Vendor A"][1]["email"], canaries["Vendor B"][1]["email"]]
    before = _count(mailws, m.InboundMessage)
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        client.sendmail("x@phish.example", to, _phish(", ".join(to)))
    assert _count(mailws, m.InboundMessage) == before + 1
    with mailws.db.session() as s:
        raw_id = s.scalar(select(func.max(m.InboundMessage.id)))
    assert raw_id is not None
    assert len(_sightings_of(mailws, raw_id)) == 2


def test_mail_to_a_non_canary_is_refused_and_only_counted(
    mailws: Workspace, listener: SmtpListener
) -> None:
    before = (noise_counts(mailws)["unknown"], _count(mailws, m.Sighting))
    with (
        smtplib.SMTP("127.0.0.1", listener.port) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        client.sendmail("x@spam.example", ["mario.nobody@canary-mail.it"], b"Subject: hi\r\n")
    assert refused.value.recipients["mario.nobody@canary-mail.it"][0] == 550
    assert noise_counts(mailws)["unknown"] == before[0] + 1
    assert _count(mailws, m.Sighting) == before[1]


@pytest.mark.parametrize("rcpt", ["someone@gmail.com", "a@canary-mail.it.evil.example", "nodomain"])
def test_relaying_to_other_domains_is_refused(listener: SmtpListener, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        client.ehlo()
        client.mail("x@spam.example")
        code, text = client.rcpt(rcpt)
    assert code in (550, 553), text


def test_a_control_canary_counts_as_noise_and_is_kept(
    mailws: Workspace, listener: SmtpListener
) -> None:
    (control,) = control_emails(mailws, 1)
    before = noise_counts(mailws)["control"]
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        client.sendmail("x@spam.example", [control], _phish(control))
    assert noise_counts(mailws)["control"] == before + 1


def test_a_recipients_own_infrastructure_is_expected_use(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    allow_sender(mailws, "Vendor A", "ip", "127.0.0.1")
    try:
        own, other = canaries["Vendor A"][2]["email"], canaries["Vendor B"][2]["email"]
        with smtplib.SMTP("127.0.0.1", listener.port) as client:
            client.sendmail("news@vendora.example", [own, other], _phish(own))
        with mailws.db.session() as s:
            rows = s.scalars(select(m.Sighting).order_by(m.Sighting.id.desc()).limit(2)).all()
            flags = sorted(r.expected_use for r in rows)
        # Vendor A's own IP writing to a canary it never received is still evidence.
        assert flags == [False, True]
    finally:
        with mailws.db.session() as s:
            s.execute(m.AllowedSender.__table__.delete())


def test_broken_mime_is_recorded_not_crashed(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    raw = (
        b'Subject: =?utf-8?b?!!?=\r\nContent-Type: multipart/mixed; boundary="q"\r\n'
        b"DKIM-Signature: v=1; d=;; b=garbage\r\n\r\n--q\r\nContent-Type: text/html; "
        b"charset=x-unknown\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n"
        b"--q\r\nContent-Type: multipart/alternative\r\n\r\n\xff\xfe\x00\r\n"
    )
    before = _count(mailws, m.InboundMessage)
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        client.sendmail("x@spam.example", [canaries["Vendor B"][3]["email"]], raw)
    assert _count(mailws, m.InboundMessage) == before + 1


def test_the_same_message_delivered_twice_is_stored_once(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    to = canaries["Vendor B"][4]["email"]
    raw = _phish(to)
    before = (_count(mailws, m.Sighting), _count(mailws, m.InboundMessage))
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", listener.port) as client:
            client.sendmail("x@spam.example", [to], raw)
    assert (_count(mailws, m.Sighting), _count(mailws, m.InboundMessage)) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_malformed_sessions_get_errors_and_the_listener_keeps_serving(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    s = _Raw(listener.port)
    assert s.greeting.startswith("220") and "Python" not in s.greeting
    assert s.send(b"\x00\xff\xfe BLAH\r\n").startswith("500")
    assert s.send(b"HELO\r\n").startswith("501")
    assert s.send(b"EHLO test.example\r\n").startswith("250")
    assert s.send(b"DATA\r\n").startswith("503")  # no MAIL, no RCPT
    assert s.send(b"RCPT TO:<a@canary-mail.it>\r\n").startswith("503")
    assert s.send(b"MAIL FROM:<" + b"a" * 200_000 + b"@x.example>\r\n").startswith("500")
    assert s.send(b"MAIL FROM:<<<>>>\r\n")[:1] == "5"
    assert s.send(b"MAIL FROM:<x@spam.example>\r\n").startswith("250")
    assert s.send(b"MAIL FROM:<y@spam.example>\r\n").startswith("503")
    assert s.send(b"RCPT TO:<" + canaries["Vendor A"][5]["email"].encode() + b">\r\n")[:3] == "250"
    assert s.send(b"DATA\r\n").startswith("354")
    # A line longer than any limit ends the message with an error, and nothing is kept.
    before = _count(mailws, m.InboundMessage)
    assert s.send(b"Subject: x\r\n\r\n" + b"A" * 300_000 + b"\r\n.\r\n").startswith("500")
    assert s.send(b"NOOP\r\n").startswith("250")
    s.close()
    # A client that disconnects in the middle of DATA leaves nothing behind.
    s = _Raw(listener.port)
    for cmd in (b"EHLO x\r\n", b"MAIL FROM:<x@spam.example>\r\n"):
        assert s.send(cmd).startswith("250")
    s.send(b"RCPT TO:<" + canaries["Vendor A"][5]["email"].encode() + b">\r\n")
    assert s.send(b"DATA\r\n").startswith("354")
    s.sock.sendall(b"Subject: half\r\n\r\nhalf a messa")
    s.close()
    time.sleep(0.2)
    assert _count(mailws, m.InboundMessage) == before
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        assert client.noop()[0] == 250


def test_oversized_messages_are_refused(mailws: Workspace) -> None:
    small = _with(mailws, smtp_max_bytes=4096)
    with start_listener(small, "127.0.0.1", 0) as lst:
        with smtplib.SMTP("127.0.0.1", lst.port) as client:
            client.ehlo()
            assert client.has_extn("size") and client.esmtp_features["size"] == "4096"
            assert client.mail("x@spam.example", ["SIZE=999999"])[0] == 552
        s = _Raw(lst.port)
        s.send(b"EHLO x\r\n")
        s.send(b"MAIL FROM:<x@spam.example>\r\n")
        row = control_emails(mailws, 1)[0].encode()
        assert s.send(b"RCPT TO:<" + row + b">\r\n").startswith("250")
        assert s.send(b"DATA\r\n").startswith("354")
        body = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 200
        assert s.send(body + b".\r\n").startswith("552")
        s.close()
        assert lst.stats.messages == 0


def test_clients_over_the_rate_limit_are_told_to_come_back(mailws: Workspace) -> None:
    strict = _with(mailws, smtp_rate_per_minute=2)
    with start_listener(strict, "127.0.0.1", 0) as lst:
        with smtplib.SMTP("127.0.0.1", lst.port) as client:
            client.ehlo()
            for _ in range(2):
                assert client.mail("x@spam.example")[0] == 250
                client.rset()
            assert client.mail("x@spam.example")[0] == 450
        s = _Raw(lst.port)
        assert s.greeting.startswith("421")
        s.close()
        assert lst.stats.rate_limited >= 2


def test_guessing_addresses_is_rate_limited_like_sending(mailws: Workspace) -> None:
    before = noise_counts(mailws)["unknown"]
    with (
        start_listener(_with(mailws, smtp_rate_per_minute=3), "127.0.0.1", 0) as lst,
        smtplib.SMTP("127.0.0.1", lst.port) as client,
    ):
        client.ehlo()
        assert client.mail("x@spam.example")[0] == 250
        codes = [client.rcpt(f"guess{i}@canary-mail.it")[0] for i in range(6)]
    # One token went to MAIL, two to refused guesses; then the client must wait.
    assert codes == [550, 550, 450, 450, 450, 450]
    assert noise_counts(mailws)["unknown"] == before + 2


def test_connections_beyond_the_limit_get_421(mailws: Workspace) -> None:
    with start_listener(_with(mailws, smtp_max_connections=2), "127.0.0.1", 0) as lst:
        held = [_Raw(lst.port) for _ in range(2)]
        assert all(h.greeting.startswith("220") for h in held)
        extra = _Raw(lst.port)
        assert extra.greeting.startswith("421")
        extra.close()
        held.pop().close()
        time.sleep(0.1)
        again = _Raw(lst.port)
        assert again.greeting.startswith("220")
        for h in [*held, again]:
            h.close()


def test_a_database_failure_is_a_451_and_the_retry_stores_the_message(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    to = canaries["Vendor A"][6]["email"]
    raw = _phish(to)
    db = mailws.settings.workspace / "canarino.db"
    before = (_count(mailws, m.Sighting), _count(mailws, m.InboundMessage))
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON inbound_messages "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    try:
        with (
            smtplib.SMTP("127.0.0.1", listener.port) as client,
            pytest.raises(smtplib.SMTPDataError) as failed,
        ):
            client.sendmail("x@spam.example", [to], raw)
        assert failed.value.smtp_code == 451
        assert (_count(mailws, m.Sighting), _count(mailws, m.InboundMessage)) == before
    finally:
        with sqlite3.connect(db) as con:
            con.execute("DROP TRIGGER disk_full")
    with smtplib.SMTP("127.0.0.1", listener.port) as client:
        client.sendmail("x@spam.example", [to], raw)
    assert (_count(mailws, m.Sighting), _count(mailws, m.InboundMessage)) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_many_clients_at_once_lose_nothing(
    mailws: Workspace, listener: SmtpListener, canaries: dict[str, list[dict[str, str]]]
) -> None:
    before = _count(mailws, m.InboundMessage)
    targets = [r["email"] for r in canaries["Vendor B"][5:9]]
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", listener.port) as client:
                for i in range(5):
                    client.sendmail("x@spam.example", [targets[n]], _phish(targets[n], f"N{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _count(mailws, m.InboundMessage) == before + 5 * len(targets)


def test_stop_closes_the_port_and_a_busy_port_is_a_clear_error(mailws: Workspace) -> None:
    lst = start_listener(mailws, "127.0.0.1", 0)
    port = lst.port
    with pytest.raises(InvalidInput, match=r"cannot listen on 127\.0\.0\.1"):
        start_listener(mailws, "127.0.0.1", port)
    lst.stop()
    assert not lst.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    lst.stop()  # stopping twice is harmless


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:2525", ("127.0.0.1", 2525)), ("[::1]:25", ("::1", 25)), (":25", ("0.0.0.0", 25))],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["2525", "host:", "host:99999", "host:port"])
def test_parse_listen_refuses_bad_addresses(text: str) -> None:
    with pytest.raises(InvalidInput, match="HOST:PORT"):
        parse_listen(text)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.canary-mail.it")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_is_offered_with_a_certificate_and_mail_still_becomes_sightings(
    mailws: Workspace, tmp_path: Path, canaries: dict[str, list[dict[str, str]]]
) -> None:
    cert, key = _self_signed(tmp_path)
    to = canaries["Vendor A"][3]["email"]
    before = _count(mailws, m.InboundMessage)
    client_tls = ssl.create_default_context()
    client_tls.check_hostname = False
    client_tls.verify_mode = ssl.CERT_NONE
    with (
        start_listener(mailws, "127.0.0.1", 0, tls_context=load_tls(cert, key)) as lst,
        smtplib.SMTP("127.0.0.1", lst.port) as client,
    ):
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=client_tls)
        client.ehlo()
        client.sendmail("x@spam.example", [to], _phish(to))
    assert _count(mailws, m.InboundMessage) == before + 1


def test_load_tls_refuses_missing_or_mismatched_files(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with pytest.raises(InvalidInput, match="no such file"):
        load_tls(tmp_path / "nope.pem", key)
    with pytest.raises(InvalidInput, match="not a PEM certificate"):
        load_tls(key, cert)


def test_a_verified_dkim_domain_on_the_allow_list_is_expected_use_and_a_forged_one_is_not(
    mailws: Workspace, canaries: dict[str, list[dict[str, str]]]
) -> None:
    from .test_evidence import _dns, _key, _signed

    _, record = _key()
    dns = _dns({b"s1._domainkey.mailer.vendor.example.": record})
    own = canaries["Vendor B"][9]["email"]
    allow_sender(mailws, "Vendor B", "dkim", "mailer.vendor.example")
    try:
        genuine = _signed(_phish(own, subject="Newsletter"))
        forged = genuine.replace(b"Newsletter", b"Urgente: pratica sospesa")
        with (
            start_listener(mailws, "127.0.0.1", 0, dnsfunc=dns) as lst,
            smtplib.SMTP("127.0.0.1", lst.port) as client,
        ):
            client.sendmail("news@vendor.example", [own], genuine)
            client.sendmail("news@vendor.example", [own], forged)
        with mailws.db.session() as s:
            rows = s.scalars(select(m.Sighting).order_by(m.Sighting.id.desc()).limit(2)).all()
        forged_row, genuine_row = rows
        assert genuine_row.expected_use and genuine_row.evidence["dkim_result"] == "pass"
        assert not forged_row.expected_use and forged_row.evidence["dkim_result"] == "fail"
        assert forged_row.evidence["dkim_domain"] == "mailer.vendor.example"
    finally:
        with mailws.db.session() as s:
            s.execute(m.AllowedSender.__table__.delete())
