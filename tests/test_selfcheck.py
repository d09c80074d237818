from __future__ import annotations

import contextlib
import csv
import email
import email.policy
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from canarino import models as m
from canarino import selfcheck
from canarino.customers import import_customers, load_customers
from canarino.errors import InvalidInput
from canarino.incidents import open_incident
from canarino.recipients import add_recipient
from canarino.selfcheck import (
    LinkError,
    MailJob,
    PublicMailer,
    RateLimiter,
    check_form_token,
    check_job,
    choose_page_language,
    consume_link,
    issue_form_token,
    issue_link,
    lookup_contact,
    normalize_contact,
    read_link,
    situation,
)
from canarino.settings import load_settings
from canarino.shares import ShareResult, create_share
from canarino.testing import SmtpSink, make_customers, make_dump, write_customers_csv
from canarino.trace import run_trace
from canarino.workspace import Workspace, init_workspace

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FIELDS = "customer_id,first_name,last_name,email,phone,address"


@pytest.fixture(scope="module")
def people() -> list[dict[str, str]]:
    return make_customers(30, seed=21)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, people: list[dict[str, str]]) -> Path:
    """One workspace with customers, made once; each test gets a copy (migrations are slow)."""
    folder = tmp_path_factory.mktemp("template") / "ws"
    ws = init_workspace(folder, mail_domains=["canary-mail.it"], phone_ranges=["+39347555"])
    import_customers(ws, write_customers_csv(folder.parent / "clienti.csv", people))
    ws.close()
    return folder


@pytest.fixture
def loaded(template: Path, tmp_path: Path) -> Iterator[Workspace]:
    folder = shutil.copytree(template, tmp_path / "ws")
    ws = Workspace.open(load_settings(folder))
    yield ws
    ws.close()


@pytest.fixture
def share(loaded: Workspace, tmp_path: Path) -> ShareResult:
    # No control canaries: generating them is the slow part of a first share.
    loaded.settings = loaded.settings.model_copy(update={"control_canaries": 0})
    add_recipient(loaded, "Vendor A", "vendor")
    return create_share(loaded, "Vendor A", FIELDS, tmp_path / "a.csv")


