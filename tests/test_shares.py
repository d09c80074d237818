from __future__ import annotations

import csv
import hashlib
import random
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from canarino import models as m
from canarino.errors import InvalidInput, NotFound
from canarino.recipients import add_recipient
from canarino.shares import ShareResult, create_share, parse_filter
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
