from __future__ import annotations

import csv
import hashlib
import random
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from canarino import models as m
from canarino.customers import parse_filter
from canarino.errors import InvalidInput, NotFound
from canarino.recipients import add_recipient
from canarino.shares import ShareResult, create_share
from canarino.workspace import Workspace

from .conftest import MAIL_DOMAINS


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fp:
        reader = csv.reader(fp)
        header = next(reader)
        return header, list(reader)


def _shape(value: str) -> str:
    return re.sub(r"[a-zà-ÿ]+", "a", re.sub(r"[A-ZÀ-Þ]+", "A", re.sub(r"\d", "9", value)))


def test_share_writes_real_rows_plus_canaries_and_records_the_ledger(
    shared: dict[str, ShareResult],
) -> None:
    share = shared["Vendor A"]
    header, rows = _rows(share.path)
    assert header == ["customer_id", "first_name", "last_name", "email", "phone", "address"]
    assert len(rows) == share.customers + share.canaries == 400 + share.canaries
    assert share.canaries >= 10
    assert hashlib.sha256(share.path.read_bytes()).hexdigest() == share.sha256
    domains = {r[3].split("@")[1] for r in rows}
    assert set(MAIL_DOMAINS) & domains


def test_canary_rows_are_shaped_like_real_rows(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    share = shared["Vendor A"]
    _, rows = _rows(share.path)
    canary_rows = [r for r in rows if r[3].split("@")[1] in MAIL_DOMAINS]
    real_rows = [r for r in rows if r not in canary_rows]
    assert len(canary_rows) == share.canaries
    for column in (0, 4):  # customer number and phone: same shapes as real values
        real_shapes = {_shape(r[column]) for r in real_rows}
        assert {_shape(r[column]) for r in canary_rows} <= real_shapes
    for row in canary_rows:
        assert all(cell.strip() for cell in row)
        assert row[4].startswith("+")


def test_export_bytes_do_not_mark_canaries(shared: dict[str, ShareResult]) -> None:
    raw = shared["Vendor A"].path.read_bytes()
    lines = raw.split(b"\r\n")[1:-1]
    # Same line endings, no quoting difference, no extra column anywhere.
    assert all(line.count(b",") == 5 or b'"' in line for line in lines)
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_canary_positions_are_spread_through_the_file(tmp_path: Path, loaded: Workspace) -> None:
    add_recipient(loaded, "V", "vendor")
    share = create_share(loaded, "V", "email", tmp_path / "v.csv", rng=random.Random(5))
    _, rows = _rows(share.path)
    positions = [i for i, r in enumerate(rows) if r[0].split("@")[1] in MAIL_DOMAINS]
    assert len(positions) == share.canaries
    assert positions[0] < len(rows) // 2 < positions[-1]


def test_each_share_gets_fresh_canaries(shared: dict[str, ShareResult], loaded: Workspace) -> None:
    with loaded.db.session() as s:
        total = s.scalar(select(func.count()).select_from(m.ShareCanary))
        distinct = s.scalar(select(func.count(func.distinct(m.ShareCanary.canary_id))))
    assert total == distinct == sum(sh.canaries for sh in shared.values())


def test_customer_filter_limits_the_share(
    shared: dict[str, ShareResult], people: list[dict[str, str]]
) -> None:
    italians = sum(1 for p in people if p["country"] == "IT")
    assert shared["Agent A1"].customers == italians


@pytest.mark.parametrize("text", ["country", "age>3", "country=IT;DROP TABLE", "name=x"])
def test_bad_customer_filters_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_filter(text)


def test_share_errors_leave_no_file_and_no_record(loaded: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    with pytest.raises(NotFound):
        create_share(loaded, "nobody", "email", out)
    add_recipient(loaded, "V", "vendor")
    with pytest.raises(InvalidInput, match="no customer matches"):
        create_share(loaded, "V", "email", out, customer_filter="country=JP")
    with pytest.raises(ValueError, match="unknown field"):
        create_share(loaded, "V", "email,shoe_size", out)
    assert not out.exists()
    assert not list(tmp_path.glob(".canarino-*"))
    with loaded.db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.Share)) == 0


def test_canary_contact_points_never_repeat_a_stored_one(tmp_path: Path, loaded: Workspace) -> None:
    # A range of 1,000 numbers for ~130 canaries: collisions happen and must be redrawn.
    loaded.settings.phone_ranges = ["+393475551"]
    add_recipient(loaded, "V", "vendor")
    for i in range(3):
        create_share(loaded, "V", "email,phone", tmp_path / f"v{i}.csv")
    with loaded.db.session() as s:
        digests = s.scalars(
            select(m.Pseudonym.digest).where(m.Pseudonym.canary_id.is_not(None))
        ).all()
    assert len(digests) == len(set(digests))


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ('+HYPERLINK("x")', '\'+HYPERLINK("x")'),
        ("-2+3", "-2+3"),
        ("+393471234567", "+393471234567"),
        ("Via Roma 1", "Via Roma 1"),
        ("", ""),
    ],
)
def test_export_cells_cannot_run_as_spreadsheet_formulas(cell: str, safe: str) -> None:
    from canarino.shares import spreadsheet_safe

    assert spreadsheet_safe(cell) == safe


