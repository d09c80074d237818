"""Spreadsheets read with python-calamine: Excel XLSX/XLSM/XLSB, legacy XLS, and ODS.

calamine loads a whole sheet into memory, so the zip parts of XLSX and ODS files are
checked first: their uncompressed total must stay under ``Limits.max_block_bytes`` and
each part's expansion ratio under ``Limits.max_ratio``. A legacy XLS is not compressed,
so its size on disk bounds it. The first sheet with data is read; :meth:`split` gives
one source per sheet with data.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from .base import (
    SOURCES,
    Batch,
    Limits,
    Source,
    Table,
    batched_rows,
    credential_columns,
    printable_name,
    redact_cells,
)
from .csv import is_header

_ZIP = b"PK\x03\x04"
_CFB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ODS = b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet"


def cell_text(value: Any) -> str:
    """A spreadsheet cell as text: whole floats without ``.0``, dates in ISO form."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def cfb_names(head: bytes) -> set[str]:
    """Names in an OLE2 compound file's first directory sector, when it lies in ``head``."""
    if not head.startswith(_CFB) or len(head) < 512:
        return set()
    shift = int.from_bytes(head[30:32], "little")
    if shift not in (9, 12):
        return set()
    sector = 1 << shift
    first = int.from_bytes(head[48:52], "little")
    start = (first + 1) * sector
    names: set[str] = set()
    for offset in range(start, min(start + sector, len(head) - 127), 128):
        size = int.from_bytes(head[offset + 64 : offset + 66], "little")
        if 2 <= size <= 64:
            names.add(head[offset : offset + size - 2].decode("utf-16-le", errors="replace"))
    return names


def check_zip_parts(path: Path, limits: Limits, name: str) -> None:
    """Refuse a zip-based document whose parts would expand past the limits."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        raise InvalidInput(f"{name}: the spreadsheet's zip structure is damaged") from None
    if len(infos) > limits.max_members:
        raise InvalidInput(f"{name}: the spreadsheet has more than {limits.max_members:,} parts")
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > (1 << 20) and ratio > limits.max_ratio:
            raise InvalidInput(
                f"{name}: part {printable_name(info.filename)} expands {ratio:,.0f} times, "
                f"more than the limit of {limits.max_ratio:,} (a zip bomb?)"
            )
    if total > limits.max_block_bytes:
        raise InvalidInput(
            f"{name}: the spreadsheet expands to {total:,} bytes, more than the limit of "
            f"{limits.max_block_bytes:,}",
            hint="save the data as CSV, or raise max_block_bytes",
        )


# calamine runs in a child process under a memory cap: a one-kilobyte workbook can
# declare a sheet of 16,384 x 1,048,576 cells, and calamine then aborts the whole process
# allocating it (a Rust allocation failure cannot be caught). The child imports only
# calamine, converts cells to text and writes one JSON line per row.
_WORKER = r"""
import datetime as dt, json, resource, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import python_calamine as calamine

def text(v):
    if v is None or v == "":
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    return str(v)

try:
    wb = calamine.CalamineWorkbook.from_path(sys.argv[1])
except calamine.PasswordError:
    sys.exit(3)
only = int(sys.argv[3])
out = sys.stdout
for index, name in enumerate(wb.sheet_names):
    if only >= 0 and index != only:
        continue
    out.write(json.dumps({"sheet": str(name)}) + "\n")
    for row in wb.get_sheet_by_index(index).iter_rows():
        out.write(json.dumps([text(v) for v in row]) + "\n")
"""
_WORKER_TIMEOUT = 900


def read_sheets(path: Path, limits: Limits, name: str, only: int | None = None) -> list[Sheet]:
    """Every sheet of a workbook (or sheet ``only``) as rows of text, read by calamine."""
    memory = 3 * limits.max_block_bytes + (512 << 20)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    str(path),
                    str(memory),
                    str(-1 if only is None else only),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                timeout=_WORKER_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InvalidInput(
                f"{name}: reading the workbook took more than {_WORKER_TIMEOUT} seconds"
            ) from None
        if done.returncode == 3:
            raise InvalidInput(
                f"{name}: the workbook is password-protected", hint="save an unprotected copy"
            )
        if done.returncode != 0:
            raise InvalidInput(
                f"{name}: not a spreadsheet calamine can read (damaged, or it asks for more "
                f"than {memory:,} bytes of memory)"
            )
        out.seek(0)
        sheets: list[Sheet] = []
        for line in out:
            item = json.loads(line)
            if isinstance(item, dict):
                sheets.append(Sheet(str(item["sheet"]), []))
            else:
                sheets[-1].rows.append(item)
    for sheet in sheets:
        while sheet.rows and not any(sheet.rows[-1]):
            sheet.rows.pop()
    return sheets


@dataclass
class Sheet:
    """One sheet's name and rows of text."""

    name: str
    rows: list[list[str]]

    def has_data(self) -> bool:
        """Whether any cell holds text."""
        return any(any(row) for row in self.rows)


