from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from canarino import models as m
from canarino.callers import (
    CROCKFORD,
    MAX_CHECKS,
    MAX_REPORT,
    active_contacts,
    check_code,
    compose_status_mail,
    list_contacts,
    normalize_code,
    register_contact,
    report_contact,
)
from canarino.cli import app
from canarino.customers import import_customers
from canarino.errors import InvalidInput, NotFound
from canarino.settings import load_settings
from canarino.testing import make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


@pytest.fixture(scope="module")
def people() -> list[dict[str, str]]:
    return make_customers(12, seed=31)


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


# --- registering ---------------------------------------------------------------------------


def test_registering_gives_a_readable_code_and_stores_only_its_keyed_hash(
    loaded: Workspace,
) -> None:
    reg = register_contact(loaded, 1, "phone", "your notice of 2 March", "Alex", now=NOW)
    assert CODE.match(reg.code) and reg.customer_id == 1
    assert reg.expires_at == NOW + timedelta(minutes=30)
    raw = reg.code.replace("-", "")
    with loaded.db.session() as s:
        row = s.get(m.OutboundContact, reg.id)
        assert row is not None
        stored = [str(getattr(row, c.name)) for c in m.OutboundContact.__table__.columns]
        audit = s.scalars(select(m.AuditEvent)).all()
    assert not any(raw in value or reg.code in value for value in stored)
    assert len(row.code_digest) == 64
    assert [(a.actor, a.action, a.target) for a in audit] == [
        ("Alex", "change", f"outbound-contact:{reg.id}")
    ]


def test_codes_are_random(loaded: Workspace) -> None:
    codes = {register_contact(loaded, 1, "email", "p", "s").code for _ in range(50)}
    assert len(codes) == 50
    assert set("".join(codes).replace("-", "")) <= set(CROCKFORD)


def test_registering_by_contact_links_the_customer_when_there_is_one(
    loaded: Workspace, people: list[dict[str, str]]
) -> None:
    mine = register_contact(loaded, people[3]["phone"], "sms", "p", "s")
    assert mine.customer_id == 4
    stranger = register_contact(loaded, "+39 347 000 1111", "phone", "p", "s")
    assert stranger.customer_id is None


