from __future__ import annotations

import codecs
from pathlib import Path

import pyarrow as pa
import pytest

from canarino.errors import InvalidInput
from canarino.sources import CREDENTIAL_MARKER, SOURCES, is_credential
from canarino.sources.base import (
    TextLines,
    by_priority,
    make_batch,
    redact,
    text_encoding,
    utf16_without_bom,
)


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        ("password", True),
        ("Password_Hash", True),
        ("passwordHash", True),
        ("user.pwd", True),
        ("api_key", True),
        ("Secret Answer", True),
        ("PIN", True),
        ("salt", True),
        ("passport number", False),
        ("email", False),
        ("pinterest", False),
        ("bypass", False),
        ("customer.contact.email", False),
    ],
)
def test_is_credential_names_secret_columns_only(header: str, secret: bool) -> None:
    assert is_credential(header) is secret


def test_redact_keeps_only_the_fact_that_a_credential_was_present() -> None:
    batch = make_batch([["a@x.it", "hunter2"], ["b@x.it", ""]], 2)
    out = redact(batch, [1])
    assert out.column(1).to_pylist() == [CREDENTIAL_MARKER, ""]
    assert out.column(0).to_pylist() == ["a@x.it", "b@x.it"]


def test_make_batch_pads_short_rows_and_repairs_lone_surrogates() -> None:
    batch = make_batch([["a"], ["b", "\ud800x"]], 2)
    assert batch.schema.names == ["c0", "c1"]
    assert batch.column(1).to_pylist() == ["", "?x"]
    assert all(t == pa.string() for t in batch.schema.types)


@pytest.mark.parametrize(
    ("head", "encoding"),
    [
        ("email,città\n".encode("utf-16-le"), "utf-16-le"),
        ("email,città\n".encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF16_LE + "a".encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF8 + b"a", "utf-8-sig"),
        (b"plain ascii text", "utf-8"),
        (b"\x00\x01\x02\x03" * 100, "utf-8"),
    ],
)
def test_text_encoding_detects_utf16_without_bom(head: bytes, encoding: str) -> None:
    assert text_encoding(head) == encoding


def test_utf16_detection_refuses_binary_with_zero_bytes() -> None:
    assert utf16_without_bom(bytes(range(256)) * 8) is None


def test_csv_is_sniffed_last_so_specific_text_formats_win() -> None:
    order = [cls.NAME for cls in by_priority()]
    assert order[-1] == "csv"
    assert set(order) == set(SOURCES.names())
    assert order.index("combolist") > order.index("json")


def test_text_lines_bound_line_length_and_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"ok\n" + b"x" * 100 + b"\n")
    lines = TextLines(path, "utf-8", 50, "t.txt")
    with pytest.raises(InvalidInput, match=r"t.txt: line 2 is longer than 50"):
        list(lines)
    path.write_bytes(b"ok\n\xff\n")
    with pytest.raises(InvalidInput, match="not valid utf-8 on line 2"):
        list(TextLines(path, "utf-8", 50, "t.txt"))
