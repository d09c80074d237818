"""SQL dumps from mysqldump, MariaDB and pg_dump: ``INSERT … VALUES`` and ``COPY … FROM stdin``.

The parser is a small streaming tokenizer written here rather than a SQL library: SQL
parsers (sqlparse, sqlglot) build whole statements in memory, and one mysqldump
extended INSERT can be hundreds of megabytes. This one reads the file in chunks, holds
at most one value (bounded by ``Limits.max_line_bytes``) plus a chunk, and only
understands what dumps contain: INSERT/REPLACE tuples with MySQL or PostgreSQL quoting,
COPY blocks in text format, and CREATE TABLE column lists for INSERTs without one.
Every other statement is skipped.

All tables go into one record stream; a column is named after the SQL column and
tables that share a column name share the column. A first pass finds the columns, so the
file is read twice.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

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

_IDENT = r"(?:`(?:[^`]|``)++`|\"(?:[^\"]|\"\")++\"|[\w$]++)"
_QNAME = rf"{_IDENT}(?:\s*+\.\s*+{_IDENT})*+"
_COLS = rf"\(\s*+{_IDENT}(?:\s*+,\s*+{_IDENT})*+\s*+\)"
_INSERT = re.compile(
    rf"(?:INSERT|REPLACE)\s++(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s++)*+"
    rf"(?:INTO\s++)?(?P<table>{_QNAME})\s*+(?P<cols>{_COLS})?\s*+VALUES?\s*+",
    re.I,
)
_COPY = re.compile(
    rf"COPY\s++(?P<table>{_QNAME})\s*+(?P<cols>{_COLS})?\s*+FROM\s++stdin\b(?P<opts>[^;\n]*+);"
    r"[^\S\n]*+\n?",
    re.I,
)
_CREATE = re.compile(
    rf"CREATE\s++(?:OR\s++REPLACE\s++)?(?:(?:GLOBAL|LOCAL)\s++)?"
    rf"(?:(?:TEMPORARY|TEMP|UNLOGGED)\s++)?TABLE\s++(?:IF\s++NOT\s++EXISTS\s++)?"
    rf"(?P<table>{_QNAME})\s*+\(",
    re.I,
)
_IDENT_ONE = re.compile(_IDENT)
_SPACE = re.compile(r"(?:\s++|--[^\n]*+|#[^\n]*+|/\*.*?\*/)*+", re.S)
_INLINE_SPACE = re.compile(r"\s*+")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]++|[-+]?(?:\d++(?:\.\d*+)?|\.\d++)(?:[eE][-+]?\d++)?")
_WORD = re.compile(r"[A-Za-z_][\w$]*+")
_CAST = re.compile(r"(?:\s*+::\s*+[A-Za-z_][\w ]*+(?:\(\d+(?:\s*,\s*\d+)?\))?(?:\[\])*+)++")
_MYSQL_STRING = re.compile(r"(?:_\w++\s*+|[NnXxBb])?'((?:[^'\\]++|\\.|'')*+)'", re.S)
_MYSQL_DSTRING = re.compile(r"\"((?:[^\"\\]++|\\.|\"\")*+)\"", re.S)
_PG_STRING = re.compile(r"(?:[NnXxBb])?'((?:[^']++|'')*+)'", re.S)
_PG_ESTRING = re.compile(r"[Ee]'((?:[^'\\]++|\\.|'')*+)'", re.S)
_DOLLAR = re.compile(r"\$(\w*+)\$.*?\$\1\$", re.S)
_MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_CONSTRAINTS = {
    "primary",
    "key",
    "unique",
    "index",
    "constraint",
    "foreign",
    "check",
    "fulltext",
    "spatial",
    "exclude",
    "like",
    "period",
}
_BANNER = re.compile(
    r"^\s*(?:--\s*(?:MySQL|MariaDB|PostgreSQL) (?:database )?dump"
    r"|(?:INSERT|REPLACE)\s+(?:IGNORE\s+)?INTO\s"
    r"|COPY\s+\S+.*\bFROM\s+stdin\b"
    r"|CREATE\s+TABLE\s)",
    re.I | re.M,
)
_PLAIN = re.compile(r"(?:[^'\"`$;(),\-/#\s]++|-(?!-)|/(?!\*)|\$(?!\w*+\$))++")
_CHUNK = 1 << 20


class SqlSyntaxError(Exception):
    """The dump does not follow the statement shapes the parser knows."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _unescape_mysql(text: str) -> str:
    if "\\" not in text and "''" not in text:
        return text
    text = text.replace("''", "'")
    return re.sub(r"\\(.)", lambda m: _MYSQL_ESCAPES.get(m[1], m[1]), text, flags=re.S)


