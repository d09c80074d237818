"""Combo lists: one e-mail or phone per line with a password or a name after it.

Covers ``email:password``, ``email;password``, ``email|password`` and ``phone;name``
lines (lines with the identifier alone may be mixed in). A bare list of identifiers is
read by the CSV reader as one headerless column. Leaked passwords are never kept: the secret column holds only
:data:`~canarino.sources.base.CREDENTIAL_MARKER`, so the scope can record that
credentials were exposed without canarino storing them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from .base import (
    CREDENTIAL_MARKER,
    SOURCES,
    Batch,
    Source,
    Table,
    TextLines,
    batched_rows,
    decode_head,
)
from .csv import detect_encoding

_IDENTIFIER = re.compile(
    r"[^\s@:;|,\t\"']{1,64}@[^\s@:;|,\t\"']{1,253}\.[A-Za-z]{2,24}"
    r"|\+?\(?\d[\d ().\-/]{5,18}\d"
)
_NAME = re.compile(r"[^\W\d_]+(?:[ '’\-.]+[^\W\d_]+)*\.?")
_SEPARATORS = (":", ";", "|", "\t")


@dataclass(frozen=True)
class Dialect:
    """How a list's lines are split: the separator and what the second field holds."""

    separator: str | None
    second: str | None  # "secret", "name" or None for a plain list


def is_identifier(text: str) -> bool:
    """Whether ``text`` is one e-mail address or phone number."""
    return len(text) <= 320 and _IDENTIFIER.fullmatch(text) is not None


def _looks_like_name(text: str) -> bool:
    return (
        len(text) <= 80
        and _NAME.fullmatch(text) is not None
        and (" " in text or text[:1].isupper())
    )


def detect_dialect(lines: list[str]) -> Dialect | None:
    """The list dialect that fits at least 90 % of ``lines``, or ``None``.

    A bare list of identifiers is left to the CSV reader (one headerless column).
    """
    lines = [line.strip() for line in lines if line.strip()][:200]
    if not lines:
        return None
    first = lines[0]
    if not any(is_identifier(first.partition(sep)[0].strip()) for sep in (*_SEPARATORS, "\n")):
        return None  # a header row: this is a table, not a list
    need = 0.9 * len(lines)
    for sep in _SEPARATORS:
        rests: list[str] = []
        fits = 0
        for line in lines:
            ident, found, rest = line.partition(sep)
            if not is_identifier(ident.strip()):
                continue
            if found and sep != ":" and sep in rest:
                continue
            fits += 1
            if rest.strip():
                rests.append(rest.strip())
        if fits >= need and rests:
            names = sum(_looks_like_name(r) for r in rests)
            second = "name" if sep != ":" and names >= 0.8 * len(rests) else "secret"
            return Dialect(sep, second)
    return None


@SOURCES.register("combolist")
class ComboListSource(Source):
    """Lists of identifiers, bare or paired with a password (dropped) or a name."""

    NAME = "combolist"
    SUFFIXES = (".txt", ".lst")
    PRIORITY = 30

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Nearly every line is an e-mail or phone, some with one more field after it."""
        lines = decode_head(head).splitlines()
        if len(head) >= 4096 and len(lines) > 1:
            lines = lines[:-1]  # the head may cut the last line short
        return detect_dialect(lines) is not None

    @cached_property
    def _layout(self) -> Table:
        with self.path.open("rb") as fp:
            head = fp.read(64 * 1024)
        encoding = detect_encoding(head)
        lines = decode_head(head).splitlines()
        if len(head) >= 64 * 1024 and len(lines) > 1:
            lines = lines[:-1]
        dialect = detect_dialect(lines) or Dialect(None, None)
        headers = ["identifier"] + ([dialect.second] if dialect.second else [])
        self._dialect = dialect
        return Table(headers, len(headers), encoding, dialect.separator or "")

    def layout(self) -> Table:
        """``identifier``, then ``secret`` or ``name`` when lines carry a second field."""
        return self._layout

    def _lines(self) -> TextLines:
        # Undecodable bytes are replaced: identifiers are ASCII, and passwords are dropped.
        return TextLines(
            self.path,
            self._layout.encoding,
            self.limits.max_line_bytes,
            self.name,
            errors="replace",
        )

    def _cells(self, lines: TextLines) -> Iterator[tuple[int, list[str]]]:
        layout = self._layout
        sep = self._dialect.separator
        second = self._dialect.second
        skipped = 0
        for number, line in lines:
            if not line.strip():
                continue
            ident, _found, rest = line.partition(sep) if sep else (line, "", "")
            ident = ident.strip()
            if not is_identifier(ident):
                skipped += 1
                continue
            if second is None:
                yield number, [ident]
            elif second == "secret":
                yield number, [ident, CREDENTIAL_MARKER if rest.strip() else ""]
            else:
                yield number, [ident, rest.strip()][: layout.columns]
        self.skipped_rows = skipped

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line number, cells)``; lines without an identifier are skipped."""
        yield from self._cells(self._lines())

    def batches(self) -> Iterator[Batch]:
        """Stream the list as Arrow batches of string columns."""
        lines = self._lines()
        yield from batched_rows(
            self._cells(lines), self._layout.columns, self.limits.batch_rows, lambda: lines.position
        )
