"""JSON documents: an array of records, an object holding one, or concatenated objects.

Parsed incrementally with ijson, so a multi-gigabyte array never sits in memory: only
one record at a time does, and a record (or a single value) longer than
``Limits.max_line_bytes`` is refused. Nested records are flattened into dotted paths
(``customer.contact.email``, ``phones.0``); the columns are every path seen in the file,
found by a first pass, so the file is read twice.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any, BinaryIO

import ijson

from ..errors import InvalidInput
from .base import (
    SOURCES,
    Batch,
    Source,
    Table,
    batched_rows,
    credential_columns,
    decode_head,
    redact_cells,
    text_encoding,
)


class TooDeep(Exception):
    """A value nested deeper than the limit."""


class TooLong(Exception):
    """A record or value longer than the limit."""


def scalar(value: Any) -> str:
    """A JSON scalar as text: ``true``/``false``, numbers as written, null as empty."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def flatten(value: Any, max_depth: int) -> dict[str, str]:
    """Flatten a parsed JSON value into ``{dotted.path: text}``; scalars become ``value``."""
    out: dict[str, str] = {}
    if not isinstance(value, dict | list):
        out["value"] = scalar(value)
        return out

    def walk(node: Any, path: str, depth: int) -> None:
        if depth > max_depth:
            raise TooDeep
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            child_path = f"{path}.{key}" if path else str(key)
            if isinstance(child, dict | list):
                walk(child, child_path, depth + 1)
            else:
                out[child_path] = scalar(child)

    walk(value, "", 1)
    return out


class _Guard:
    """A reader that counts bytes and fails when one record grows past ``limit``."""

    def __init__(self, fp: BinaryIO | _Utf8, limit: int) -> None:
        self._fp = fp
        self._limit = limit
        self.position = 0
        self.pending = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fp.read(size)
        if isinstance(self._fp, _Utf8):
            self.position = self._fp.raw.tell()
        else:
            self.position += len(data)
        self.pending += len(data)
        if self.pending > self._limit + max(size, 0):
            raise TooLong
        return data


