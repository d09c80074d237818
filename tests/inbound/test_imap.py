"""The IMAP poller against a real Dovecot on loopback (skipped when Dovecot is missing)."""

from __future__ import annotations

import csv
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from canarino import models as m
from canarino.canaries import Mailbox
from canarino.customers import import_customers
from canarino.errors import InvalidInput
from canarino.inbound.imap import poll_mailbox, state_path
from canarino.inbound.mail import MailIn, record_mail
from canarino.mailboxes import add_mailboxes
from canarino.recipients import add_recipient
from canarino.shares import create_share
from canarino.sightings import noise_counts
from canarino.testing import make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

from ..conftest import MAIL_DOMAINS, PHONE_RANGES
from .conftest import control_emails

USER, PASSWORD = "box@canary-mail.it", "s3cret-box"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def dovecot() -> Iterator[int]:
    """A throw-away Dovecot IMAP server on loopback; yields its port."""
    binary = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.skip("Dovecot is not installed (Debian package dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="imap-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        # Dovecot refuses to give mail access to root: the package's own users serve.
        mail_user, login_user, internal_user = "dovecot", "dovenull", "dovecot"
    else:
        mail_user = login_user = internal_user = getpass.getuser()
    home = root / "home"
    home.mkdir()
    account = pwd.getpwnam(mail_user)
    os.chown(home, account.pw_uid, account.pw_gid)
    for name in ("run", "state"):
        (root / name).mkdir()
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = _free_port()
    (root / "dovecot.conf").write_text(
        f"""protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
first_valid_uid = 1
first_valid_gid = 1
default_login_user = {login_user}
default_internal_user = {internal_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={account.pw_uid} gid={account.pw_gid} home={home}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
    )
    proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (root / "dovecot.log").read_text()
                        if (root / "dovecot.log").exists()
                        else ""
                    )
                    pytest.skip(f"Dovecot did not start: {log[-500:]}")
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _append(port: int, *messages: bytes) -> None:
    with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        for raw in messages:
            client.append("INBOX", raw)


def _mail(to: str, text: str, subject: str = "Verifica account") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Banca <alert@phish.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.monotonic_ns()}@phish.example>"
    msg["Received"] = "from relay.phish.example ([198.51.100.23]) by mx.provider.example"
    msg.set_content(text)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def _count(ws: Workspace, table: type[m.Base]) -> int:
    with ws.db.session() as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


def test_new_messages_become_sightings_once_and_mail_is_never_touched(
    mailws: Workspace, dovecot: int, canaries: dict[str, list[dict[str, str]]]
) -> None:
    row = canaries["Vendor A"][7]
    _append(
        dovecot,
        _mail(row["email"], f"Gentile {row['last_name']}, il conto è bloccato"),
        _mail("stranger@canary-mail.it", "hello"),
        _mail("someone@elsewhere.example", "not for us"),
    )
    before = (_count(mailws, m.Sighting), noise_counts(mailws)["unknown"])
    calls: list[int] = []
    first = poll_mailbox(
        mailws,
        "127.0.0.1",
        USER,
        PASSWORD,
        port=dovecot,
        use_ssl=False,
        on_sightings=lambda: calls.append(1),
    )
    assert (first.fetched, first.sightings, first.evidence) == (3, 1, 1)
    # The third names no monitored address: the mailbox's own address is the recipient.
    assert first.noise == 2 and calls == [1]
    assert _count(mailws, m.Sighting) == before[0] + 1
    assert noise_counts(mailws)["unknown"] == before[1] + 2
    with mailws.db.session() as s:
        sighting = s.scalars(select(m.Sighting).order_by(m.Sighting.id.desc())).first()
        assert sighting is not None
        ev = sighting.evidence
    assert ev["provider"] == "imap" and ev["sender_ip"] == "198.51.100.23"
    assert ev["uses"] == ["name"] and ev["raw_message_id"]

    again = poll_mailbox(mailws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False)
    assert (again.fetched, again.sightings) == (0, 0)
    assert again.last_uid == first.last_uid

    with IMAPClient("127.0.0.1", port=dovecot, ssl=False) as client:
        client.login(USER, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search(["ALL"]))
    assert len(flags) == 3 and all(
        b"\\Seen" not in f and b"\\Deleted" not in f for f in flags.values()
    )


def test_a_lost_state_file_does_not_count_messages_twice(
    mailws: Workspace, dovecot: int, canaries: dict[str, list[dict[str, str]]]
) -> None:
    _append(dovecot, _mail(canaries["Vendor B"][9]["email"], "Pacco in giacenza"))
    poll_mailbox(mailws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False)
    sightings = _count(mailws, m.Sighting)
    state_path(mailws).unlink()
    report = poll_mailbox(mailws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False)
    assert report.fetched >= 2 and report.sightings == 0
    assert _count(mailws, m.Sighting) == sightings


def test_bad_credentials_folder_and_server_are_clear_errors(
    mailws: Workspace, dovecot: int
) -> None:
    with pytest.raises(InvalidInput, match="refused the login") as refused:
        poll_mailbox(mailws, "127.0.0.1", USER, "wrong", port=dovecot, use_ssl=False)
    assert "wrong" not in str(refused.value)
    with pytest.raises(InvalidInput, match="no folder 'Nope'"):
        poll_mailbox(
            mailws, "127.0.0.1", USER, PASSWORD, folder="Nope", port=dovecot, use_ssl=False
        )
    with pytest.raises(InvalidInput, match="cannot reach the IMAP server"):
        poll_mailbox(mailws, "127.0.0.1", USER, PASSWORD, port=_free_port(), use_ssl=False)


def test_a_broken_state_file_is_a_clear_error(mailws: Workspace) -> None:
    path = state_path(mailws)
    saved = path.read_bytes() if path.exists() else None
    path.write_text("{not json")
    try:
        with pytest.raises(InvalidInput, match="not readable JSON"):
            poll_mailbox(mailws, "127.0.0.1", USER, PASSWORD, port=1, use_ssl=False)
    finally:
        if saved is None:
            path.unlink()
        else:
            path.write_bytes(saved)


def test_the_pipeline_records_canaries_and_counts_the_rest(mailws: Workspace) -> None:
    # The part of polling that needs no server: recipients in, sightings and noise out.
    (control,) = control_emails(mailws, 1)
    before = noise_counts(mailws)
    result = record_mail(
        mailws,
        MailIn(
            _mail(control, "x"),
            (control, "nobody@canary-mail.it", "nobody@canary-mail.it"),
            datetime.now(UTC),
            provider="imap",
        ),
    )
    assert (result.canaries, result.noise, result.report.control) == (1, 1, 1)
    after = noise_counts(mailws)
    assert after["unknown"] == before["unknown"] + 1
    assert after["control"] == before["control"] + 1


def test_mail_to_a_pool_mailbox_at_a_provider_becomes_a_sighting(
    dovecot: int, tmp_path: Path
) -> None:
    ws = init_workspace(tmp_path / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    ws.settings.control_canaries = 0
    try:
        people = make_customers(60, seed=9)
        import_customers(ws, write_customers_csv(tmp_path / "c.csv", people))
        providers = sorted({p["email"].rsplit("@", 1)[1] for p in people})
        add_mailboxes(ws, [Mailbox(f"pool.box{i}@{d}") for d in providers for i in range(15)])
        add_recipient(ws, "Vendor P", "vendor")
        share = create_share(ws, "Vendor P", "first_name,last_name,email", tmp_path / "p.csv")
        with share.path.open(encoding="utf-8", newline="") as fp:
            pooled = [r for r in csv.DictReader(fp) if r["email"].startswith("pool.box")]
        assert len(pooled) == share.canaries
        row = pooled[0]
        # The provider delivers to its own mailbox; a collecting mailbox gets it forwarded.
        _append(dovecot, _mail(row["email"], f"Gentile {row['last_name']}, conto bloccato"))
        report = poll_mailbox(ws, "127.0.0.1", USER, PASSWORD, port=dovecot, use_ssl=False)
        assert (report.sightings, report.evidence) == (1, 1)
        with ws.db.session() as s:
            sighting = s.scalars(select(m.Sighting)).one()
        assert sighting.canary_id is not None and sighting.evidence["uses"] == ["name"]
    finally:
        ws.close()
