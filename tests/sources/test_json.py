from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import CREDENTIAL_MARKER, JsonSource, Limits, open_source
from canarino.sources.json import TooDeep, flatten
from tests.corpus import EMAILS, PASSWORDS, deep_json, json_file, parses_or_refuses, read_all

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=2)
HEADERS = ["id", "customer.name", "customer.contact.email", "phones.0", "active", "score"]


@pytest.mark.parametrize(
    ("shape", "encoding"),
    [("array", "utf-8"), ("object", "utf-8"), ("concatenated", "utf-8"), ("array", "utf-16")],
)
def test_records_are_flattened_into_dotted_paths_whatever_the_shape(
    tmp_path: Path, shape: str, encoding: str
) -> None:
    source = open_source(json_file(tmp_path, shape, encoding), LIMITS)
    assert isinstance(source, JsonSource)
    assert (source.layout().headers or [])[:6] == HEADERS
    batches = list(source.batches())
    assert [b.data.num_rows for b in batches] == [2, 1]
    assert batches[-1].bytes_read >= source.size - 4
    rows = [cells for _n, cells in source.rows()]
    assert {r[2] for r in rows} == EMAILS
    assert rows[0][3:6] == ["+39 347 123 4567", "true", "1.5"]


def test_passwords_are_replaced_by_a_marker(tmp_path: Path) -> None:
    source = open_source(json_file(tmp_path), LIMITS)
    column = (source.layout().headers or []).index("password")
    values = [v for b in source.batches() for v in b.data.column(column).to_pylist()]
    assert values == [CREDENTIAL_MARKER] * 3
    text = str([cells for _n, cells in source.rows()])
    assert not any(p in text for p in PASSWORDS)


@pytest.mark.parametrize(
    ("value", "flat"),
    [
        ({"a": {"b": [1, {"c": None}]}}, {"a.b.0": "1", "a.b.1.c": ""}),
        ([True, "x"], {"0": "true", "1": "x"}),
        ("solo@x.it", {"value": "solo@x.it"}),
        ({"a": []}, {}),
    ],
)
def test_flatten(value: object, flat: dict[str, str]) -> None:
    assert flatten(value, 64) == flat


def test_flatten_refuses_depth_past_the_limit() -> None:
    with pytest.raises(TooDeep):
        flatten({"a": {"b": {"c": 1}}}, 2)


def test_scalars_in_a_top_level_array_become_value_records(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text('["a@x.it", "b@x.it", 3]')
    source = open_source(path, LIMITS)
    assert source.layout().headers == ["value"]
    assert [c for _n, c in source.rows()] == [["a@x.it"], ["b@x.it"], ["3"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "holds no records"),
        ('[{"email": "secret@x.it"}, {"email": tru', "not valid JSON in record 2"),
        ('[{"a": "' + "z" * 9000 + '"}]', "record 1 is longer than 4,096 bytes"),
        ("[" + ",".join(f'{{"k{i}": 1}}' for i in range(60)) + "]", "more than 50 distinct"),
    ],
)
def test_bad_json_is_a_one_line_error_naming_the_place(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as info:
        read_all(path, LIMITS)
    assert str(path) in str(info.value)
    assert "secret@x.it" not in str(info.value) and "\n" not in str(info.value)


def test_deep_nesting_is_refused_with_the_record_and_byte(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"record 1 is nested deeper than 64 levels \(near byte"):
        read_all(deep_json(tmp_path, 100), Limits())


json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
).map(json.dumps)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(json_text, json_text.map(lambda t: "[" + t)),
    noise=st.binary(max_size=20),
)
def test_any_json_like_input_parses_or_raises_invalid_input(
    tmp_path: Path, text: str, noise: bytes
) -> None:
    path = tmp_path / "fuzz.json"
    path.write_bytes(b"[" + text.encode() + noise)
    parses_or_refuses(path, LIMITS)