class _Utf8:
    """Re-encodes a UTF-16 or BOM-prefixed text file as UTF-8 bytes for ijson."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self.raw = raw
        self._text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson probes with read(0) to tell bytes from text
        return self._text.read(size if size < 0 else max(size // 4, 1)).encode("utf-8")


def _records(
    events: Iterable[tuple[str, Any]], guard: _Guard, key: str | None, max_depth: int
) -> Iterator[dict[str, str]]:
    """Flatten a stream of ijson events into records.

    Records are the elements of a top-level array (or, with ``key``, of the array held by
    that top-level key) and top-level objects themselves, so concatenated objects work.
    """
    # Frame: [is_map, path, next index, pending key]
    stack: list[list[Any]] = []
    record: dict[str, str] | None = None
    root = -1
    for event, value in events:
        if event == "map_key":
            stack[-1][3] = value
            continue
        if event in ("end_map", "end_array"):
            stack.pop()
            if record is not None and len(stack) == root:
                yield record
                record, root = None, -1
                guard.pending = 0
            elif record is None:
                guard.pending = 0
            continue
        starts = event in ("start_map", "start_array")
        if record is None:
            at_record = (
                (not stack and key is None and event != "start_array")
                or (key is None and len(stack) == 1 and not stack[0][0])
                or (
                    key is not None
                    and len(stack) == 2
                    and stack[0][0]
                    and not stack[1][0]
                    and stack[1][1] == key
                )
            )
            if not at_record:
                guard.pending = 0
                if starts:
                    if len(stack) > max_depth:
                        raise TooDeep
                    parent = stack[-1] if stack else None
                    path = parent[3] if parent and parent[0] and len(stack) == 1 else ""
                    stack.append([event == "start_map", path, 0, None])
                continue
            if not starts:
                yield {"value": scalar(value)}
                guard.pending = 0
                continue
            record, root = {}, len(stack)
            stack.append([event == "start_map", "", 0, None])
            continue
        parent = stack[-1]
        if parent[0]:
            name = str(parent[3])
        else:
            name = str(parent[2])
            parent[2] += 1
        path = f"{parent[1]}.{name}" if parent[1] else name
        if starts:
            if len(stack) - root >= max_depth:
                raise TooDeep
            stack.append([event == "start_map", path, 0, None])
        else:
            record[path] = scalar(value)


@SOURCES.register("json")
class JsonSource(Source):
    """A JSON array of records, an object holding such an array, or concatenated objects."""

    NAME = "json"
    SUFFIXES = (".json",)
    PRIORITY = 21

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Text whose first character is ``[`` or ``{``."""
        return decode_head(head).lstrip()[:1] in ("[", "{")

    @property
    def _chunk(self) -> int:
        # Small reads keep the record-length check close to the limit.
        return max(1024, min(1 << 16, self.limits.max_line_bytes // 4))

    @cached_property
    def _encoding(self) -> str:
        with self.path.open("rb") as fp:
            return text_encoding(fp.read(4096))

    def _open(self, fp: BinaryIO) -> _Guard:
        encoding = self._encoding
        if encoding == "utf-8":
            return _Guard(fp, self.limits.max_line_bytes)
        return _Guard(_Utf8(fp, encoding), self.limits.max_line_bytes)

    @cached_property
    def _records_key(self) -> str | None:
        """The top-level key whose array holds the records, if the root is an object."""
        with self.path.open("rb") as fp:
            guard = self._open(fp)
            depth = 0
            current: str | None = None
            expecting = False
            try:
                for event, value in ijson.basic_parse(
                    guard, multiple_values=True, buf_size=self._chunk
                ):
                    if guard.position > self.limits.max_line_bytes:
                        return None
                    if depth == 0 and event == "start_array":
                        return None
                    if expecting:
                        if event == "start_map":
                            return current
                        expecting = False
                    if event in ("start_map", "start_array"):
                        depth += 1
                        if depth > self.limits.max_depth + 2:
                            return None
                        if depth == 2 and event == "start_array":
                            expecting = True
                    elif event in ("end_map", "end_array"):
                        depth -= 1
                        if depth == 0:
                            return None
                    elif event == "map_key" and depth == 1:
                        current = value
            except (ijson.JSONError, TooLong, UnicodeDecodeError):
                return None
        return None

    def _iter(self) -> Iterator[tuple[int, dict[str, str], int]]:
        """Yield ``(record number, flat record, bytes read)``."""
        key = self._records_key
        with self.path.open("rb") as fp:
            guard = self._open(fp)
            number = 0
            try:
                events = ijson.basic_parse(guard, multiple_values=True, buf_size=self._chunk)
                for record in _records(events, guard, key, self.limits.max_depth):
                    number += 1
                    yield number, record, guard.position
            except TooDeep:
                raise InvalidInput(
                    f"{self.name}: record {number + 1:,} is nested deeper than "
                    f"{self.limits.max_depth} levels (near byte {guard.position:,})",
                    hint="raise max_depth if the file is genuine",
                ) from None
            except TooLong:
                raise InvalidInput(
                    f"{self.name}: record {number + 1:,} is longer than "
                    f"{self.limits.max_line_bytes:,} bytes (near byte {guard.position:,})",
                    hint="raise max_line_bytes if the file is genuine",
                ) from None
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"{self.name}: text is not valid {self._encoding} near byte {guard.position:,}",
                    hint="save the file as UTF-8",
                ) from None
            except ijson.JSONError:
                # ijson's own message quotes the data around the error; it is not passed on.
                raise InvalidInput(
                    f"{self.name}: not valid JSON in record {number + 1:,} "
                    f"(near byte {guard.position:,})"
                ) from None

    @cached_property
    def _layout(self) -> Table:
        keys: dict[str, None] = {}
        records = 0
        for _number, record, _pos in self._iter():
            records += 1
            for k in record:
                if k not in keys:
                    keys[k] = None
                    if len(keys) > self.limits.max_columns:
                        raise InvalidInput(
                            f"{self.name}: the records have more than "
                            f"{self.limits.max_columns:,} distinct fields",
                            hint="raise max_columns if the file is genuine",
                        )
        if not records or not keys:
            raise InvalidInput(f"{self.name}: the JSON holds no records")
        return Table(list(keys), len(keys), self._encoding, "")

    def layout(self) -> Table:
        """Every dotted path found in the records, in order of first appearance."""
        return self._layout

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(record number, cells)`` in the order of the layout's headers."""
        headers = self._layout.headers or []
        secret = credential_columns(headers)
        for number, record, _pos in self._iter():
            yield number, redact_cells([record.get(h, "") for h in headers], secret)

    def batches(self) -> Iterator[Batch]:
        """Stream the records as Arrow batches of string columns."""
        headers = self._layout.headers or []
        position = 0

        def rows() -> Iterator[tuple[int, list[str]]]:
            nonlocal position
            for number, record, pos in self._iter():
                position = pos
                yield number, [record.get(h, "") for h in headers]

        yield from batched_rows(
            rows(),
            len(headers),
            self.limits.batch_rows,
            lambda: position,
            credential_columns(headers),
        )
