from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from canarino import models as m
from canarino.canaries import CONSUMER_PROVIDERS, Mailbox, email_pattern
from canarino.customers import import_customers
from canarino.errors import InvalidInput
from canarino.mailboxes import (
    POOL_CONTEXT,
    add_mailboxes,
    list_mailboxes,
    pool_addresses,
    pool_summary,
    propose,
    read_mailbox_file,
    write_mailbox_file,
)
from canarino.recipients import add_recipient
from canarino.shares import CANARY_CONTEXT, create_share
from canarino.testing import make_customer_base, write_customers_csv
from canarino.workspace import Workspace, init_workspace

LOOKALIKE = ["studio-rossi.it", "casa-bianchi.it", "posta-verdi.it"]
RANGES = ["+39347555", "+39333812", "+39320447", "+39340111", "+39328222"]
FIELDS = "customer_id,first_name,last_name,email,phone,city,birth_date"


@pytest.fixture(scope="module")
def people() -> list[dict[str, str]]:
    return make_customer_base("it", 1_000, seed=3)


def _workspace(root: Path, people: list[dict[str, str]]) -> Workspace:
    ws = init_workspace(root, mail_domains=LOOKALIKE, phone_ranges=RANGES)
    ws.settings.control_canaries = 3
    import_customers(ws, write_customers_csv(root.parent / f"{root.name}.csv", people))
    return ws


@pytest.fixture
def ws(tmp_path: Path, people: list[dict[str, str]]) -> Iterator[Workspace]:
    made = _workspace(tmp_path / "ws", people)
    yield made
    made.close()


def _canary_rows(ws: Workspace, share_id: int) -> list[dict[str, str]]:
    with ws.db.session() as s:
        sealed = s.scalars(
            select(m.Canary.sealed).join(m.ShareCanary).where(m.ShareCanary.share_id == share_id)
        ).all()
    return [ws.vault.open(b, context=CANARY_CONTEXT) for b in sealed]


def _share(ws: Workspace, name: str, tmp_path: Path) -> list[dict[str, str]]:
    add_recipient(ws, name, "vendor")
    result = create_share(ws, name, FIELDS, tmp_path / f"{name}.csv", rng=random.Random(name))
    return _canary_rows(ws, result.share_id)


def test_proposals_follow_the_customers_providers_and_recipes(
    ws: Workspace, people: list[dict[str, str]]
) -> None:
    boxes = propose(ws, 300, rng=random.Random(1))
    assert len(boxes) == 300 and len({b.address for b in boxes}) == 300
    customers = {p["email"] for p in people}
    assert not customers & {b.address for b in boxes}
    assert all(b.domain in CONSUMER_PROVIDERS and b.country == "IT" for b in boxes)
    real = Counter(p["email"].rsplit("@", 1)[1] for p in people)
    real_gmail = real["gmail.com"] / sum(c for d, c in real.items() if d in CONSUMER_PROVIDERS)
    gmail = sum(b.domain == "gmail.com" for b in boxes) / len(boxes)
    assert gmail == pytest.approx(real_gmail, abs=0.08)
    # The local part is built from the proposal's own name, as customers build theirs.
    named = [
        b
        for b in boxes
        if {"f", "l", "i"}
        & set(email_pattern(b.address.split("@")[0], b.first_name, b.last_name, b.birth_year))
    ]
    assert len(named) >= 0.8 * len(boxes)
    only_libero = propose(ws, 20, providers=["Libero.it"], rng=random.Random(2))
    assert {b.domain for b in only_libero} == {"libero.it"}