@pytest.mark.parametrize(
    ("who", "channel", "purpose", "staff", "ttl", "error", "message"),
    [
        (1, "fax", "p", "s", timedelta(minutes=30), InvalidInput, "unknown channel"),
        (1, "phone", "  ", "s", timedelta(minutes=30), InvalidInput, "purpose"),
        (1, "phone", "p", "\x00\x01", timedelta(minutes=30), InvalidInput, "purpose"),
        (1, "phone", "p", "s", timedelta(seconds=5), InvalidInput, "between"),
        (1, "phone", "p", "s", timedelta(days=8), InvalidInput, "between"),
        (999, "phone", "p", "s", timedelta(minutes=30), NotFound, "no customer"),
        (10**30, "phone", "p", "s", timedelta(minutes=30), NotFound, "no customer"),
        (-1, "phone", "p", "s", timedelta(minutes=30), NotFound, "no customer"),
        ("someone@example.org", "phone", "p", "s", timedelta(minutes=30), InvalidInput, "phone"),
        ("<b>x</b>", "phone", "p", "s", timedelta(minutes=30), InvalidInput, "not a phone"),
    ],
    ids=[
        "channel",
        "purpose",
        "staff",
        "short-ttl",
        "long-ttl",
        "customer",
        "huge-customer",
        "negative-customer",
        "mismatch",
        "html",
    ],
)
def test_bad_registrations_are_refused(
    loaded: Workspace,
    who: int | str,
    channel: str,
    purpose: str,
    staff: str,
    ttl: timedelta,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        register_contact(loaded, who, channel, purpose, staff, ttl)


def test_a_customer_without_a_phone_cannot_be_called(ws: Workspace, tmp_path: Path) -> None:
    person = make_customers(1, seed=4)[0]
    person["phone"] = ""
    import_customers(ws, write_customers_csv(tmp_path / "one.csv", [person]))
    with pytest.raises(InvalidInput, match="has no phone number"):
        register_contact(ws, 1, "sms", "p", "s")


def test_hostile_purpose_and_staff_are_cleaned_and_capped(loaded: Workspace) -> None:
    reg = register_contact(loaded, 1, "phone", "a\x1b[31mb\r\nc" + "x" * 1000, "Eve\x00" * 50)
    (view,) = list_contacts(loaded)
    assert view.id == reg.id and "\x1b" not in view.purpose and "\n" not in view.purpose
    assert len(view.purpose) == 300 and len(view.staff) <= 100 and "\x00" not in view.staff


def test_list_shows_newest_first_and_can_keep_only_active(loaded: Workspace) -> None:
    old = register_contact(loaded, 1, "phone", "old", "s", now=NOW - timedelta(days=1))
    new = register_contact(loaded, 2, "email", "new", "s", now=NOW)
    assert [c.id for c in list_contacts(loaded, now=NOW)] == [new.id, old.id]
    assert [c.id for c in list_contacts(loaded, active_only=True, now=NOW)] == [new.id]
    assert list_contacts(loaded, now=NOW)[1].as_dict(NOW)["active"] is False


# --- checking codes ------------------------------------------------------------------------


def test_a_registered_code_checks_out_however_it_is_typed(loaded: Workspace) -> None:
    reg = register_contact(loaded, 1, "phone", "your notice", "Alex", now=NOW)
    typed = reg.code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    result = check_code(loaded, typed, now=NOW + timedelta(minutes=1))
    assert result.genuine and result.contact is not None
    assert (result.contact.staff, result.contact.purpose, result.contact.channel) == (
        "Alex",
        "your notice",
        "phone",
    )


def test_a_code_expires(loaded: Workspace) -> None:
    reg = register_contact(loaded, 1, "phone", "p", "s", timedelta(minutes=15), now=NOW)
    assert check_code(loaded, reg.code, now=NOW + timedelta(minutes=14)).genuine
    late = check_code(loaded, reg.code, now=NOW + timedelta(minutes=15, seconds=1))
    assert not late.genuine and late.reason == "expired"


def test_a_code_checked_too_often_stops_working(loaded: Workspace) -> None:
    reg = register_contact(loaded, 1, "phone", "p", "s", now=NOW)
    answers = [check_code(loaded, reg.code, now=NOW).genuine for _ in range(MAX_CHECKS + 1)]
    assert answers == [True] * MAX_CHECKS + [False]


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("AAAA-BBBB-CCCC", "unknown"),
        ("", "malformed"),
        ("123", "malformed"),
        ("<script>alert(1)</script>", "malformed"),
        ("A" * 10_000, "malformed"),
        ("ÀÀÀÀ-ÀÀÀÀ-ÀÀÀÀ", "malformed"),
        ("AAAA-BBBB-CCC\x00", "malformed"),
    ],
)
def test_invalid_codes_are_not_ours(loaded: Workspace, typed: str, reason: str) -> None:
    register_contact(loaded, 1, "phone", "p", "s")
    result = check_code(loaded, typed)
    assert not result.genuine and result.reason == reason


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("7kqm 4x2p dq9r", "7KQM4X2PDQ9R"), ("OIL0-0000-0000", "0110" + "0" * 8), ("7KQ", None)],
)
def test_codes_are_read_forgivingly(typed: str, expected: str | None) -> None:
    assert normalize_code(typed) == expected


# --- the status message --------------------------------------------------------------------


def test_status_message_lists_contacts_under_way_or_says_no(loaded: Workspace) -> None:
    register_contact(loaded, 2, "phone", "your notice of 2 March", "Alex", now=NOW)
    register_contact(loaded, 2, "email", "old business", "Bea", now=NOW - timedelta(days=2))
    assert [c.staff for c in active_contacts(loaded, [2], now=NOW)] == ["Alex"]
    yes = compose_status_mail(loaded, [2], "en", NOW)
    assert "Yes." in yes.text and "Alex" in yes.text and "your notice of 2 March" in yes.text
    assert "Bea" not in yes.text
    no = compose_status_mail(loaded, [3], "it", NOW)
    assert "No." in no.text and "riattacchi" in no.text and "Alex" not in no.text


# --- reports -------------------------------------------------------------------------------


