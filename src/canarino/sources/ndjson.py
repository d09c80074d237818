"""NDJSON / JSON Lines: one JSON object per line, streamed line by line.

Lines are bounded by ``Limits.max_line_bytes``; a line that is not valid JSON is
skipped and counted (dumps often end in a half-written line). Nested objects are
flattened into dotted paths like :mod:`canarino.sources.json`; the columns are every
path seen, found by a first pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

import orjson

from ..errors import InvalidInput
from .base import (
    SOURCES,
    Batch,
    Source,
    Table,
    TextLines,
    batched_rows,
    credential_columns,
    decode_head,
    redact_cells,
    text_encoding,
)
from .json import TooDeep, flatten, scalar

# Numbers are kept as written: no float rounding, no cost for 100k-digit integers. One
# decoder for every line: json.loads with options would build a new one each time.
_DECODER = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str)


def _loads(line: str) -> Any:
    # orjson parses several times faster but reads numbers as numbers. Integers print
    # back as written; a line with a fraction, an exponent or a "-0" is read again by
    # the exact decoder, as is every line orjson refuses (which then fails as before).
    if "-0" not in line:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
        else:
            if not _has_float(record):
                return record
    return _DECODER.decode(line)


def _has_float(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            isinstance(v, float) or (isinstance(v, dict | list) and _has_float(v))
            for v in value.values()
        )
    if isinstance(value, list):
        return any(
            isinstance(v, float) or (isinstance(v, dict | list) and _has_float(v)) for v in value
        )
    return isinstance(value, float)


def _flat(record: Any, depth: int) -> dict[str, str]:
    """:func:`flatten`, with a shortcut for the common record that nests nothing."""
    if depth >= 1 and isinstance(record, dict):
        values = record.values()
        if not any(isinstance(v, dict | list) for v in values):
            return {str(k): scalar(v) for k, v in record.items()}
    return flatten(record, depth)


@SOURCES.register("ndjson")
class NdjsonSource(Source):
    """One JSON object per line (NDJSON, JSON Lines, MongoDB exports)."""

    NAME = "ndjson"
    SUFFIXES = (".ndjson", ".jsonl")
    PRIORITY = 20

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """At least two lines starting with ``{``, the first a complete JSON object."""
        lines = [line.strip() for line in decode_head(head).splitlines()]
        lines = [line for line in lines if line]
        if len(lines) < 2 or not lines[0].startswith("{") or not lines[1].startswith("{"):
            return False
        try:
            return isinstance(_loads(lines[0]), dict)
        except (ValueError, RecursionError):
            return False

    @cached_property
    def _encoding(self) -> str:
        with self.path.open("rb") as fp:
            return text_encoding(fp.read(4096))

    def _lines(self) -> TextLines:
        return TextLines(self.path, self._encoding, self.limits.max_line_bytes, self.name)

    def _iter(self, lines: TextLines) -> Iterator[tuple[int, dict[str, str] | None]]:
        """Yield ``(line number, flat record)``, or ``None`` for a line that is not JSON."""
        depth = self.limits.max_depth
        for number, line in lines:
            if not line.strip():
                continue
            try:
                yield number, _flat(_loads(line), depth)
            except (TooDeep, RecursionError):
                raise self._too_deep(number) from None
            except ValueError:
                yield number, None

    def _too_deep(self, number: int) -> InvalidInput:
        return InvalidInput(
            f"{self.name}: line {number:,} is nested deeper than {self.limits.max_depth} levels",
            hint="raise max_depth if the file is genuine",
        )

    def _paths(self, lines: TextLines) -> Iterator[Iterable[str]]:
        """The dotted paths of each line's record (nothing for a line that is not JSON).

        A flat object's paths are its keys: no value is converted, unlike :meth:`_iter`.
        """
        depth = self.limits.max_depth
        for number, line in lines:
            if not line.strip():
                continue
            try:
                record = _loads(line)
                if (
                    depth >= 1
                    and isinstance(record, dict)
                    and not any(isinstance(v, dict | list) for v in record.values())
                ):
                    yield record.keys()
                else:
                    yield flatten(record, depth).keys()
            except (TooDeep, RecursionError):
                raise self._too_deep(number) from None
            except ValueError:
                continue

    @cached_property
    def _layout(self) -> Table:
        keys: dict[str, None] = {}
        for paths in self._paths(self._lines()):
            for k in paths:
                if k not in keys:
                    keys[k] = None
                    if len(keys) > self.limits.max_columns:
                        raise InvalidInput(
                            f"{self.name}: the records have more than "
                            f"{self.limits.max_columns:,} distinct fields",
                            hint="raise max_columns if the file is genuine",
                        )
        if not keys:
            raise InvalidInput(f"{self.name}: no line holds a JSON object")
        return Table(list(keys), len(keys), self._encoding, "\n")

    def layout(self) -> Table:
        """Every dotted path found in the records, in order of first appearance."""
        return self._layout

    def _cells(self, lines: TextLines) -> Iterator[tuple[int, list[str]]]:
        headers = self._layout.headers or []
        skipped = 0
        for number, record in self._iter(lines):
            if record is None:
                skipped += 1
                continue
            yield number, [record.get(h, "") for h in headers]
        self.skipped_rows = skipped

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line number, cells)``; lines that are not JSON are skipped."""
        secret = credential_columns(self._layout.headers)
        for number, cells in self._cells(self._lines()):
            yield number, redact_cells(cells, secret)

    def batches(self) -> Iterator[Batch]:
        """Stream the lines as Arrow batches of string columns."""
        lines = self._lines()
        yield from batched_rows(
            self._cells(lines),
            self._layout.columns,
            self.limits.batch_rows,
            lambda: lines.position,
            credential_columns(self._layout.headers),
        )
