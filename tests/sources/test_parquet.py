from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import CREDENTIAL_MARKER, Limits, ParquetSource, open_source
from canarino.sources.parquet import as_text
from tests.corpus import EMAILS, parquet_file, parses_or_refuses, read_all

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=1000)


def test_row_groups_stream_as_text_with_structs_flattened(tmp_path: Path) -> None:
    source = open_source(parquet_file(tmp_path, row_group_size=2), LIMITS)
    assert isinstance(source, ParquetSource)
    assert source.layout().headers == [
        "email",
        "mobile",
        "score",
        "customer.name",
        "customer.password",
        "tags",
    ]
    batches = list(source.batches())
    assert [b.data.num_rows for b in batches] == [2, 1]
    assert [b.first_row for b in batches] == [1, 3]
    assert batches[-1].bytes_read <= source.size
    rows = [c for _n, c in source.rows()]
    assert {r[0] for r in rows} == EMAILS
    assert rows[0][1] == "393471234567" and rows[2][2] == ""
    assert {r[4] for r in rows} == {CREDENTIAL_MARKER}
    assert rows[0][5] == '["a"]' and rows[1][5] == "[]"


@pytest.mark.parametrize(
    ("array", "text"),
    [
        (pa.array([1, None]), ["1", ""]),
        (pa.array([1.0, 2.5]), ["1", "2.5"]),
        (pa.array([b"ok", b"\xff"]), ["ok", "\ufffd"]),
        (pa.array(["a", "b"]).dictionary_encode(), ["a", "b"]),
        (pa.array([True, False]), ["true", "false"]),
        (pa.array([{"k": 1}], pa.map_(pa.string(), pa.int64())), ['[["k", 1]]']),
    ],
)
def test_as_text(array: pa.Array, text: list[str]) -> None:
    assert as_text(array).to_pylist() == text


def test_row_groups_past_the_block_limit_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"email": [f"u{i}@posta.it" for i in range(5000)]}), path)
    with pytest.raises(InvalidInput, match=r"row group 1 holds .* bytes, more than the limit"):
        open_source(path, Limits(max_block_bytes=10_000)).layout()


def test_too_many_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({f"c{i}": [1] for i in range(60)}), path)
    with pytest.raises(InvalidInput, match="60 columns"):
        open_source(path, LIMITS).layout()


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_damaged_files_are_one_line_errors(tmp_path: Path, cut: float) -> None:
    data = parquet_file(tmp_path).read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InvalidInput, match="Parquet") as info:
        read_all(path, LIMITS)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return parquet_file(tmp_path_factory.mktemp("parquet")).read_bytes()


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400), flip=st.integers(min_value=0, max_value=4000))
def test_any_parquet_like_bytes_parse_or_raise_invalid_input(
    tmp_path: Path, good: bytes, data: bytes, flip: int
) -> None:
    damaged = bytearray(good)
    damaged[flip % len(damaged)] ^= 0xFF
    path = tmp_path / "fuzz.parquet"
    path.write_bytes(b"PAR1" + data if len(data) % 2 else bytes(damaged))
    parses_or_refuses(path, LIMITS)