def test_a_report_becomes_a_sighting_with_only_a_pseudonym_of_the_contact(
    loaded: Workspace, people: list[dict[str, str]]
) -> None:
    result = report_contact(
        loaded,
        contact=people[0]["email"],
        channel="phone",
        caller="+39 02 1234 5678",
        text="They knew my ticket number and asked for the code I got by SMS.",
        now=NOW,
    )
    assert result.recorded
    with loaded.db.session() as s:
        (row,) = s.scalars(select(m.Sighting)).all()
    assert row.id == result.sighting_id and row.canary_id is None and row.channel == "voice"
    assert row.seen_at == NOW and not row.expected_use and len(row.dedup_key) == 64
    assert row.contact_digest == loaded.vault.pseudonyms.digest("email", people[0]["email"])
    assert row.evidence == {
        "kind": "customer_report",
        "caller": "+39 02 1234 5678",
        "text": "They knew my ticket number and asked for the code I got by SMS.",
        "provider": "public",
    }
    assert people[0]["email"] not in json.dumps(row.evidence)


def test_the_same_report_twice_is_kept_once(loaded: Workspace) -> None:
    kwargs = {"contact": "+39 347 111 2222", "channel": "sms", "caller": "x", "text": "y"}
    first = report_contact(loaded, now=NOW, **kwargs)
    again = report_contact(loaded, now=NOW + timedelta(minutes=5), **kwargs)
    assert first.recorded and not again.recorded and again.sighting_id == first.sighting_id


def test_hostile_reports_are_cleaned_capped_or_refused(loaded: Workspace) -> None:
    huge = report_contact(
        loaded,
        contact="victim@example.org",
        channel="email",
        caller="<img src=x onerror=alert(1)>\x00" * 50,
        text="\x1b[2J<script>alert(1)</script>\r\n" * 1000,
    )
    with loaded.db.session() as s:
        row = s.get(m.Sighting, huge.sighting_id)
        assert row is not None
    assert len(row.evidence["text"]) == MAX_REPORT and len(row.evidence["caller"]) == 200
    assert "\x1b" not in row.evidence["text"] and "\x00" not in row.evidence["caller"]
    with pytest.raises(InvalidInput, match="how you were contacted"):
        report_contact(loaded, contact="victim@example.org", channel="pigeon")
    with pytest.raises(InvalidInput):
        report_contact(loaded, contact="", channel="phone")


# --- command line --------------------------------------------------------------------------


def test_cli_registers_a_contact_and_lists_it_without_the_code(loaded: Workspace) -> None:
    runner = CliRunner()
    w = ["-w", str(loaded.settings.workspace)]
    result = runner.invoke(
        app,
        [
            *("callers", "register", "--customer", "1", "--channel", "phone"),
            *("--purpose", "your notice [bold]", "--staff", "Alex", "--json", *w),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    code = json.loads(result.output)["code"]
    assert CODE.match(code) and check_code(loaded, code).genuine
    listed = runner.invoke(app, ["callers", "list", "--json", *w], catch_exceptions=False)
    (item,) = json.loads(listed.output)
    assert item["purpose"] == "your notice [bold]" and code not in listed.output
    table = runner.invoke(app, ["callers", "list", "--active", *w], catch_exceptions=False)
    assert "Alex" in table.output and "active" in table.output


@pytest.mark.parametrize(
    "args",
    [
        ["--channel", "phone", "--purpose", "p", "--staff", "s"],
        [
            *("--customer", "1", "--contact", "+393471112222", "--channel", "phone"),
            *("--purpose", "p", "--staff", "s"),
        ],
        ["--customer", "1", "--channel", "fax", "--purpose", "p", "--staff", "s"],
        ["--customer", "1", "--channel", "phone", "--purpose", "p", "--staff", "s", "--ttl", "0"],
    ],
    ids=["neither", "both", "channel", "ttl"],
)
def test_cli_refuses_bad_registrations_with_one_line(loaded: Workspace, args: list[str]) -> None:
    result = CliRunner().invoke(
        app, ["callers", "register", *args, "-w", str(loaded.settings.workspace)]
    )
    assert result.exit_code == 1 and "Error:" in result.output