def _unescape_copy(text: str) -> str:
    if "\\" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        if m[1]:
            return chr(int(m[1], 8))
        if m[2]:
            return chr(int(m[2], 16))
        return _MYSQL_ESCAPES.get(m[3], "\v" if m[3] == "v" else "\f" if m[3] == "f" else m[3])

    return re.sub(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", one, text, flags=re.S)


def unquote(ident: str) -> str:
    """The plain name of a possibly quoted SQL identifier."""
    if ident[:1] == "`":
        return ident[1:-1].replace("``", "`")
    if ident[:1] == '"':
        return ident[1:-1].replace('""', '"')
    return ident


def _names(cols: str) -> list[str]:
    return [unquote(m[0]) for m in _IDENT_ONE.finditer(cols)]


def _table(qname: str) -> str:
    return unquote(_IDENT_ONE.findall(qname)[-1])


@dataclass
class Rows:
    """The rows of one statement: table, column names and each row's values."""

    table: str
    columns: list[str] | None


class _Scanner:
    """Decoded text of a file, read in chunks, with a guaranteed lookahead window."""

    def __init__(self, fp: BinaryIO, encoding: str, window: int) -> None:
        self.fp = fp
        self.decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self.window = window
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1
        self.bytes_read = 0

    def ensure(self, n: int | None = None) -> None:
        need = self.window if n is None else n
        while not self.eof and len(self.buf) - self.pos < need:
            data = self.fp.read(_CHUNK)
            self.bytes_read += len(data)
            if self.pos:
                self.line_base += self.buf.count("\n", 0, self.pos)
                self.buf = self.buf[self.pos :]
                self.pos = 0
            if data:
                self.buf += self.decoder.decode(data)
            else:
                self.buf += self.decoder.decode(b"", final=True)
                self.eof = True

    def line(self) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos)

    def at_end(self) -> bool:
        self.ensure(1)
        return self.pos >= len(self.buf)

    def peek(self) -> str:
        self.ensure(1)
        return self.buf[self.pos : self.pos + 1]

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        self.ensure()
        m = pattern.match(self.buf, self.pos)
        if m:
            self.pos = m.end()
        return m


