"""The hostile corpus, across formats: no crash, bounded memory, one clear line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from canarino.errors import InvalidInput
from canarino.sources import Limits, open_source
from tests.corpus import (
    FORMULA,
    bounded_memory,
    deep_json,
    eml_file,
    flat_zip_bomb,
    gzip_bomb,
    invalid_utf8_csv,
    long_line,
    nested_zip_bomb,
    nul_bytes,
    read_all,
    sheet_dimension_bomb,
    truncated_gzip,
)

SMALL = Limits(max_line_bytes=4096, max_columns=50, batch_rows=1000)
DEFAULT = Limits()
# Reading any hostile file must not hold more than this in memory at once.
PYTHON_PEAK = 48 << 20
RSS_GROWTH = 96 << 20
LONG = 200  # megabytes in the endless line

Maker = Callable[[Path], Path]


def _long(prefix: bytes, name: str) -> Maker:
    return lambda root: long_line(root, prefix, LONG, name)


HOSTILE: list[tuple[str, Maker, Limits, str]] = [
    ("endless line, csv", _long(b"", "l.csv"), DEFAULT, r"line 1 is longer than 1,048,576"),
    (
        "endless line after a header",
        _long(b"email,phone\na@x.it,1\n", "l2.csv"),
        DEFAULT,
        r"a line near byte [\d,]+ is longer than 1,048,576",
    ),
    ("endless line, ndjson", _long(b'{"a":1}\n{"b":"', "l.ndjson"), DEFAULT, "line 2 is longer"),
    ("endless line, json", _long(b'[{"a":"', "l.json"), DEFAULT, "record 1 is longer"),
    (
        "endless line, sql",
        _long(b"-- MySQL dump\nINSERT INTO t VALUES ('", "l.sql"),
        DEFAULT,
        "line 2: a value is longer",
    ),
    (
        "endless line, combo list",
        _long(b"a@x.it:pw\nb@x.it:", "l.txt"),
        DEFAULT,
        "line 2 is longer",
    ),
    ("invalid utf-8", invalid_utf8_csv, SMALL, "text is not valid UTF-8"),
    ("nul bytes", nul_bytes, DEFAULT, "not a format canarino reads"),
    ("100-level json", deep_json, DEFAULT, "record 1 is nested deeper than 64 levels"),
    (
        "100-level ndjson",
        lambda root: deep_json(root, lines=True),
        DEFAULT,
        "line 1 is nested deeper than 64 levels",
    ),
    ("100-level mime", lambda root: eml_file(root, nested=100), DEFAULT, "deeper than 64 levels"),
    (
        "sheet spanning the whole grid",
        sheet_dimension_bomb,
        DEFAULT,
        "not a spreadsheet calamine can read",
    ),
    ("42.zip-style bomb", nested_zip_bomb, DEFAULT, "archives nested more than 4 deep"),
    ("flat zip bomb", flat_zip_bomb, DEFAULT, r"zeros.csv: expands more than"),
    ("gzip bomb", gzip_bomb, DEFAULT, r"bomb.csv.gz!bomb.csv: expands more than"),
    (
        "truncated gzip",
        truncated_gzip,
        DEFAULT,
        r"cut.csv.gz!cut.csv: the compressed data is cut short",
    ),
]


@pytest.mark.parametrize(
    ("make", "limits", "message"),
    [row[1:] for row in HOSTILE],
    ids=[row[0] for row in HOSTILE],
)
def test_hostile_files_fail_with_one_clear_line_in_bounded_memory(
    tmp_path: Path, make: Maker, limits: Limits, message: str
) -> None:
    path = make(tmp_path)
    try:
        with bounded_memory() as memory, pytest.raises(InvalidInput, match=message) as info:
            read_all(path, limits)
    finally:
        path.unlink()
    text = str(info.value)
    assert "\n" not in text and len(text) < 400
    assert text.startswith(str(path))
    assert "aaaaaaaa" not in text and "x@y.it" not in text
    assert memory.python_peak < PYTHON_PEAK, memory
    assert memory.rss_growth < RSS_GROWTH, memory


def test_an_endless_line_in_a_mailbox_skips_only_that_message(tmp_path: Path) -> None:
    path = long_line(tmp_path, b"From a@b Mon\nFrom: a@b.it\nTo: c@d.it\n\n", LONG, "l.mbox")
    with bounded_memory() as memory:
        source = open_source(path, DEFAULT)
        rows = sum(b.data.num_rows for b in source.batches())
    path.unlink()
    assert rows == 0 and source.skipped_rows == 1
    assert memory.python_peak < PYTHON_PEAK and memory.rss_growth < RSS_GROWTH, memory


def test_formula_cells_are_plain_text_never_evaluated(tmp_path: Path) -> None:
    path = tmp_path / "formula.csv"
    path.write_text(f'email,note\nmario.rossi@posta.it,"{FORMULA}"\nx@y.it,+1+2\n')
    source = open_source(path, DEFAULT)
    values = [v for b in source.batches() for v in b.data.column(1).to_pylist()]
    assert values == [FORMULA, "+1+2"]
