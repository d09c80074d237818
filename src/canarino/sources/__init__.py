"""Leak and customer-file formats: one module per format, registered by name.

A source reads a file into Arrow record batches of strings, reporting bytes consumed so
that callers can show progress. Formats are detected by content, not by file name.
:func:`open_source` opens one file; :func:`open_sources` also expands archives (zip,
tar, 7z, gzip, bzip2, xz, nested) into one source per member, within hostile-file
limits.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput
from .archive import ARCHIVES, Problem, sniff_archive
from .base import (
    CREDENTIAL_MARKER,
    SOURCES,
    Batch,
    Limits,
    Source,
    Table,
    by_priority,
    is_credential,
)
from .combolist import ComboListSource
from .csv import CsvSource
from .dump import Dump, open_sources, spool
from .json import JsonSource
from .mail import EmlSource, MboxSource
from .msg import MsgSource
from .ndjson import NdjsonSource
from .parquet import ParquetSource
from .spreadsheet import OdsSource, XlsSource, XlsxSource
from .sqldump import SqlDumpSource

__all__ = [
    "ARCHIVES",
    "CREDENTIAL_MARKER",
    "SOURCES",
    "Batch",
    "ComboListSource",
    "CsvSource",
    "Dump",
    "EmlSource",
    "JsonSource",
    "Limits",
    "MboxSource",
    "MsgSource",
    "NdjsonSource",
    "OdsSource",
    "ParquetSource",
    "Problem",
    "Source",
    "SqlDumpSource",
    "Table",
    "XlsSource",
    "XlsxSource",
    "is_credential",
    "open_source",
    "open_sources",
    "spool",
]


def open_source(path: Path, limits: Limits) -> Source:
    """Return the source that can read ``path``, chosen by its first bytes.

    Archives hold several files: read them with :func:`open_sources`.
    """
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
    for source_cls in by_priority():
        if source_cls.sniff(head):
            return source_cls(path, limits)
    archive = sniff_archive(head)
    if archive is not None:
        raise InvalidInput(
            f"{path}: is a {archive.NAME} archive, not a single table",
            hint="unpack it first, or trace it whole so that every member is read",
        )
    raise InvalidInput(
        f"{path}: not a format canarino reads",
        hint=f"supported: {', '.join(SOURCES.names())}; archives: {', '.join(ARCHIVES.names())}",
    )
