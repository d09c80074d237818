from __future__ import annotations

import csv
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from canarino.errors import InvalidInput
from canarino.incidents import assess_risk, open_incident, update_facts
from canarino.register import COLUMNS, export_register, register_rows, write_register
from canarino.shares import ShareResult
from canarino.testing import make_dump
from canarino.trace import run_trace
from canarino.workspace import Workspace

AWARE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOSTILE = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def two_incidents(shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path) -> list[int]:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.25, seed=3)
    trace = run_trace(loaded, dump).trace_id
    first = open_incident(loaded, trace, aware_at=AWARE, title=HOSTILE).id
    second = open_incident(loaded, trace, aware_at=AWARE, title="Encrypted laptop").id
    update_facts(
        loaded,
        second,
        "laptop was encrypted",
        encrypted=True,
        texts={"measures": "device wiped remotely", "consequences": "none expected"},
    )
    assess_risk(loaded, second, "none", "encrypted, key safe")
    return [first, second]


def test_register_lists_every_incident_even_when_nothing_is_notified(
    loaded: Workspace, two_incidents: list[int]
) -> None:
    rows = register_rows(loaded)
    assert [r["incident"] for r in rows] == [str(i) for i in two_incidents]
    quiet = rows[1]
    assert "eu.gdpr.art33.authority" not in quiet["owed"]
    assert "eu.gdpr.art33-5.register" in quiet["owed"]
    assert "risk level 'none' does not meet" in quiet["not_owed"]
    assert quiet["measures"] == "device wiped remotely"
    assert quiet["encryption"] == "yes, key safe"
    assert quiet["assessments"] == "3"
    assert "eu.gdpr.art33.authority" in rows[0]["owed"]


def test_csv_register_neutralises_formulas(
    loaded: Workspace, two_incidents: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "register.csv"
    assert export_register(loaded, out) == 2
    with out.open(encoding="utf-8", newline="") as fp:
        rows = list(csv.reader(fp))
    assert rows[0] == [label for _, label in COLUMNS]
    assert rows[1][1] == "'" + HOSTILE


def test_xlsx_register_writes_text_never_formulas(
    loaded: Workspace, two_incidents: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "register.xlsx"
    export_register(loaded, out)
    with zipfile.ZipFile(out) as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
        strings = book.read("xl/sharedStrings.xml").decode()
        workbook = book.read("xl/workbook.xml").decode()
    assert "<f>" not in sheet
    assert '=HYPERLINK("http://evil.example' in strings
    assert 'name="Breach register"' in workbook


def test_bad_destination_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\.csv or \.xlsx"):
        write_register([], tmp_path / "register.pdf")
    with pytest.raises(InvalidInput, match="no such folder"):
        write_register([], tmp_path / "missing" / "register.csv")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_register(tmp_path: Path) -> None:
    out = tmp_path / "register.csv"
    out.write_text("previous", encoding="utf-8")
    with pytest.raises(KeyError):
        write_register([{"incident": "1"}], out)
    assert out.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["register.csv"]
