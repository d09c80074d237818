"""Delimited text: CSV, TSV, semicolon and pipe files, with or without a header row."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InvalidInput
from ..fields import field_for_header
from .base import (
    SOURCES,
    Batch,
    Source,
    Table,
    credential_columns,
    redact,
    redact_cells,
    utf16_without_bom,
)

_DELIMITERS = (",", ";", "\t", "|")
# Line length is bounded by our own readers; the csv module's lower default must not bite first.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))
_IDENTIFIER_LIKE = re.compile(r"@|\d{6,}|(?:\d[\s.-]?){8,}")


def detect_encoding(head: bytes) -> str:
    """Guess the text encoding from a file's first bytes."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    utf16 = utf16_without_bom(head)
    if utf16:
        return utf16
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A head cut inside a multi-byte character is still UTF-8.
        if exc.reason == "unexpected end of data" and exc.start >= len(head) - 3:
            return "utf-8"
    return "cp1252" if _cp1252_ok(head) else "latin-1"


def _cp1252_ok(head: bytes) -> bool:
    try:
        head.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True


def looks_binary(head: bytes) -> bool:
    """Whether a head of bytes (not UTF-16) is binary rather than text."""
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head[:8192] if b < 32 and b not in (9, 10, 13))
    return controls > len(head[:8192]) * 0.01


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def choose_delimiter(lines: list[str]) -> str:
    """Pick the delimiter that splits the sample lines most consistently."""
    best, best_score = ",", 0.0
    for delim in _DELIMITERS:
        counts = [len(_split(line, delim)) for line in lines if line.strip()]
        if not counts or max(counts) < 2:
            continue
        common = max(set(counts), key=counts.count)
        score = counts.count(common) / len(counts) * min(common, 50)
        if score > best_score:
            best, best_score = delim, score
    return best


def is_header(cells: list[str]) -> bool:
    """Whether a first row names columns rather than holding data."""
    if any(_IDENTIFIER_LIKE.search(c) for c in cells):
        return False
    if any(field_for_header(c) for c in cells):
        return True
    return all(c.strip() and not any(ch.isdigit() for ch in c) for c in cells)


@SOURCES.register("csv")
class CsvSource(Source):
    """Delimited text in UTF-8, UTF-16, cp1252 or Latin-1; dialect and header detected.

    The catch-all for text: tried after every more specific format. Cells are read as
    text and never evaluated, so formula-like cells (``=cmd|…``) are inert here.
    Columns whose header names a password or other secret are redacted.
    """

    NAME = "csv"
    SUFFIXES = (".csv", ".tsv", ".txt")
    PRIORITY = 90

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Text that is not binary (UTF-16, with or without a BOM, counts as text)."""
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return True
        return utf16_without_bom(head) is not None or not looks_binary(head)

    @cached_property
    def _layout(self) -> Table:
        limit = self.limits.max_line_bytes
        with self.path.open("rb") as fp:
            head = fp.read(limit + 1)
        encoding = detect_encoding(head)
        if encoding.startswith("utf-16"):
            head = head[: len(head) // 2 * 2]
        text = head.decode(encoding, errors="replace")
        if encoding == "utf-8-sig":
            text = text.removeprefix("\ufeff")
        lines = text.splitlines()
        if len(head) > limit and len(lines) > 1:
            lines = lines[:-1]  # the last line of a cut head is incomplete
        for number, line in enumerate(lines, 1):
            if len(line) > limit:
                raise InvalidInput(
                    f"{self.name}: line {number} is longer than {limit:,} characters",
                    hint="this is not a table canarino can read; raise max_line_bytes if it is",
                )
        lines = [line for line in lines[:50] if line.strip()]
        if not lines:
            raise InvalidInput(f"{self.name}: the file holds no text rows")
        delimiter = choose_delimiter(lines)
        first = _split(lines[0], delimiter)
        if len(first) > self.limits.max_columns:
            raise InvalidInput(
                f"{self.name}: line 1 has {len(first):,} columns, more than the limit of "
                f"{self.limits.max_columns:,}",
                hint="check the delimiter, or raise max_columns",
            )
        headers = [h.strip() for h in first] if is_header(first) else None
        return Table(headers, len(first), encoding, delimiter)

    def layout(self) -> Table:
        """Encoding, delimiter, header row and column count of the file."""
        return self._layout

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line number, cells)`` with bounded line length."""
        layout = self._layout
        limit = self.limits.max_line_bytes
        secret = credential_columns(layout.headers)
        with self.path.open("r", encoding=layout.encoding, errors="strict", newline="") as fp:
            reader = csv.reader(_bounded_lines(fp, limit, self.name), delimiter=layout.delimiter)
            try:
                if layout.headers is not None:
                    next(reader, None)
                for cells in reader:
                    if len(cells) > self.limits.max_columns:
                        raise InvalidInput(
                            f"{self.name}: line {reader.line_num} has {len(cells):,} columns, "
                            f"more than the limit of {self.limits.max_columns:,}"
                        )
                    yield reader.line_num, redact_cells(cells, secret)
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"{self.name}: text is not valid {layout.encoding} near line "
                    f"{reader.line_num + 1}",
                    hint="save the file as UTF-8",
                ) from None
            except csv.Error as exc:
                raise InvalidInput(f"{self.name}: line {reader.line_num}: {exc}") from None

    def batches(self) -> Iterator[Batch]:
        """Stream the file as Arrow batches of string columns ``c0``, ``c1``…."""
        layout = self._layout
        names = [f"c{i}" for i in range(layout.columns)]
        secret = credential_columns(layout.headers)
        skipped = 0

        def on_invalid(_row: object) -> str:
            nonlocal skipped
            skipped += 1
            return "skip"

        read = pacsv.ReadOptions(
            column_names=names,
            skip_rows=1 if layout.headers is not None else 0,
            block_size=min(max(self.limits.max_line_bytes, 1 << 16), 1 << 22),
            encoding="utf8" if layout.encoding == "utf-8" else layout.encoding,
            use_threads=False,
        )
        parse = pacsv.ParseOptions(
            delimiter=layout.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
        )
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        row = 1 if layout.headers is None else 2
        with self.path.open("rb") as fp:
            raw = LineGuard(fp, self.limits.max_line_bytes, utf8=layout.encoding == "utf-8")
            try:
                reader = pacsv.open_csv(
                    raw, read_options=read, parse_options=parse, convert_options=convert
                )
                for record_batch in reader:
                    if raw.failure is not None:
                        break
                    yield Batch(redact(record_batch, secret), raw.position, row)
                    row += record_batch.num_rows
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                if raw.failure is None:
                    raise InvalidInput(f"{self.name}: {_arrow_reason(exc)}") from None
            if raw.failure is NotUtf8:
                raise InvalidInput(
                    f"{self.name}: text is not valid UTF-8 near byte {raw.position:,}",
                    hint="save the file as UTF-8",
                )
            if raw.failure is LineTooLong:
                raise InvalidInput(
                    f"{self.name}: a line near byte {raw.position:,} is longer than "
                    f"{self.limits.max_line_bytes:,} bytes"
                )
        self.skipped_rows = skipped


