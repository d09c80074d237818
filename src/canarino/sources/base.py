"""What every source format provides, and the limits that protect against hostile files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from ..registry import Registry


@dataclass(frozen=True)
class Limits:
    """Bounds on what a file may ask of the reader."""

    max_line_bytes: int = 1 << 20
    max_columns: int = 1_000
    batch_rows: int = 65_536


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
    """A file format. Subclasses set ``NAME`` and implement ``sniff`` and ``batches``."""

    NAME: ClassVar[str]
    SUFFIXES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.limits = limits
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


SOURCES: Registry[type[Source]] = Registry("source format")