class SqlDumpParser:
    """Streams ``(table, columns, values)`` for every data row of a dump."""

    def __init__(self, scanner: _Scanner, postgres: bool) -> None:
        self.s = scanner
        self.postgres = postgres
        self.tables: dict[str, list[str]] = {}
        if postgres:
            self.strings = [_PG_ESTRING, _PG_STRING]
        else:
            self.strings = [_MYSQL_STRING, _MYSQL_DSTRING]

    def rows(self) -> Iterator[tuple[Rows, list[str]]]:
        """Yield each data row with the statement it belongs to."""
        s = self.s
        while True:
            s.match(_SPACE)
            if s.at_end():
                return
            if s.peek() == ";":
                s.pos += 1
                continue
            if m := s.match(_INSERT):
                table = _table(m["table"])
                cols = _names(m["cols"]) if m["cols"] else self.tables.get(table)
                yield from self._tuples(Rows(table, cols))
            elif m := s.match(_COPY):
                table = _table(m["table"])
                cols = _names(m["cols"]) if m["cols"] else self.tables.get(table)
                yield from self._copy(Rows(table, cols), "csv" in m["opts"].lower())
            elif m := s.match(_CREATE):
                self.tables[_table(m["table"])] = self._create_columns()
                self._skip_statement()
            else:
                self._skip_statement()

    def _string(self) -> str | None:
        s = self.s
        for pattern in self.strings:
            m = pattern.match(s.buf, s.pos)
            if m:
                if m.end() - s.pos > s.window:
                    raise SqlSyntaxError(f"a value is longer than {s.window:,} characters")
                s.pos = m.end()
                body = m[1]
                if pattern is _PG_STRING:
                    return body.replace("''", "'")
                if pattern is _MYSQL_DSTRING:
                    return _unescape_mysql(body.replace('""', '"'))
                return _unescape_mysql(body)
        if s.buf[s.pos : s.pos + 1] == "'" or s.buf[s.pos : s.pos + 2].lower() in (
            "e'",
            "x'",
            "b'",
            "n'",
        ):
            self._unterminated()
        return None

    def _unterminated(self) -> None:
        if self.s.eof:
            raise SqlSyntaxError("a quoted value never ends")
        raise SqlSyntaxError(f"a value is longer than {self.s.window:,} characters")

    def _value(self) -> str:
        s = self.s
        s.ensure()
        text = self._string()
        if text is None:
            if m := _NUMBER.match(s.buf, s.pos):
                s.pos = m.end()
                text = m[0]
            elif m := _WORD.match(s.buf, s.pos):
                s.pos = m.end()
                word = m[0]
                s.match(_INLINE_SPACE)
                if s.peek() == "(":
                    # A function call (NOW(), UNHEX(…)) computes a value; none is read.
                    self._balanced(stop=None)
                    text = ""
                else:
                    text = "" if word.upper() in ("NULL", "DEFAULT") else word
            elif s.peek() == "(":
                self._balanced(stop=None)
                text = ""
            else:
                raise SqlSyntaxError("unexpected text where a value should be")
        s.match(_CAST)
        return text

    def _tuples(self, rows: Rows) -> Iterator[tuple[Rows, list[str]]]:
        s = self.s
        while True:
            s.match(_SPACE)
            if s.peek() != "(":
                raise SqlSyntaxError("expected ( to open a row of values")
            s.pos += 1
            values: list[str] = []
            while True:
                s.match(_INLINE_SPACE)
                if not values and s.peek() == ")":
                    s.pos += 1
                    break
                values.append(self._value())
                s.match(_INLINE_SPACE)
                c = s.peek()
                s.pos += 1
                if c == ")":
                    break
                if c != ",":
                    if not c:
                        raise SqlSyntaxError("the file ends inside a row of values")
                    raise SqlSyntaxError("expected , or ) after a value")
            yield rows, values
            s.match(_SPACE)
            c = s.peek()
            if c == ",":
                s.pos += 1
                continue
            if c == ";":
                s.pos += 1
            elif c:
                self._skip_statement()  # ON DUPLICATE KEY UPDATE …, ON CONFLICT …
            return

    def _copy(self, rows: Rows, csv_format: bool) -> Iterator[tuple[Rows, list[str]]]:
        s = self.s
        while True:
            s.ensure()
            end = s.buf.find("\n", s.pos, s.pos + s.window + 1)
            if end < 0:
                if not s.eof and len(s.buf) - s.pos > s.window:
                    raise SqlSyntaxError(f"a COPY line is longer than {s.window:,} characters")
                end = len(s.buf)
            line = s.buf[s.pos : end].removesuffix("\r")
            s.pos = min(end + 1, len(s.buf))
            if line == "\\.":
                return
            if not line and s.at_end():
                return
            if csv_format:
                yield rows, next(csv.reader([line]), [])
            else:
                yield rows, ["" if f == "\\N" else _unescape_copy(f) for f in line.split("\t")]

    def _create_columns(self) -> list[str]:
        s = self.s
        columns: list[str] = []
        while True:
            s.match(_SPACE)
            m = s.match(_IDENT_ONE)
            if m and (m[0][:1] in '`"' or m[0].lower() not in _CONSTRAINTS):
                columns.append(unquote(m[0]))
            if self._balanced(stop=",") == ")":
                return columns

    def _token(self) -> str:
        """Consume one token; return it if it is ``(``, ``)``, ``,`` or ``;``, "" if other."""
        s = self.s
        s.match(_SPACE)
        if s.at_end():
            return "EOF"
        if self._string() is not None:
            return ""
        c = s.peek()
        if c in "(),;":
            s.pos += 1
            return c
        if s.match(_PLAIN) or s.match(_DOLLAR) or s.match(_IDENT_ONE):
            return ""
        self._unterminated()  # an opening quote, comment or $$ that does not close
        return ""

    def _balanced(self, stop: str | None) -> str:
        """Skip past ``( … )``, or up to a top-level ``stop`` character or ``)``."""
        depth = 0
        while True:
            t = self._token()
            if t in ("EOF", ";"):
                raise SqlSyntaxError("a statement ends inside parentheses")
            if t == "(":
                depth += 1
            elif t == ")":
                if depth == 0:
                    return t
                depth -= 1
                if depth == 0 and stop is None:
                    return t
            elif t and depth == 0 and stop and t in stop:
                return t

    def _skip_statement(self) -> None:
        while self._token() not in ("EOF", ";"):
            pass