def body_of(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return str(msg.get_content())  # type: ignore[attr-defined]


# --- contacts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "kind", "normal"),
    [
        ("  Mario.Rossi@Example.IT ", "email", "mario.rossi@example.it"),
        ("347 123 4567", "phone", "+393471234567"),
        ("+1 415 555 0100", "phone", "+14155550100"),
        ("0039 347 1234567", "phone", "+393471234567"),
    ],
)
def test_contacts_are_normalised_like_imported_customers(
    typed: str, kind: str, normal: str
) -> None:
    assert normalize_contact(typed, "IT") == (kind, normal)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "   ",
        "a" * 255 + "@example.it",
        "mario\x00rossi@example.it",
        "mario.rossi@example.it\r\nBcc: victim@example.org",
        "<script>alert(1)</script>",
        "not an address@",
        "98",
        "\u202e" * 300,
    ],
    ids=["empty", "blank", "too-long", "nul", "header-injection", "html", "broken", "short", "rtl"],
)
def test_hostile_contacts_are_refused_without_quoting_them(typed: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize_contact(typed, "IT")
    message = str(caught.value)
    assert typed.strip() == "" or typed.strip()[:8] not in message


def test_lookup_finds_customers_by_email_and_by_phone(
    loaded: Workspace, people: list[dict[str, str]]
) -> None:
    person = people[0]
    by_email = lookup_contact(loaded, person["email"].upper())
    by_phone = lookup_contact(loaded, person["phone"])
    assert by_email.kind == "email" and by_phone.kind == "phone"
    assert by_email.customer_ids == by_phone.customer_ids and len(by_email.customer_ids) == 1
    assert lookup_contact(loaded, "nobody.at.all@example.org").customer_ids == ()


def test_lookup_never_returns_canaries(
    loaded: Workspace, share: ShareResult, people: list[dict[str, str]]
) -> None:
    real = {p["email"] for p in people}
    with share.path.open(encoding="utf-8") as fp:
        canaries = [row["email"] for row in csv.DictReader(fp) if row["email"] not in real]
    assert canaries
    for address in canaries:
        found = lookup_contact(loaded, address)
        assert found.customer_ids == ()


@pytest.mark.parametrize(
    ("header", "asked", "expected"),
    [
        ("it-IT,it;q=0.9,en;q=0.8", None, "it"),
        ("en-GB,en;q=0.9,it;q=0.8", None, "en"),
        ("de-DE,de;q=0.9,it;q=0.5", None, "it"),
        ("fr-FR", None, "en"),
        (None, None, "en"),
        ("it;q=banana,en;q=0.1", None, "en"),
        ("it-IT", "en", "en"),
        ("en", "it", "it"),
        ("en", "xx", "en"),
        ("," * 10_000, None, "en"),
    ],
)
def test_page_language_follows_the_switch_then_accept_language(
    header: str | None, asked: str | None, expected: str
) -> None:
    assert choose_page_language(header, asked) == expected


# --- form tokens and rate limits -----------------------------------------------------------


def test_form_token_must_be_ours_equal_in_cookie_and_field_and_fresh(ws: Workspace) -> None:
    token = issue_form_token(ws, NOW)
    assert check_form_token(ws, token, token, NOW + timedelta(minutes=5))
    other = issue_form_token(ws, NOW)
    assert not check_form_token(ws, token, other, NOW)
    assert not check_form_token(ws, None, token, NOW)
    assert not check_form_token(ws, token, None, NOW)
    assert not check_form_token(ws, token, token, NOW + timedelta(hours=3))
    issued, nonce, mac = token.split(".")
    forged = f"{int(issued) + 10_000}.{nonce}.{mac}"
    assert not check_form_token(ws, forged, forged, NOW)
    for junk in ("", "...", "x" * 500, "1.2", "abc.def.ghi"):
        assert not check_form_token(ws, junk, junk, NOW)


def test_form_tokens_of_another_workspace_are_refused(ws: Workspace, tmp_path: Path) -> None:
    other = init_workspace(tmp_path / "other", mail_domains=["canary-mail.it"], phone_ranges=[])
    try:
        token = issue_form_token(other, NOW)
        assert not check_form_token(ws, token, token, NOW)
    finally:
        other.close()


def test_rate_limiter_allows_the_limit_then_says_when_to_come_back() -> None:
    limiter = RateLimiter(3, window=3600)
    assert [limiter.hit("10.0.0.1", now=t) for t in (0, 10, 20)] == [None, None, None]
    retry = limiter.hit("10.0.0.1", now=30)
    assert retry == pytest.approx(3570)
    assert limiter.hit("10.0.0.2", now=30) is None
    assert limiter.hit("10.0.0.1", now=3601) is None


def test_rate_limiter_memory_stays_bounded() -> None:
    limiter = RateLimiter(1, window=60, max_keys=100)
    for n in range(1_000):
        limiter.hit(f"10.0.{n // 256}.{n % 256}", now=float(n))
    assert len(limiter._hits) <= 100


# --- links ---------------------------------------------------------------------------------


def test_link_opens_once(loaded: Workspace) -> None:
    token = issue_link(loaded, [3, 1], "it", now=NOW)
    link = read_link(loaded, token, now=NOW + timedelta(hours=1))
    assert link.customer_ids == (1, 3) and link.language == "it"
    assert consume_link(loaded, token, now=NOW + timedelta(hours=1)).customer_ids == (1, 3)
    with pytest.raises(LinkError, match="already used"):
        consume_link(loaded, token, now=NOW + timedelta(hours=1))
    with loaded.db.session() as s:
        opened = s.scalar(
            select(func.count()).select_from(m.AuditEvent).where(m.AuditEvent.target == link.target)
        )
    assert opened == 1


def test_a_link_opened_at_the_same_time_twice_opens_once(loaded: Workspace) -> None:
    token = issue_link(loaded, [1], "en")
    outcomes: list[str] = []

    def open_it() -> None:
        try:
            consume_link(loaded, token)
            outcomes.append("opened")
        except LinkError:
            outcomes.append("refused")

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["opened"] + ["refused"] * 7


def test_two_processes_opening_a_link_at_once_open_it_once(
    loaded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two engines on one database stand for two web processes; without the thread lock
    # only the database orders them.
    monkeypatch.setattr(selfcheck, "_consume_lock", contextlib.nullcontext())
    token = issue_link(loaded, [1], "en")
    other = Workspace.open(loaded.settings)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def open_it(ws: Workspace) -> None:
        start.wait()
        try:
            consume_link(ws, token)
            outcomes.append("opened")
        except LinkError:
            outcomes.append("refused")

    try:
        threads = [threading.Thread(target=open_it, args=(w,)) for w in (loaded, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert sorted(outcomes) == ["opened", "refused"]


def test_link_expires_after_a_day(loaded: Workspace) -> None:
    token = issue_link(loaded, [1], "en", now=NOW)
    read_link(loaded, token, now=NOW + timedelta(hours=23, minutes=59))
    with pytest.raises(LinkError, match="expired"):
        consume_link(loaded, token, now=NOW + timedelta(hours=24, seconds=1))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2],
        lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:],
        lambda t: "",
        lambda t: "%%%%",
        lambda t: "A" * 5000,
        lambda t: t + "<script>",
    ],
    ids=["cut", "flipped", "empty", "not-base64", "huge", "html"],
)
def test_tampered_links_are_refused(loaded: Workspace, mangle: object) -> None:
    token = issue_link(loaded, [1], "en", now=NOW)
    bad = mangle(token)  # type: ignore[operator]
    with pytest.raises(LinkError) as caught:
        read_link(loaded, bad, now=NOW)
    assert "not valid" in str(caught.value) or "expired" in str(caught.value)


