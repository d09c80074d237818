"""What every source format provides, and the limits that protect against hostile files."""

from __future__ import annotations

import codecs
import io
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidInput
from ..registry import Registry


@dataclass(frozen=True)
class Limits:
    """Bounds on what a file may ask of the reader.

    The first three are positional for older callers; the rest guard against hostile
    files: deep nesting, blocks that must sit in memory whole, and archive bombs.
    """

    max_line_bytes: int = 1 << 20
    max_columns: int = 1_000
    batch_rows: int = 65_536
    max_depth: int = 64
    max_block_bytes: int = 1 << 28
    max_unpacked_bytes: int = 1 << 34
    max_ratio: int = 200
    max_members: int = 10_000
    max_archive_depth: int = 4


@dataclass(frozen=True)
class Batch:
    """A record batch of string columns and how far into the file it reaches."""

    data: pa.RecordBatch
    bytes_read: int
    first_row: int


@dataclass(frozen=True)
class Table:
    """What a source found about a file's layout before reading it."""

    headers: list[str] | None
    columns: int
    encoding: str
    delimiter: str


Progress = Callable[[int], None]


class Source(ABC):
    """A file format. Subclasses set ``NAME`` and implement ``sniff`` and ``batches``.

    ``name`` is how messages refer to the file: its path, or ``archive.zip!member`` for
    a file unpacked from an archive. Sources are tried in ``PRIORITY`` order (lowest
    first) so that specific formats are sniffed before the catch-all delimited text.
    """

    NAME: ClassVar[str]
    SUFFIXES: ClassVar[tuple[str, ...]] = ()
    PRIORITY: ClassVar[int] = 50

    skipped_rows: int = 0

    def __init__(self, path: Path, limits: Limits, *, name: str | None = None) -> None:
        self.path = path
        self.limits = limits
        self.name = name or str(path)
        self.size = path.stat().st_size

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes) -> bool:
        """Whether the first bytes of a file look like this format."""

    @abstractmethod
    def layout(self) -> Table:
        """Headers, column count and encoding, read from the start of the file."""

    @abstractmethod
    def batches(self) -> Iterator[Batch]:
        """Yield the rows as record batches of strings, columns named by position."""

    @abstractmethod
    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line number, cells)`` for each data row, for row-level reporting."""

    def split(self) -> list[Source]:
        """One source per table when the file holds several (sheets); else itself."""
        return [self]


SOURCES: Registry[type[Source]] = Registry("source format")


def by_priority() -> list[type[Source]]:
    """Registered sources in the order they are sniffed."""
    return sorted(SOURCES, key=lambda cls: cls.PRIORITY)


# --- helpers shared by the formats ---------------------------------------------------------

CREDENTIAL_MARKER = "[credential]"
_CREDENTIAL = re.compile(
    r"(?:^|[^a-z])(?:pass(?:word|wd|wort|phrase)?|pwd|pw|secret|hash(?:ed)?|salt|"
    r"token|api ?key|credentials?|pin|otp)s?(?:$|[^a-z])"
)


_CREDENTIAL_ANYWHERE = ("password", "passwd", "passwort", "secret", "credential", "apikey")


def is_credential(header: str) -> bool:
    """Whether a column header names a password, hash, token or similar secret."""
    folded = header.casefold()
    if any(word in folded for word in _CREDENTIAL_ANYWHERE):
        return True
    return bool(_CREDENTIAL.search(re.sub(r"[_\-.\s]+", " ", folded)))


def credential_columns(headers: Sequence[str] | None) -> list[int]:
    """Positions of the columns whose header names a secret."""
    return [i for i, h in enumerate(headers or ()) if is_credential(h)]


def redact(batch: pa.RecordBatch, columns: Sequence[int]) -> pa.RecordBatch:
    """Replace every non-empty cell of ``columns`` by :data:`CREDENTIAL_MARKER`.

    Leaked passwords are never kept: only the fact that a credential was present, so
    that the scope can still report the credentials category.
    """
    if not columns:
        return batch
    arrays = list(batch.columns)
    for i in columns:
        present = pc.greater(pc.utf8_length(arrays[i].fill_null("")), 0)
        arrays[i] = pc.if_else(present, CREDENTIAL_MARKER, "")
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def redact_cells(cells: list[str], columns: Sequence[int]) -> list[str]:
    """:func:`redact` for one row of cells."""
    for i in columns:
        if i < len(cells) and cells[i]:
            cells[i] = CREDENTIAL_MARKER
    return cells


def column_names(count: int) -> list[str]:
    """Positional column names ``c0`` … ``cN``."""
    return [f"c{i}" for i in range(count)]


def _clean(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


def make_batch(rows: Sequence[Sequence[str]], width: int) -> pa.RecordBatch:
    """Build a record batch of ``width`` string columns from rows (short rows padded)."""
    columns: list[list[str]] = [[] for _ in range(width)]
    for row in rows:
        for i in range(width):
            columns[i].append(row[i] if i < len(row) else "")
    arrays = []
    for values in columns:
        try:
            arrays.append(pa.array(values, pa.string()))
        except (UnicodeEncodeError, pa.ArrowInvalid):
            # Lone surrogates (from JSON "\ud800" escapes) are not UTF-8.
            arrays.append(pa.array([_clean(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=column_names(width))


def batched_rows(
    rows: Iterable[tuple[int, list[str]]],
    width: int,
    size: int,
    position: Callable[[], int],
    redacted: Sequence[int] = (),
) -> Iterator[Batch]:
    """Group ``(row number, cells)`` into :class:`Batch` es of ``size`` rows."""
    pending: list[list[str]] = []
    first = 0
    for number, cells in rows:
        if not pending:
            first = number
        pending.append(cells)
        if len(pending) >= size:
            yield Batch(redact(make_batch(pending, width), redacted), position(), first)
            pending = []
    if pending:
        yield Batch(redact(make_batch(pending, width), redacted), position(), first)


def text_encoding(head: bytes) -> str:
    """Encoding of a text head: a BOM, else UTF-16 by its zero bytes, else UTF-8."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return utf16_without_bom(head) or "utf-8"


def utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the head is UTF-16 text without a BOM."""
    sample = head[:4096]
    sample = sample[: len(sample) // 2 * 2]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    half = len(sample) // 2
    if odd.count(0) > 0.4 * half and even.count(0) < 0.02 * half:
        encoding = "utf-16-le"
    elif even.count(0) > 0.4 * half and odd.count(0) < 0.02 * half:
        encoding = "utf-16-be"
    else:
        return None
    text = sample.decode(encoding, errors="replace")
    printable = sum(c.isprintable() or c in "\t\r\n" for c in text)
    return encoding if printable >= 0.95 * len(text) else None


def decode_head(head: bytes) -> str:
    """A file head as text for sniffing (never fails; undecodable bytes replaced)."""
    encoding = text_encoding(head)
    if encoding.startswith("utf-16"):
        head = head[: len(head) // 2 * 2]
    return head.decode(encoding, errors="replace").removeprefix("\ufeff")


class TextLines:
    """Numbered lines of a text file, each at most ``limit`` characters, newline removed.

    ``position`` is how many bytes of the file have been read so far (read-ahead
    included), for progress reporting. An over-long line or undecodable text is an
    :class:`InvalidInput` naming the file and the line.
    """

    def __init__(
        self, path: Path, encoding: str, limit: int, name: str, errors: str = "strict"
    ) -> None:
        self.path = path
        self.encoding = encoding
        self.limit = limit
        self.name = name
        self.errors = errors
        self.position = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        if self.encoding.startswith("utf-16"):
            yield from self._wide()
            return
        # ASCII-compatible encodings split on b"\n", so errors name the exact line.
        decoder = codecs.getincrementaldecoder(self.encoding)(errors=self.errors)
        number = 0
        with self.path.open("rb") as raw:
            while True:
                line = raw.readline(self.limit + 1)
                if not line:
                    break
                number += 1
                self.position = raw.tell()
                self._check_length(line, number)
                try:
                    text = decoder.decode(line)
                except UnicodeDecodeError:
                    raise InvalidInput(
                        f"{self.name}: text is not valid {self.encoding} on line {number:,}",
                        hint="save the file as UTF-8",
                    ) from None
                yield number, text.rstrip("\r\n")

    def _check_length(self, line: bytes | str, number: int) -> None:
        newline = b"\n" if isinstance(line, bytes) else "\n"
        if len(line) > self.limit and not line.endswith(newline):  # type: ignore[arg-type]
            raise InvalidInput(
                f"{self.name}: line {number:,} is longer than {self.limit:,} characters",
                hint="raise max_line_bytes if the file is genuine",
            )

    def _wide(self) -> Iterator[tuple[int, str]]:
        with self.path.open("rb") as raw:
            fp = io.TextIOWrapper(raw, encoding=self.encoding, errors=self.errors, newline=None)
            number = 0
            try:
                while True:
                    line = fp.readline(self.limit + 1)
                    if not line:
                        break
                    number += 1
                    self.position = raw.tell()
                    self._check_length(line, number)
                    yield number, line.rstrip("\n")
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"{self.name}: text is not valid {self.encoding} near byte {raw.tell():,}",
                    hint="save the file as UTF-8",
                ) from None


def printable_name(name: str, limit: int = 160) -> str:
    """A file or member name safe to print: control characters replaced, length capped."""
    cleaned = "".join(c if c.isprintable() else "?" for c in name)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
