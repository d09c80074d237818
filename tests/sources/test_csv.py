from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import Limits, open_source
from canarino.sources.csv import CsvSource, choose_delimiter, detect_encoding, is_header

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=1000)


@pytest.mark.parametrize(
    ("head", "encoding"),
    [
        (codecs.BOM_UTF8 + b"a,b", "utf-8-sig"),
        (codecs.BOM_UTF16_LE + "a,b".encode("utf-16-le"), "utf-16"),
        ("città".encode(), "utf-8"),
        ("città;x".encode("cp1252"), "cp1252"),
        ("€uro".encode("cp1252"), "cp1252"),
        (b"ok" + "à".encode()[:1], "utf-8"),
    ],
)
def test_detect_encoding(head: bytes, encoding: str) -> None:
    assert detect_encoding(head) == encoding


@pytest.mark.parametrize(
    ("lines", "delimiter"),
    [
        (["a,b,c", "1,2,3"], ","),
        (["a;b;c", "1;2,5;3"], ";"),
        (["a\tb", "1\t2"], "\t"),
        (["a|b|c", "1|2|3"], "|"),
        (["solo@posta.it", "altro@posta.it"], ","),
    ],
)
def test_choose_delimiter(lines: list[str], delimiter: str) -> None:
    assert choose_delimiter(lines) == delimiter


@pytest.mark.parametrize(
    ("cells", "header"),
    [
        (["nome", "email"], True),
        (["Given Name", "Mobile"], True),
        (["x@posta.it", "Mario"], False),
        (["Mario", "+39 347 123 4567"], False),
        (["colonna uno", "colonna due"], True),
    ],
)
def test_is_header(cells: list[str], header: bool) -> None:
    assert is_header(cells) is header


def _source(tmp_path: Path, data: bytes) -> CsvSource:
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    source = open_source(path, LIMITS)
    assert isinstance(source, CsvSource)
    return source


def test_batches_stream_strings_with_and_without_header(tmp_path: Path) -> None:
    source = _source(tmp_path, b"email;phone\r\na@x.it;00123\r\nb@x.it;\r\n")
    layout = source.layout()
    assert (layout.headers, layout.delimiter, layout.columns) == (["email", "phone"], ";", 2)
    batches = list(source.batches())
    table = batches[0].data
    assert table.column(1).to_pylist() == ["00123", ""]
    assert batches[-1].bytes_read == source.size
    headless = _source(tmp_path, b"a@x.it,1\r\nb@x.it,2\r\n")
    assert headless.layout().headers is None
    assert sum(b.data.num_rows for b in headless.batches()) == 2


def test_rows_skip_header_and_give_line_numbers(tmp_path: Path) -> None:
    source = _source(tmp_path, b'nome,note\r\nA,"two\r\nlines"\r\nB,x\r\n')
    assert list(source.rows()) == [(3, ["A", "two\r\nlines"]), (4, ["B", "x"])]


def test_rows_with_wrong_cell_count_are_skipped_and_counted_in_batches(tmp_path: Path) -> None:
    source = _source(tmp_path, b"a,b\r\n1,2\r\n1,2,3\r\n4,5\r\n")
    rows = sum(b.data.num_rows for b in source.batches())
    assert rows == 2 and source.skipped_rows == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary" * 100, "not a format"),
        (b"x" * 5000, "longer than"),
        (b"a,b\r\n" + b"y" * 5000 + b"\r\n", "longer than"),
        (",".join(["c"] * 51).encode(), "columns"),
        (b"\r\n\r\n\r\n", "no text rows"),
    ],
)
def test_hostile_files_raise_clear_errors(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(InvalidInput, match=message) as info:
        source = open_source(path, LIMITS)
        source.layout()
        list(source.batches())
    assert str(path) in str(info.value)


def test_a_row_past_the_line_limit_deep_in_the_file_is_refused_by_batches(tmp_path: Path) -> None:
    data = b"a,b\r\n" + b"1,2\r\n" * 3000 + b"3," + b"z" * 70_000 + b"\r\n"
    path = tmp_path / "deep.csv"
    path.write_bytes(data)
    source = open_source(path, Limits(max_line_bytes=65_536, max_columns=10))
    with pytest.raises(InvalidInput, match="longer than"):
        list(source.batches())


def test_missing_file_and_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        open_source(tmp_path / "nope.csv", LIMITS)
    with pytest.raises(InvalidInput, match="folder"):
        open_source(tmp_path, LIMITS)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=1, max_size=3000))
def test_any_bytes_either_parse_or_raise_invalid_input(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        source = open_source(path, LIMITS)
        source.layout()
        for batch in source.batches():
            assert batch.data.num_columns == source.layout().columns
        for _line, cells in source.rows():
            assert isinstance(cells, list)
    except InvalidInput:
        pass