def test_pool_mailboxes_go_to_one_canary_each_with_their_name(
    ws: Workspace, tmp_path: Path
) -> None:
    boxes = propose(ws, 120, rng=random.Random(3))
    assert add_mailboxes(ws, boxes) == 120
    by_address = {b.address: b for b in boxes}
    first = _share(ws, "Vendor A", tmp_path)
    second = _share(ws, "Vendor B", tmp_path)
    used = [c for c in first + second if c["email"] in by_address]
    # Canaries drawn like customers at a provider took a pool mailbox there...
    assert len(used) >= 0.6 * len(first + second)
    assert len({c["email"] for c in used}) == len(used)
    for c in used:
        box = by_address[c["email"]]
        assert (c["first_name"].lower(), c["last_name"].lower()) == (
            box.first_name.lower(),
            box.last_name.lower(),
        )
        if c.get("birth_date"):
            assert c["birth_date"].startswith(str(box.birth_year))
    # ... and the others stayed on the monitored domains.
    rest = [c for c in first + second if c["email"] not in by_address]
    assert all(c["email"].rsplit("@", 1)[1] in LOOKALIKE for c in rest)
    with ws.db.session() as s:
        taken = s.execute(
            select(m.PoolMailbox.canary_id).where(m.PoolMailbox.used_at.is_not(None))
        ).all()
        controls = s.scalars(select(m.Canary.sealed).where(m.Canary.layer == "control")).all()
    control_used = sum(
        ws.vault.open(b, context=CANARY_CONTEXT)["email"] in by_address for b in controls
    )
    assert len(taken) == len(used) + control_used
    assert all(cid is not None for (cid,) in taken)
    summary = {p.domain: p for p in pool_summary(ws)}
    assert sum(p.total for p in summary.values()) == 120
    assert sum(p.free for p in summary.values()) == 120 - len(taken)
    listed = list_mailboxes(ws)
    assert sum(used_flag for _, used_flag in listed) == len(taken)
    assert set(pool_addresses(ws, [c["email"] for c in used] + ["stranger@gmail.com"])) == {
        c["email"] for c in used
    }


def test_a_used_mailbox_is_never_given_again(ws: Workspace, tmp_path: Path) -> None:
    boxes = propose(ws, 4, providers=["gmail.com"], rng=random.Random(4))
    add_mailboxes(ws, boxes)
    addresses = {b.address for b in boxes}
    seen: list[str] = []
    for name in ("V1", "V2", "V3"):
        seen += [c["email"] for c in _share(ws, name, tmp_path) if c["email"] in addresses]
    assert len(seen) == 4 and len(set(seen)) == len(seen)
    # With the pool used up, gmail-like canaries fall back to the look-alike domains.
    add_recipient(ws, "V4", "vendor")
    result = create_share(ws, "V4", FIELDS, tmp_path / "v4.csv", rng=random.Random(4))
    assert not {c["email"] for c in _canary_rows(ws, result.share_id)} & addresses
    assert result.mailboxes_short > 0