def _arrow_reason(exc: Exception) -> str:
    # Arrow's messages quote the offending cell; only the kind of problem is passed on.
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"text is not valid {exc.encoding} (save the file as UTF-8)"
    if "UTF8" in text or "UTF-8" in text:
        return "text is not valid UTF-8 (save the file as UTF-8)"
    return "cannot be parsed as delimited text"


class LineTooLong(Exception):
    """Why the reader stopped: a physical line past the limit."""


class NotUtf8(Exception):
    """Why the reader stopped: bytes that are not UTF-8."""


class LineGuard(io.RawIOBase):
    """A binary reader that fails as soon as any line grows past ``limit`` bytes.

    Arrow's CSV reader grows its blocks to fit a row, so a single endless line would
    otherwise be read whole into memory. With ``utf8`` it also checks the encoding:
    Arrow's handler for bad rows cannot report a row that is not UTF-8.
    """

    def __init__(self, fp: io.BufferedIOBase, limit: int, *, utf8: bool = False) -> None:
        super().__init__()
        self._fp = fp
        self._limit = limit
        self._decoder = codecs.getincrementaldecoder("utf-8")() if utf8 else None
        self.failure: type[Exception] | None = None
        self._carry = b""
        self._run = 0
        self.position = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the file, checking line lengths on the way.

        Arrow calls this from its own I/O thread, so nothing is raised here: a problem
        ends the stream (returns 0) and is kept in ``failure`` for the caller to raise.
        """
        if self.failure is not None or self._fp.closed:
            return 0
        fresh = self._fp.read(max(len(buffer) - len(self._carry), 1))
        if not fresh:
            self.failure = self._finish()
            return 0
        problem = self._check(fresh)
        if problem is not None:
            self.failure = problem
            return 0
        data = self._carry + fresh
        if self._decoder is not None:
            # A block must not end inside a character: if the stream stops after it,
            # Arrow's report of the last row would not decode.
            pending = len(self._decoder.getstate()[0])
            data, self._carry = (data[:-pending], data[-pending:]) if pending else (data, b"")
        n = len(data)
        buffer[:n] = data
        self.position += n
        return n

    def _finish(self) -> type[Exception] | None:
        if self._decoder is not None:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                return NotUtf8
        return None

    def _check(self, data: bytes) -> type[Exception] | None:
        if self._decoder is not None:
            try:
                self._decoder.decode(data)
            except UnicodeDecodeError:
                return NotUtf8
        chunk = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(chunk == 10)
        if newlines.size == 0:
            self._run += len(data)
        else:
            longest = max(self._run + int(newlines[0]), int(np.diff(newlines).max(initial=0)))
            self._run = len(data) - 1 - int(newlines[-1])
            if longest > self._limit:
                return LineTooLong
        return LineTooLong if self._run > self._limit else None


def _bounded_lines(fp: io.TextIOBase, limit: int, name: str) -> Iterator[str]:
    number = 0
    while True:
        line = fp.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith("\n"):
            raise InvalidInput(f"{name}: line {number} is longer than {limit:,} characters")
        yield line
