from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from canarino import models as m
from canarino.customers import import_customers, load_customers, map_columns, parse_mapping
from canarino.errors import InvalidInput
from canarino.testing import HEADERS_EN_ALT, write_customers_csv
from canarino.workspace import Workspace


def _counts(ws: Workspace) -> tuple[int, int]:
    with ws.db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(m.Customer)) or 0,
            s.scalar(select(func.count()).select_from(m.Pseudonym)) or 0,
        )


def _write(
    path: Path, rows: list[list[str]], delimiter: str = ",", encoding: str = "utf-8"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as fp:
        csv.writer(fp, delimiter=delimiter).writerows(rows)
    return path


def test_import_stores_customers_and_pseudonyms(ws: Workspace, customers_csv: Path) -> None:
    report = import_customers(ws, customers_csv)
    assert (report.rows, report.imported, report.unchanged, report.problems) == (400, 400, 0, [])
    assert report.columns["e-mail"] == "email" and report.columns["cellulare"] == "phone"
    assert _counts(ws) == (400, 800)


def test_importing_the_same_file_twice_changes_nothing(ws: Workspace, customers_csv: Path) -> None:
    import_customers(ws, customers_csv)
    before = _counts(ws)
    again = import_customers(ws, customers_csv)
    assert (again.imported, again.unchanged) == (0, 400)
    assert _counts(ws) == before


def test_import_reads_english_headers_and_semicolons(
    ws: Workspace, tmp_path: Path, people: list[dict[str, str]]
) -> None:
    path = write_customers_csv(tmp_path / "en.csv", people[:50], HEADERS_EN_ALT, delimiter=";")
    report = import_customers(ws, path)
    assert report.imported == 50
    assert report.columns["Email Address"] == "email"


def test_import_normalises_identifiers_and_seals_the_record(ws: Workspace, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.csv",
        [
            ["Nome", "E-mail", "Cellulare", "Paese"],
            ["Anna", " Anna.Verdi@Posta.IT ", "347 123 4567", "Italia"],
        ],
    )
    import_customers(ws, path)
    with ws.db.session() as s:
        row = s.scalars(select(m.Customer)).one()
        assert b"Anna" not in row.sealed and row.country == "IT" and row.language == "it"
    record = load_customers(ws, [row.id])[row.id]
    assert record["email"] == "anna.verdi@posta.it"
    assert record["phone"] == "+393471234567"


def test_malformed_rows_are_reported_with_line_and_reason_and_skipped(
    ws: Workspace, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "c.csv",
        [
            ["nome", "email", "telefono", "paese"],
            ["Ok", "ok@posta.it", "3471234567", "IT"],
            ["NoId", "", "", "IT"],
            ["BadMail", "not-an-address", "", "IT"],
            ["BadPhone", "", "12", "IT"],
            ["BadCountry", "x@posta.it", "", "Atlantis"],
            ["Short", "y@posta.it"],
        ],
    )
    report = import_customers(ws, path)
    assert report.imported == 1
    reasons = {p.line: p.reason for p in report.problems}
    assert set(reasons) == {3, 4, 5, 6, 7}
    assert "no email address and no phone number" in reasons[3]
    assert "email" in reasons[4]
    assert "phone" in reasons[5]
    assert "country" in reasons[6]
    assert "cells" in reasons[7]
    assert all("not-an-address" not in r for r in reasons.values())


def test_map_overrides_headers(ws: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", [["contatto", "x"], ["a@posta.it", "1"]])
    with pytest.raises(InvalidInput, match="no email or phone column"):
        import_customers(ws, path)
    report = import_customers(ws, path, mapping=parse_mapping(["contatto=email", "x=ignore"]))
    assert report.imported == 1 and report.columns == {"contatto": "email"}


@pytest.mark.parametrize("item", ["noequals", "=email", "col=unknownfield"])
def test_parse_mapping_refuses_bad_items(item: str) -> None:
    with pytest.raises(InvalidInput):
        parse_mapping([item])


def test_map_columns_gives_each_field_to_one_column() -> None:
    assert map_columns(["email", "mail", "nome"], {}) == {0: "email", 2: "first_name"}


def test_default_country_parses_national_phone_numbers(ws: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", [["name", "phone"], ["A", "01 23 45 67 89"]])
    import_customers(ws, path, default_country="France")
    with ws.db.session() as s:
        cid = s.scalars(select(m.Customer.id)).one()
    assert load_customers(ws, [cid])[cid]["phone"] == "+33123456789"


def test_unknown_default_country_is_an_error(ws: Workspace, customers_csv: Path) -> None:
    with pytest.raises(InvalidInput, match="not a country"):
        import_customers(ws, customers_csv, default_country="Narnia")


def test_latin1_file_is_decoded(ws: Workspace, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.csv",
        [["nome", "città", "email"], ["Niccolò", "Forlì", "n@posta.it"]],
        encoding="latin-1",
    )
    import_customers(ws, path)
    with ws.db.session() as s:
        cid = s.scalars(select(m.Customer.id)).one()
    assert load_customers(ws, [cid])[cid]["city"] == "Forlì"


HOSTILE = {
    "empty": b"",
    "header_only": b"nome,email,cellulare\r\n",
    "binary": bytes(range(256)) * 40,
    # Past the first megabyte, which decides the encoding.
    "invalid_utf8_later": b"nome,email\r\n" + b"n,\r\n" * 300_000 + b"\xff\xfe\xfa,b@posta.it\r\n",
    "long_line": b"email\r\n" + b"x" * (10 * 1024 * 1024) + b"\r\n",
    "many_columns": (",".join(f"c{i}" for i in range(10_000)) + "\r\n").encode(),
    "no_header": b"a@posta.it,3471234567\r\nb@posta.it,3471234568\r\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_customer_files_fail_cleanly_and_change_nothing(
    loaded: Workspace, tmp_path: Path, name: str
) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(HOSTILE[name])
    before = _counts(loaded)
    with pytest.raises(InvalidInput) as info:
        import_customers(loaded, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "posta.it" not in message
    assert _counts(loaded) == before


def test_failure_mid_file_rolls_back_rows_already_read(ws: Workspace, tmp_path: Path) -> None:
    good = b"".join(f"p{i},p{i}@posta.it\r\n".encode() for i in range(5_000))
    path = tmp_path / "c.csv"
    path.write_bytes(b"nome,email\r\n" + good + b"x," + b"y" * (2 * 1024 * 1024) + b"\r\n")
    with pytest.raises(InvalidInput, match="longer than"):
        import_customers(ws, path)
    assert _counts(ws) == (0, 0)