def test_link_payload_is_opaque(loaded: Workspace) -> None:
    token = issue_link(loaded, [123456], "en", now=NOW)
    assert "123456" not in token
    assert "123456" not in selfcheck.base64.urlsafe_b64decode(token + "==").hex()


# --- situation -----------------------------------------------------------------------------


@pytest.fixture
def incident(share: ShareResult, loaded: Workspace, tmp_path: Path) -> int:
    dump = tmp_path / "dump.csv"
    make_dump(share.path, dump, fraction=0.5, seed=3)
    return open_incident(loaded, run_trace(loaded, dump).trace_id).id


def test_situation_names_the_persons_exposed_data_per_open_incident(
    loaded: Workspace, incident: int
) -> None:
    with loaded.db.session() as s:
        affected = s.scalar(
            select(m.IncidentPerson.customer_id).where(m.IncidentPerson.incident_id == incident)
        )
        bystander = s.scalar(
            select(m.Customer.id)
            .where(
                m.Customer.id.not_in(
                    select(m.IncidentPerson.customer_id).where(
                        m.IncidentPerson.incident_id == incident
                    )
                )
            )
            .limit(1)
        )
    assert affected is not None and bystander is not None
    mine = situation(loaded, [affected], "it")
    assert mine.affected and mine.language == "it"
    (status,) = mine.incidents
    assert status.incident_id == incident and status.affected
    assert "indirizzo e-mail" in status.labels
    assert any("chiamate" in step for step in status.steps)
    other = situation(loaded, [bystander], "en")
    assert not other.affected and other.incidents[0].steps == ()
    assert other.dpo_contact == loaded.settings.dpo_contact


def test_situation_without_open_incidents_is_empty(loaded: Workspace) -> None:
    assert situation(loaded, [1], "en").incidents == ()


# --- the mail worker -----------------------------------------------------------------------


@pytest.fixture
def sink(loaded: Workspace) -> object:
    with SmtpSink() as server:
        loaded.settings = loaded.settings.model_copy(
            update={"smtp_relay": f"127.0.0.1:{server.port}"}
        )
        yield server


def test_worker_writes_only_to_the_address_held_for_the_customer(
    loaded: Workspace, sink: SmtpSink, people: list[dict[str, str]]
) -> None:
    mailer = PublicMailer(loaded, delay=(0, 0))
    found = lookup_contact(loaded, people[5]["phone"])
    mailer.submit(check_job(found, "en"))
    mailer.submit(check_job(lookup_contact(loaded, "stranger@example.org"), "en"))
    assert mailer.wait_idle()
    mailer.stop()
    assert [msg.recipients for msg in sink.messages] == [[people[5]["email"]]]
    text = body_of(sink.messages[0].data)
    url = re.search(r"/public/check/open/(\S+)", text)
    assert url is not None
    assert read_link(loaded, url.group(1)).customer_ids == found.customer_ids
    assert people[5]["phone"] not in text
    assert mailer.stats.jobs == 2 and mailer.stats.sent == 1


def test_worker_writes_at_most_three_times_an_hour_to_one_address(
    loaded: Workspace, sink: SmtpSink, people: list[dict[str, str]]
) -> None:
    mailer = PublicMailer(loaded, delay=(0, 0))
    found = lookup_contact(loaded, people[1]["email"])
    for _ in range(6):
        mailer.submit(check_job(found, "it"))
    assert mailer.wait_idle()
    assert len(sink.messages) == 3 and mailer.stats.throttled == 3


def test_worker_survives_a_relay_that_is_down_and_says_so_without_addresses(
    loaded: Workspace, people: list[dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    loaded.settings = loaded.settings.model_copy(update={"smtp_relay": "127.0.0.1:9"})
    mailer = PublicMailer(loaded, delay=(0, 0))
    mailer.submit(check_job(lookup_contact(loaded, people[2]["email"]), "en"))
    assert mailer.wait_idle()
    assert mailer.stats.failed == 1
    loaded.settings = loaded.settings.model_copy(update={"smtp_relay": None})
    mailer.submit(check_job(lookup_contact(loaded, people[3]["email"]), "en"))
    assert mailer.wait_idle() and mailer.stats.failed == 2
    assert "smtp_relay" in caplog.text
    assert all(p["email"] not in caplog.text for p in people[:4])
    mailer.stop()


def test_worker_outlives_a_failing_job(loaded: Workspace, sink: SmtpSink) -> None:
    def broken(*args: object) -> selfcheck.Mail:
        raise RuntimeError("boom")

    mailer = PublicMailer(loaded, delay=(0, 0))
    mailer.submit(MailJob((1,), "en", broken))
    mailer.submit(check_job(lookup_contact(loaded, load_customers(loaded, [2])[2]["email"]), "en"))
    assert mailer.wait_idle()
    assert mailer.stats.failed == 1 and len(sink.messages) == 1