@SOURCES.register("sqldump")
class SqlDumpSource(Source):
    """A MySQL/MariaDB or PostgreSQL dump; rows come from INSERT and COPY statements."""

    NAME = "sqldump"
    SUFFIXES = (".sql",)
    PRIORITY = 22

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """A dump banner, or a line starting an INSERT, COPY or CREATE TABLE."""
        return _BANNER.search(decode_head(head)) is not None

    @cached_property
    def _dialect(self) -> tuple[str, bool]:
        with self.path.open("rb") as fp:
            head = fp.read(64 * 1024)
        text = decode_head(head)
        postgres = bool(
            re.search(r"PostgreSQL database dump|^COPY\s|standard_conforming_strings", text, re.M)
        )
        return text_encoding(head), postgres

    def _parse(self) -> Iterator[tuple[Rows, list[str], int]]:
        encoding, postgres = self._dialect
        with self.path.open("rb") as fp:
            scanner = _Scanner(fp, encoding, self.limits.max_line_bytes)
            parser = SqlDumpParser(scanner, postgres)
            try:
                for rows, values in parser.rows():
                    yield rows, values, scanner.bytes_read
            except SqlSyntaxError as exc:
                raise InvalidInput(
                    f"{self.name}: line {scanner.line():,}: {exc.what}",
                    hint="canarino reads INSERT … VALUES and COPY … FROM stdin statements",
                ) from None
            except RecursionError:
                raise InvalidInput(
                    f"{self.name}: line {scanner.line():,}: nested too deeply"
                ) from None

    @staticmethod
    def _names(rows: Rows, width: int) -> list[str]:
        if rows.columns is not None:
            return rows.columns
        return [f"{rows.table} column {i + 1}" for i in range(width)]

    @cached_property
    def _layout(self) -> Table:
        columns: dict[str, None] = {}
        last: Rows | None = None
        count = 0
        for rows, values, _pos in self._parse():
            count += 1
            if rows is last:
                continue
            last = rows
            for name in self._names(rows, len(values)):
                columns.setdefault(name, None)
            if len(columns) > self.limits.max_columns:
                raise InvalidInput(
                    f"{self.name}: the tables have more than {self.limits.max_columns:,} "
                    "distinct columns",
                    hint="raise max_columns if the file is genuine",
                )
        if not count:
            raise InvalidInput(f"{self.name}: the dump holds no INSERT or COPY rows")
        return Table(list(columns), len(columns), self._dialect[0], "")

    def layout(self) -> Table:
        """Every column name of every table with rows, in order of first appearance."""
        return self._layout

    def _cells(self) -> Iterator[tuple[int, list[str], int]]:
        headers = self._layout.headers or []
        index = {name: i for i, name in enumerate(headers)}
        width = len(headers)
        positions: list[int] = []
        current: Rows | None = None
        number = skipped = 0
        for rows, values, pos in self._parse():
            number += 1
            if rows is not current:
                current = rows
                positions = [index.get(n, -1) for n in self._names(rows, len(values))]
            if len(values) != len(positions):
                skipped += 1
                continue
            cells = [""] * width
            for i, value in zip(positions, values, strict=True):
                if i >= 0:
                    cells[i] = value
            yield number, cells, pos
        self.skipped_rows = skipped

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(row number, cells)`` in the order of the layout's headers."""
        secret = credential_columns(self._layout.headers)
        for number, cells, _pos in self._cells():
            yield number, redact_cells(cells, secret)

    def batches(self) -> Iterator[Batch]:
        """Stream the rows of every table as Arrow batches of string columns."""
        position = 0

        def rows() -> Iterator[tuple[int, list[str]]]:
            nonlocal position
            for number, cells, pos in self._cells():
                position = pos
                yield number, cells

        yield from batched_rows(
            rows(),
            self._layout.columns,
            self.limits.batch_rows,
            lambda: position,
            credential_columns(self._layout.headers),
        )