def test_without_a_pool_canaries_stay_on_monitored_domains(ws: Workspace, tmp_path: Path) -> None:
    canaries = _share(ws, "Vendor A", tmp_path)
    assert canaries and all(c["email"].rsplit("@", 1)[1] in LOOKALIKE for c in canaries)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        (Mailbox("not-an-address"), "not a valid email address"),
        (Mailbox("x@@gmail.com"), "not a valid email address"),
        (Mailbox("giulia@studio-rossi.it"), "already a monitored mail domain"),
        (Mailbox("giulia.conti@gmail.com", first_name="Giulia"), "both first_name and last_name"),
        (Mailbox("giulia.conti@gmail.com", "Giulia", "Conti", 1800), "not a plausible year"),
        (Mailbox("giulia.conti@gmail.com", country="ITA"), "not a two-letter ISO code"),
    ],
)
def test_malformed_mailboxes_are_refused_and_nothing_is_added(
    ws: Workspace, box: Mailbox, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        add_mailboxes(ws, [Mailbox("fine.one@gmail.com"), box])
    assert str(refused.value).startswith("mailbox 2:")
    assert box.address not in str(refused.value)
    assert pool_summary(ws) == []


def test_known_addresses_and_repeats_are_refused(
    ws: Workspace, people: list[dict[str, str]], tmp_path: Path
) -> None:
    with pytest.raises(
        InvalidInput, match="mailbox 1: the address is already a customer's or a canary's"
    ):
        add_mailboxes(ws, [Mailbox(people[0]["email"].upper())])
    with pytest.raises(InvalidInput, match="mailbox 2: the same address as mailbox 1"):
        add_mailboxes(ws, [Mailbox("a.b@gmail.com"), Mailbox("A.B@Gmail.com")])
    add_mailboxes(ws, [Mailbox("a.b@gmail.com")])
    with pytest.raises(InvalidInput, match="mailbox 1: already in the mailbox pool"):
        add_mailboxes(ws, [Mailbox("a.b@gmail.com")])
    with pytest.raises(InvalidInput, match="no mailbox given"):
        add_mailboxes(ws, [])
    canary = next(
        c["email"]
        for c in _share(ws, "Vendor A", tmp_path)
        if c["email"].rsplit("@", 1)[1] in LOOKALIKE
    )
    with pytest.raises(InvalidInput, match="already a monitored mail domain"):
        add_mailboxes(ws, [Mailbox(canary)])
    # A domain dropped from the monitored ones still holds canaries: never reused.
    ws.settings.mail_domains = [d for d in LOOKALIKE if d != canary.rsplit("@", 1)[1]]
    with pytest.raises(InvalidInput, match="already a customer's or a canary's"):
        add_mailboxes(ws, [Mailbox(canary)])


def test_mailbox_files_round_trip_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    boxes = [
        Mailbox("giulia.conti91@gmail.com", "Giulia", "Conti", 1991, "IT"),
        Mailbox("x@libero.it"),
    ]
    path = tmp_path / "boxes.csv"
    write_mailbox_file(path, boxes)
    assert read_mailbox_file(path) == boxes
    (tmp_path / "nohead.csv").write_text("email\nx@gmail.com\n")
    with pytest.raises(InvalidInput, match="no 'address' column"):
        read_mailbox_file(tmp_path / "nohead.csv")
    (tmp_path / "year.csv").write_text("address,birth_year\nx@gmail.com,nineteen\n")
    with pytest.raises(InvalidInput, match="line 2: birth_year is not a year"):
        read_mailbox_file(tmp_path / "year.csv")
    (tmp_path / "latin1.csv").write_bytes("address\nniccolò@gmail.com\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match="not a UTF-8 CSV file"):
        read_mailbox_file(tmp_path / "latin1.csv")
    with pytest.raises(InvalidInput, match="no file"):
        read_mailbox_file(tmp_path / "missing.csv")


def test_pool_addresses_are_sealed_at_rest(ws: Workspace) -> None:
    add_mailboxes(ws, [Mailbox("giulia.conti91@gmail.com", "Giulia", "Conti", 1991)])
    with ws.db.session() as s:
        row = s.scalars(select(m.PoolMailbox)).one()
    assert b"giulia" not in row.sealed and row.domain == "gmail.com"
    assert ws.vault.open(row.sealed, context=POOL_CONTEXT)["address"] == "giulia.conti91@gmail.com"


def test_the_cli_proposes_adds_and_lists(ws: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from canarino.cli import app

    runner = CliRunner()
    w = ("-w", str(ws.settings.workspace))
    out = tmp_path / "proposed.csv"
    result = runner.invoke(
        app, ["canaries", "mailboxes", "propose", "--count", "5", "--out", str(out), *w]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as fp:
        assert len(list(csv.DictReader(fp))) == 5
    result = runner.invoke(app, ["canaries", "mailboxes", "add", "--file", str(out), *w])
    assert result.exit_code == 0 and "5 mailboxes added" in result.output
    result = runner.invoke(app, ["canaries", "mailboxes", "add", "bad-address", *w])
    assert result.exit_code == 1 and "not a valid email address" in result.output
    result = runner.invoke(
        app, ["canaries", "mailboxes", "add", "a@gmail.com", "b@gmail.com", "--first-name", "A", *w]
    )
    assert result.exit_code == 1 and "describe one" in result.output
    result = runner.invoke(app, ["canaries", "mailboxes", "list", "--json", *w])
    assert result.exit_code == 0 and '"free": ' in result.output
