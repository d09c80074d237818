from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import Limits, OdsSource, XlsSource, XlsxSource, open_source
from canarino.sources.spreadsheet import cell_text, cfb_names
from tests.corpus import EMAILS, ods_file, parses_or_refuses, read_all, xls_file, xlsx_file

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=2)


@pytest.mark.parametrize(
    ("make", "cls"), [(xlsx_file, XlsxSource), (ods_file, OdsSource), (xls_file, XlsSource)]
)
def test_first_sheet_is_read_with_its_header(tmp_path: Path, make: object, cls: type) -> None:
    if make is xls_file:
        pytest.importorskip("xlwt")
    source = open_source(make(tmp_path), LIMITS)  # type: ignore[operator]
    assert isinstance(source, cls)
    assert source.layout().headers == ["Nome", "E-mail", "Cellulare"]
    batches = list(source.batches())
    assert [b.data.num_rows for b in batches] == [2, 1]
    rows = [c for _n, c in source.rows()]
    assert {r[1] for r in rows} == EMAILS
    assert rows[0] == ["Mario Rossi", "mario.rossi@posta.it", "393471234567"]
    assert [n for n, _c in source.rows()] == [2, 3, 4]


def test_split_gives_one_source_per_sheet_with_data(tmp_path: Path) -> None:
    path = xlsx_file(
        tmp_path,
        {
            "Vuoto": [],
            "Clienti": [["email"], ["a@x.it"]],
            "Ordini": [["a@x.it", 3], ["b@x.it", 4]],
        },
    )
    source = open_source(path, LIMITS)
    assert source.layout().headers == ["email"]  # the first sheet with data
    parts = source.split()
    assert [p.name.rsplit("!", 1)[1] for p in parts] == ["Clienti", "Ordini"]
    assert parts[1].layout().headers is None
    assert [c for _n, c in parts[1].rows()] == [["a@x.it", "3"], ["b@x.it", "4"]]


@pytest.mark.parametrize(
    ("value", "text"),
    [(3471234567.0, "3471234567"), (2.5, "2.5"), (True, "true"), (None, ""), ("x", "x")],
)
def test_cell_text(value: object, text: str) -> None:
    assert cell_text(value) == text


def test_a_zip_bomb_posing_as_a_workbook_is_refused_before_calamine(tmp_path: Path) -> None:
    path = xlsx_file(tmp_path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/media/zeros.bin", b"\0" * (8 << 20))
    with pytest.raises(InvalidInput, match=r"expands .* times, more than the limit of 200"):
        open_source(path, LIMITS).layout()
    with pytest.raises(InvalidInput, match=r"expands to .* bytes, more than the limit"):
        open_source(path, Limits(max_block_bytes=1 << 20, max_ratio=10_000)).layout()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04xl/" + b"\0" * 100, "zip structure is damaged"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "not a spreadsheet"),
    ],
)
def test_damaged_workbooks_are_one_line_errors(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.xlsx"
    path.write_bytes(data)
    with pytest.raises(InvalidInput, match=message) as info:
        read_all(path, LIMITS)
    assert str(path) in str(info.value)


def test_cfb_names_reads_the_first_directory_sector(tmp_path: Path) -> None:
    pytest.importorskip("xlwt")
    assert "Workbook" in cfb_names(xls_file(tmp_path).read_bytes()[:65536])
    assert cfb_names(b"not a compound file") == set()


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cells=st.lists(
        st.lists(st.text(max_size=10) | st.floats(allow_nan=False), max_size=4), max_size=5
    ),
    flip=st.integers(0, 3000),
)
def test_any_workbook_parses_or_raises_invalid_input(
    tmp_path: Path, cells: list[list[object]], flip: int
) -> None:
    path = xlsx_file(tmp_path, {"S": cells})
    data = bytearray(path.read_bytes())
    if flip % 2:
        data[flip % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))
    parses_or_refuses(path, LIMITS)