def test_share_canaries_look_like_the_real_rows_of_the_share(
    shared: dict[str, ShareResult], people: list[dict[str, str]]
) -> None:
    _, rows = _rows(shared["Vendor B"].path)
    canary_rows = [r for r in rows if r[3].split("@")[1] in MAIL_DOMAINS]
    real_ids = {p["customer_id"] for p in people}
    low = min(real_ids)
    for row in canary_rows:
        # The fixture's numbers have no gaps: canaries take the next ones, like new customers.
        assert row[0] >= low and len(row[0]) == len(low) and row[0] not in real_ids
    assert len({r[0] for r in canary_rows}) == len(canary_rows)


def _honey_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as fp:
        reader = csv.DictReader(fp)
        return list(reader.fieldnames or []), list(reader)


def test_honey_records_are_canaries_only_shaped_like_a_customers_file(
    loaded: Workspace, tmp_path: Path
) -> None:
    from canarino.customers import import_customers
    from canarino.shares import create_honey_share
    from canarino.workspace import init_workspace

    add_recipient(loaded, "Helpdesk", "system")
    out = tmp_path / "honey.csv"
    result = create_honey_share(loaded, "Helpdesk", out, count=25, rng=random.Random(3))
    header, rows = _honey_rows(out)
    assert header == [
        "first_name",
        "last_name",
        "email",
        "phone",
        "address",
        "city",
        "postcode",
        "region",
        "country",
        "language",
        "birth_date",
        "customer_id",
    ]
    assert len(rows) == result.canaries == 25 and result.customers == 400
    assert all(r["email"].split("@")[1] in MAIL_DOMAINS for r in rows if r["email"])
    with loaded.db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.ShareCanary)) == 25
        assert s.scalar(select(func.count()).select_from(m.ShareCustomer)) == 400
        emails = {p["email"] for p in _stored_customers(loaded)}
    assert not emails & {r["email"] for r in rows}
    # A CRM or helpdesk reads it like any customers file.
    other = init_workspace(tmp_path / "crm", mail_domains=["crm.example"], phone_ranges=[])
    try:
        assert import_customers(other, out).imported == 25
    finally:
        other.close()


def _stored_customers(ws: Workspace) -> list[dict[str, str]]:
    from canarino.customers import CUSTOMER_CONTEXT

    with ws.db.session() as s:
        return [
            ws.vault.open(b, context=CUSTOMER_CONTEXT) for b in s.scalars(select(m.Customer.sealed))
        ]


def test_honey_cells_cannot_run_as_spreadsheet_formulas(ws: Workspace, tmp_path: Path) -> None:
    from canarino.customers import import_customers
    from canarino.shares import create_honey_share

    hostile = tmp_path / "hostile.csv"
    lines = ["email,city,region,customer_id"] + [
        f'p{i}@posta.it,=HYPERLINK("http://x"),@SUM(A1),=1+{i}' for i in range(30)
    ]
    hostile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_customers(ws, hostile).imported == 30
    add_recipient(ws, "CRM", "system")
    out = tmp_path / "honey.csv"
    create_honey_share(ws, "CRM", out, count=10)
    raw = out.read_text(encoding="utf-8")
    cells = [c for line in raw.splitlines()[1:] for c in next(csv.reader([line]))]
    assert cells and not any(c[:1] in ("=", "@") for c in cells)


def test_honey_errors_leave_no_file_and_no_record(loaded: Workspace, tmp_path: Path) -> None:
    from canarino.shares import create_honey_share

    out = tmp_path / "honey.csv"
    with pytest.raises(NotFound):
        create_honey_share(loaded, "nobody", out)
    add_recipient(loaded, "CRM", "system")
    with pytest.raises(InvalidInput, match="at least 1"):
        create_honey_share(loaded, "CRM", out, count=0)
    with pytest.raises(InvalidInput, match="no customer matches"):
        create_honey_share(loaded, "CRM", out, customer_filter="country=JP")
    with pytest.raises(ValueError, match="unknown field"):
        create_honey_share(loaded, "CRM", out, fields="email,shoe_size")
    assert not out.exists() and not list(tmp_path.glob(".canarino-*"))
    with loaded.db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.Share)) == 0


def test_honey_command_writes_the_file_and_reports_json(loaded: Workspace, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from canarino.cli import app

    add_recipient(loaded, "CRM", "system")
    out = tmp_path / "honey.csv"
    args = ["canaries", "honey", "--recipient", "CRM", "--out", str(out), "--count", "12"]
    result = CliRunner().invoke(app, [*args, "--json", "-w", str(loaded.settings.workspace)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["records"] == 12 and report["recipient"] == "CRM"
    assert len(_honey_rows(out)[1]) == 12
    failed = CliRunner().invoke(
        app, [*args[:3], "Nobody", *args[4:], "-w", str(loaded.settings.workspace)]
    )
    assert failed.exit_code == 1 and "Error:" in failed.output
