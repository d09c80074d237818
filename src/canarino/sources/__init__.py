"""Leak and customer-file formats: one module per format, registered by name.

A source reads a file into Arrow record batches of strings, reporting bytes consumed so
that callers can show progress. Formats are detected by content, not by file name.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput
from .base import SOURCES, Batch, Limits, Source, Table
from .csv import CsvSource

__all__ = ["SOURCES", "Batch", "CsvSource", "Limits", "Source", "Table", "open_source"]


def open_source(path: Path, limits: Limits) -> Source:
    """Return the source that can read ``path``, chosen by its first bytes."""
    try:
        with path.open("rb") as fp:
            head = fp.read(64 * 1024)
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a folder; give a file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror})") from None
    if not head:
        raise InvalidInput(f"{path}: the file is empty")
    for source_cls in SOURCES:
        if source_cls.sniff(head):
            return source_cls(path, limits)
    raise InvalidInput(
        f"{path}: not a format canarino reads",
        hint=f"supported: {', '.join(SOURCES.names())}",
    )
