from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import CREDENTIAL_MARKER, Limits, NdjsonSource, open_source
from canarino.sources.ndjson import NdjsonSource as Direct
from tests.corpus import EMAILS, PASSWORDS, deep_json, ndjson_file, parses_or_refuses, read_all

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=2)


def test_lines_stream_as_flattened_records(tmp_path: Path) -> None:
    source = open_source(ndjson_file(tmp_path), LIMITS)
    assert isinstance(source, NdjsonSource)
    headers = source.layout().headers or []
    assert headers[:4] == ["id", "customer.name", "customer.contact.email", "phones.0"]
    batches = list(source.batches())
    assert [b.data.num_rows for b in batches] == [2, 1]
    assert batches[-1].bytes_read == source.size
    assert {c[2] for _n, c in source.rows()} == EMAILS
    secret = headers.index("password")
    assert {b.data.column(secret).to_pylist()[0] for b in batches} == {CREDENTIAL_MARKER}
    assert not any(p in str(list(source.rows())) for p in PASSWORDS)


def test_a_line_that_is_not_json_is_skipped_and_counted(tmp_path: Path) -> None:
    source = open_source(ndjson_file(tmp_path, bad_line=True), LIMITS)
    assert sum(b.data.num_rows for b in source.batches()) == 3
    assert source.skipped_rows == 1
    assert [n for n, _c in source.rows()] == [1, 2, 3]


@pytest.mark.parametrize(
    ("head", "ndjson"),
    [
        (b'{"a": 1}\n{"a": 2}\n', True),
        (b'\n{"a": 1}\r\n\r\n{"a": 2}', True),
        (b'{"a": 1}\n', False),
        (b'[{"a": 1},\n{"a": 2}]', False),
        (b'{\n  "a": 1\n}\n{"a": 2}', False),
    ],
)
def test_sniff_needs_two_object_lines(head: bytes, ndjson: bool) -> None:
    assert Direct.sniff(head) is ndjson


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}\n{"b": "' + b"x" * 5000 + b'"}\n', "line 2 is longer than 4,096"),
        (b'{"a": 1}\n{"b": "\xff"}\n', "not valid utf-8 on line 2"),
        (b'{"a": 1}\n{"b": 2}\n' + b"[" * 3000 + b"\n", "line 3 is nested deeper"),
        (b"{}\n{}\nnot json at all\n", "no line holds"),
    ],
)
def test_hostile_lines_are_one_line_errors(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_bytes(data)
    with pytest.raises(InvalidInput, match=message) as info:
        read_all(path, LIMITS)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_deep_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="line 1 is nested deeper than 64 levels"):
        read_all(deep_json(tmp_path, 100, lines=True), Limits())


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(st.text(max_size=40), max_size=6), noise=st.binary(max_size=20))
def test_any_lines_parse_or_raise_invalid_input(
    tmp_path: Path, lines: list[str], noise: bytes
) -> None:
    path = tmp_path / "fuzz.ndjson"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n' + "\n".join(lines).encode() + noise)
    parses_or_refuses(path, LIMITS)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _JSON_VALUES, min_size=1, max_size=5), st.data())
def test_the_fast_reader_flattens_every_line_as_the_exact_decoder_does(
    record: dict[str, object], data: st.DataObject
) -> None:
    import json

    from canarino.sources import ndjson

    line = json.dumps(record, ensure_ascii=data.draw(st.booleans()))
    # Numbers written in forms Python does not produce: exponents, trailing zeros, -0.
    for written in data.draw(st.lists(st.sampled_from(["1E5", "2.50", "-0", "-0.0", "1e-7"]))):
        line = line[:-1] + f', "n{len(line)}": {written}}}'
    exact = ndjson._DECODER.decode(line)
    assert ndjson._flat(ndjson._loads(line), 8) == ndjson._flat(exact, 8)


@pytest.mark.parametrize(
    "line",
    ['{"a": NaN}', '{"a": 1', '{"a": "\\ud800"}', '{"big": 123456789012345678901234567890}'],
)
def test_lines_the_fast_reader_refuses_are_read_as_before(line: str) -> None:
    from canarino.sources import ndjson

    try:
        expected: object = ndjson._flat(ndjson._DECODER.decode(line), 8)
    except ValueError as exc:
        expected = type(exc)
    try:
        got: object = ndjson._flat(ndjson._loads(line), 8)
    except ValueError as exc:
        got = type(exc)
    assert got == expected
