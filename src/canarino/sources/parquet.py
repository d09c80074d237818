"""Apache Parquet, streamed one row group at a time; every column is cast to text.

A row group is the unit Parquet decodes, so it must fit in memory: row groups whose
uncompressed size passes ``Limits.max_block_bytes`` are refused before any is read.
Struct columns are flattened into dotted names; lists and maps become their JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InvalidInput
from .base import SOURCES, Batch, Source, Table, column_names, credential_columns, redact


def _flatten(batch: pa.RecordBatch) -> pa.RecordBatch:
    while any(pa.types.is_struct(f.type) for f in batch.schema):
        arrays: list[pa.Array] = []
        names: list[str] = []
        for field, array in zip(batch.schema, batch.columns, strict=True):
            if pa.types.is_struct(field.type):
                for child, sub in zip(field.type, array.flatten(), strict=True):
                    arrays.append(sub)
                    names.append(f"{field.name}.{child.name}")
            else:
                arrays.append(array)
                names.append(field.name)
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return batch


def _flat_names(fields: Any, prefix: str = "") -> Iterator[str]:
    for field in fields:
        if pa.types.is_struct(field.type):
            yield from _flat_names(field.type, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}"


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, default=str, ensure_ascii=False)


def as_text(array: pa.Array) -> pa.Array:
    """Any Arrow array as a string array, nulls as empty strings."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        try:
            # Parquet readers do not check that text is UTF-8; damaged files are not.
            array.validate(full=True)
        except pa.ArrowInvalid:
            return as_text(array.cast(pa.large_binary()))
        out = array if pa.types.is_string(kind) else array.cast(pa.string())
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        values = array.to_pylist()
        out = pa.array(
            [None if v is None else v.decode("utf-8", "replace") for v in values], pa.string()
        )
    elif (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_map(kind)
        or pa.types.is_fixed_size_list(kind)
    ):
        out = pa.array([_json(v) for v in array.to_pylist()], pa.string())
    else:
        try:
            out = pc.cast(array, pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            out = pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())
    return out.fill_null("")


@SOURCES.register("parquet")
class ParquetSource(Source):
    """Apache Parquet files, any column types, read by row group."""

    NAME = "parquet"
    SUFFIXES = (".parquet", ".pq")
    PRIORITY = 10

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """The ``PAR1`` magic."""
        return head.startswith(b"PAR1")

    def _file(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError, ValueError):
            raise InvalidInput(f"{self.name}: not a readable Parquet file") from None

    @cached_property
    def _layout(self) -> Table:
        try:
            return self._read_layout()
        except (pa.ArrowException, OSError, ValueError):
            raise InvalidInput(f"{self.name}: not a readable Parquet file") from None

    def _read_layout(self) -> Table:
        pf = self._file()
        meta = pf.metadata
        for i in range(meta.num_row_groups):
            size = meta.row_group(i).total_byte_size
            if size > self.limits.max_block_bytes:
                raise InvalidInput(
                    f"{self.name}: row group {i + 1} holds {size:,} bytes, more than the "
                    f"limit of {self.limits.max_block_bytes:,}",
                    hint="rewrite the file with smaller row groups, or raise max_block_bytes",
                )
        headers = list(_flat_names(pf.schema_arrow))
        if not headers:
            raise InvalidInput(f"{self.name}: the Parquet file has no columns")
        if len(headers) > self.limits.max_columns:
            raise InvalidInput(
                f"{self.name}: {len(headers):,} columns, more than the limit of "
                f"{self.limits.max_columns:,}",
                hint="raise max_columns if the file is genuine",
            )
        return Table(list(headers), len(headers), "parquet", "")

    def layout(self) -> Table:
        """The column names, struct fields flattened into dotted names."""
        return self._layout

    def batches(self) -> Iterator[Batch]:
        """Stream the rows as Arrow batches of string columns."""
        layout = self._layout
        secret = credential_columns(layout.headers)
        names = column_names(layout.columns)
        pf = self._file()
        meta = pf.metadata
        row = 1
        done = 0
        try:
            for group in range(meta.num_row_groups):
                rg = meta.row_group(group)
                done += sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
                batches = pf.iter_batches(
                    batch_size=self.limits.batch_rows, row_groups=[group], use_threads=False
                )
                for batch in batches:
                    flat = _flatten(batch)
                    data = pa.RecordBatch.from_arrays(
                        [as_text(a) for a in flat.columns], names=names
                    )
                    yield Batch(redact(data, secret), min(done, self.size), row)
                    row += data.num_rows
        except (pa.ArrowException, OSError, ValueError):
            raise InvalidInput(
                f"{self.name}: the Parquet data is damaged near row {row:,}"
            ) from None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(row number, cells)``."""
        for batch in self.batches():
            columns = [c.to_pylist() for c in batch.data.columns]
            for i, cells in enumerate(zip(*columns, strict=True)):
                yield batch.first_row + i, list(cells)