class SpreadsheetSource(Source):
    """A workbook; reads one sheet (the first with data unless ``sheet`` is given)."""

    NAME = "spreadsheet"
    PRIORITY = 10

    def __init__(
        self, path: Path, limits: Limits, *, name: str | None = None, sheet: int | None = None
    ) -> None:
        super().__init__(path, limits, name=name)
        self.sheet = sheet

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Never: the registered subclasses sniff their own container."""
        return False

    @cached_property
    def _sheets(self) -> list[Sheet]:
        with self.path.open("rb") as fp:
            magic = fp.read(4)
        if magic == _ZIP:
            check_zip_parts(self.path, self.limits, self.name)
        return read_sheets(self.path, self.limits, self.name, self.sheet)

    @cached_property
    def _data(self) -> tuple[int, list[list[str]]]:
        """The sheet read, its index, and its rows as text."""
        for index, sheet in enumerate(self._sheets):
            if sheet.has_data():
                return index, sheet.rows
        raise InvalidInput(f"{self.name}: the workbook has no sheet with data")

    @cached_property
    def _layout(self) -> Table:
        _index, rows = self._data
        first = next(row for row in rows if any(row))
        width = max(len(row) for row in rows)
        if width > self.limits.max_columns:
            raise InvalidInput(
                f"{self.name}: {width:,} columns, more than the limit of "
                f"{self.limits.max_columns:,}",
                hint="raise max_columns if the file is genuine",
            )
        used = [c for c in first if c.strip()]
        headers = [c.strip() for c in first] + [""] * (width - len(first))
        return Table(headers if is_header(used) else None, width, self.NAME, "")

    def layout(self) -> Table:
        """Header row (detected like CSV) and column count of the sheet read."""
        return self._layout

    def split(self) -> list[Source]:
        """One source per sheet that holds data, named ``book.xlsx!Sheet``."""
        if self.sheet is not None:
            return [self]
        parts: list[Source] = []
        for index, sheet in enumerate(self._sheets):
            if sheet.has_data():
                label = f"{self.name}!{printable_name(sheet.name)}"
                part = type(self)(self.path, self.limits, name=label, sheet=index)
                part.__dict__["_sheets"] = [sheet]  # already read: no second child process
                parts.append(part)
        return parts if len(parts) > 1 else [self]

    def _cells(self) -> Iterator[tuple[int, list[str]]]:
        layout = self._layout
        _index, rows = self._data
        started = False
        for number, row in enumerate(rows, 1):
            if not any(row):
                continue
            if not started:
                started = True
                if layout.headers is not None:
                    continue
            yield number, row + [""] * (layout.columns - len(row))

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(row number in the sheet, cells)``; empty rows are skipped."""
        secret = credential_columns(self._layout.headers)
        for number, cells in self._cells():
            yield number, redact_cells(cells, secret)

    def batches(self) -> Iterator[Batch]:
        """The sheet's rows as Arrow batches of string columns."""
        yield from batched_rows(
            self._cells(),
            self._layout.columns,
            self.limits.batch_rows,
            lambda: self.size,
            credential_columns(self._layout.headers),
        )


@SOURCES.register("xlsx")
class XlsxSource(SpreadsheetSource):
    """Excel 2007+ workbooks (XLSX, XLSM, XLSB)."""

    NAME = "xlsx"
    SUFFIXES = (".xlsx", ".xlsm", ".xlsb")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """A zip whose first entries include the ``xl/`` folder."""
        return head.startswith(_ZIP) and b"xl/" in head


@SOURCES.register("ods")
class OdsSource(SpreadsheetSource):
    """OpenDocument spreadsheets (LibreOffice Calc)."""

    NAME = "ods"
    SUFFIXES = (".ods",)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """A zip whose first entry declares the ODS mimetype."""
        return head.startswith(_ZIP) and _ODS in head[:200]


@SOURCES.register("xls")
class XlsSource(SpreadsheetSource):
    """Excel 97–2003 workbooks (BIFF in an OLE2 compound file)."""

    NAME = "xls"
    SUFFIXES = (".xls",)
    PRIORITY = 12

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """An OLE2 compound file with a ``Workbook`` stream, or one whose names are unseen."""
        if not head.startswith(_CFB):
            return False
        names = {n.casefold() for n in cfb_names(head)}
        return not names or bool(names & {"workbook", "book"})
