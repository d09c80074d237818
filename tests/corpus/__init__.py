"""Test files for the source formats, built on demand in a temporary folder.

Nothing binary is committed: every function writes one file (or a few) under ``root``
and returns its path. ``PEOPLE`` is the data most well-formed files hold, so tests can
check that every format yields the same addresses and phones. The hostile set covers
archive bombs, endless lines, bad encodings, deep nesting, path traversal, formula
injection and truncated compressed data.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import gzip
import io
import json
import lzma
import resource
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

PEOPLE: list[dict[str, str]] = [
    {"name": "Mario Rossi", "email": "mario.rossi@posta.it", "phone": "+39 347 123 4567"},
    {"name": "Anna Bianchi", "email": "anna.bianchi@esempio.it", "phone": "+39 333 765 4321"},
    {"name": "Luca Verdi", "email": "luca.verdi@esempio.com", "phone": "+39 320 111 2222"},
]
EMAILS = {p["email"] for p in PEOPLE}
FORMULA = "=cmd|' /C calc'!A0"
PASSWORDS = ["hunter2", "Pa55w0rd!", "correct horse"]


# --- well-formed files -----------------------------------------------------------------


def csv_file(root: Path, encoding: str = "utf-8", name: str = "people.csv") -> Path:
    """A CSV with header in ``encoding``; ``utf-16-le``/``-be`` are written without a BOM."""
    lines = ["nome;email;cellulare;città"] + [
        f"{p['name']};{p['email']};{p['phone']};Città" for p in PEOPLE
    ]
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    if encoding == "utf-8-sig":
        data = codecs.BOM_UTF8 + data.removeprefix(codecs.BOM_UTF8)
    path = root / name
    path.write_bytes(data)
    return path


def formula_csv(root: Path) -> Path:
    """CSV whose cells look like spreadsheet formulas (DDE injection)."""
    path = root / "formula.csv"
    rows = [["email", "note"], ["mario.rossi@posta.it", FORMULA], ["x@y.it", "+1+cmd|' /C x'!A0"]]
    path.write_text("\n".join(",".join(_quote(c) for c in r) for r in rows) + "\n")
    return path


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"') else cell


def nested_records() -> list[dict[str, object]]:
    """The people as nested JSON records, with a password to be redacted."""
    return [
        {
            "id": i + 1,
            "customer": {"name": p["name"], "contact": {"email": p["email"]}},
            "phones": [p["phone"]],
            "active": True,
            "score": 1.5,
            "password": PASSWORDS[i],
            "note": None,
        }
        for i, p in enumerate(PEOPLE)
    ]


def json_file(root: Path, shape: str = "array", encoding: str = "utf-8") -> Path:
    """JSON records as an ``array``, an ``object`` holding one, or ``concatenated``."""
    records = nested_records()
    if shape == "array":
        text = json.dumps(records, indent=2)
    elif shape == "object":
        text = json.dumps({"meta": {"count": 3, "tags": ["a"]}, "users": records}, indent=2)
    else:
        text = "\n".join(json.dumps(r, indent=1) for r in records)
    path = root / f"people-{shape}.json"
    path.write_bytes(text.encode(encoding))
    return path


def ndjson_file(root: Path, bad_line: bool = False) -> Path:
    """One record per line; with ``bad_line`` a truncated last line."""
    lines = [json.dumps(r) for r in nested_records()]
    if bad_line:
        lines.append('{"id": 4, "customer": {"na')
    path = root / "people.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def combo_file(root: Path, separator: str = ":", second: str = "password") -> Path:
    """A combo list: ``email:password`` lines, or ``phone;name`` with ``second='name'``."""
    if second == "name":
        lines = [f"{p['phone']}{separator}{p['name']}" for p in PEOPLE]
    else:
        lines = [f"{p['email']}{separator}{pw}" for p, pw in zip(PEOPLE, PASSWORDS, strict=True)]
    path = root / f"combo-{second}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mysql_dump(root: Path) -> Path:
    """A mysqldump-style file: CREATE TABLE then an extended INSERT without a column list."""
    tuples = ",".join(
        f"({i + 1},'{p['email']}','{p['name'].replace(' ', chr(92) + chr(39))}',"
        f"'{p['phone']}','{PASSWORDS[i]}',NOW())"
        for i, p in enumerate(PEOPLE)
    )
    text = f"""-- MySQL dump 10.13  Distrib 8.0.36
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
DROP TABLE IF EXISTS `customers`;
CREATE TABLE `customers` (
  `id` int NOT NULL AUTO_INCREMENT,
  `email` varchar(255) DEFAULT NULL,
  `name` varchar(100) DEFAULT 'n/a, none',
  `mobile` varchar(30),
  `password_hash` varchar(60),
  `created` datetime,
  PRIMARY KEY (`id`),
  KEY `idx_email` (`email`(20))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
LOCK TABLES `customers` WRITE;
INSERT INTO `customers` VALUES {tuples};
UNLOCK TABLES;
"""
    path = root / "dump-mysql.sql"
    path.write_text(text, encoding="utf-8")
    return path


def postgres_dump(root: Path) -> Path:
    """A pg_dump-style file: a function body, a COPY block and an INSERT with a list."""
    copy = "\n".join(f"{i + 1}\t{p['email']}\t{p['phone']}\t\\N" for i, p in enumerate(PEOPLE[:2]))
    last = PEOPLE[2]
    text = f"""--
-- PostgreSQL database dump
--
SET standard_conforming_strings = on;
CREATE FUNCTION public.touch() RETURNS trigger AS $$
BEGIN NEW.x := 'a;b'; RETURN NEW; END; $$ LANGUAGE plpgsql;
CREATE TABLE public.people (id integer NOT NULL, email text, phone text, note text);
COPY public.people (id, email, phone, note) FROM stdin;
{copy}
\\.

INSERT INTO public.people (id, email, phone, note) VALUES (3, '{last["email"]}', '{last["phone"]}'::text, 'it''s C:\\path');
"""
    path = root / "dump-postgres.sql"
    path.write_text(text, encoding="utf-8")
    return path


def parquet_file(root: Path, row_group_size: int = 2) -> Path:
    """Parquet with string, integer, float, struct and list columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "email": [p["email"] for p in PEOPLE],
            "mobile": [int("39" + p["phone"][4:].replace(" ", "")) for p in PEOPLE],
            "score": [1.5, 2.0, None],
            "customer": [{"name": p["name"], "password": "x"} for p in PEOPLE],
            "tags": [["a"], [], None],
        }
    )
    path = root / "people.parquet"
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def _col(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _sheet_rows() -> list[list[object]]:
    header: list[object] = ["Nome", "E-mail", "Cellulare"]
    return [header] + [
        [p["name"], p["email"], float(p["phone"][1:].replace(" ", ""))] for p in PEOPLE
    ]


def xlsx_file(root: Path, sheets: dict[str, list[list[object]]] | None = None) -> Path:
    """A minimal XLSX written by hand (inline strings), one part per sheet."""
    sheets = sheets if sheets is not None else {"Clienti": _sheet_rows()}
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    ct = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{ct}.worksheet+xml"/>'
        for i in range(1, len(sheets) + 1)
    )
    path = root / "people.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType="application'
            '/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            f'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
            f'"{ct}.sheet.main+xml"/>{overrides}</Types>',
        )
        zf.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" Type="{rel}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        entries = "".join(
            f'<sheet name="{escape(n)}" sheetId="{i}" r:id="rId{i}"/>'
            for i, n in enumerate(sheets, 1)
        )
        zf.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>{entries}</sheets></workbook>',
        )
        links = "".join(
            f'<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, len(sheets) + 1)
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{pkg}">{links}</Relationships>'
        )
        for i, rows in enumerate(sheets.values(), 1):
            xml_rows = []
            for r, row in enumerate(rows, 1):
                cells = []
                for c, value in enumerate(row):
                    ref = f"{_col(c)}{r}"
                    if isinstance(value, int | float):
                        cells.append(f'<c r="{ref}"><v>{value}</v></c>')
                    else:
                        cells.append(
                            f'<c r="{ref}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'
                        )
                xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
            zf.writestr(
                f"xl/worksheets/sheet{i}.xml",
                f'<worksheet xmlns="{main}"><sheetData>{"".join(xml_rows)}</sheetData></worksheet>',
            )
    return path


def ods_file(root: Path) -> Path:
    """A minimal OpenDocument spreadsheet written by hand."""
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    rows = []
    for row in _sheet_rows():
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append(
                    f'<table:table-cell office:value-type="float" office:value="{value}">'
                    f"<text:p>{value}</text:p></table:table-cell>"
                )
            else:
                cells.append(
                    f'<table:table-cell office:value-type="string"><text:p>{escape(str(value))}'
                    "</text:p></table:table-cell>"
                )
        rows.append(f"<table:table-row>{''.join(cells)}</table:table-row>")
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} '
        'office:version="1.2"><office:body><office:spreadsheet><table:table table:name="Clienti">'
        f"{''.join(rows)}</table:table></office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:'
        'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry '
        'manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
        'spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" '
        'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    path = root / "people.ods"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path


def xls_file(root: Path) -> Path:
    """A legacy XLS written with xlwt (a test-only dependency): a data sheet and an empty one."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Clienti")
    for r, row in enumerate(_sheet_rows()):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    book.add_sheet("Vuoto")
    path = root / "people.xls"
    book.save(str(path))
    return path


def eml_bytes(nested: int = 0) -> bytes:
    """One message with address headers, a text body and a CSV attachment."""
    mario, anna, luca = PEOPLE
    attachment = _b64(f"email\n{luca['email']}\n")
    body = f"""From: "{mario["name"]}" <{mario["email"]}>
To: "{anna["name"]}" <{anna["email"]}>
Subject: elenco
Date: Mon, 1 Jan 2024 10:00:00 +0000
Message-ID: <1@posta.it>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b0"

--b0
Content-Type: text/plain; charset=utf-8

Chiama {luca["name"]} al {luca["phone"]}.
--b0
Content-Type: text/csv; name="c.csv"
Content-Disposition: attachment; filename="c.csv"
Content-Transfer-Encoding: base64

{attachment}
--b0--
"""
    if nested:
        inner = "Content-Type: text/plain\n\nfine\n"
        for level in range(nested):
            inner = (
                f'Content-Type: multipart/mixed; boundary="n{level}"\n\n--n{level}\n'
                f"{inner}\n--n{level}--\n"
            )
        body = body.replace("--b0--", f"--b0\n{inner}\n--b0--")
    return body.encode("utf-8")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def eml_file(root: Path, nested: int = 0) -> Path:
    """A single .eml message; ``nested`` wraps a part in that many multiparts."""
    path = root / "message.eml"
    path.write_bytes(eml_bytes(nested))
    return path


def mbox_file(root: Path, messages: int = 3) -> Path:
    """An mbox of ``messages`` copies of :func:`eml_bytes`, separated by From_ lines."""
    path = root / "mail.mbox"
    with path.open("wb") as fp:
        for _ in range(messages):
            fp.write(b"From sender@posta.it Mon Jan  1 10:00:00 2024\n")
            fp.write(eml_bytes() + b"\n")
    return path


# --- archives --------------------------------------------------------------------------


def zip_file(root: Path, members: dict[str, bytes], name: str = "dump.zip") -> Path:
    """A deflated zip holding ``members``."""
    path = root / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def aes_zip_file(root: Path, members: dict[str, bytes], password: bytes) -> Path:
    """An AES-256 encrypted zip (WinZip format)."""
    import pyzipper

    path = root / "secret.zip"
    with pyzipper.AESZipFile(
        path, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(password)
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def tar_file(root: Path, members: dict[str, bytes], name: str = "dump.tar") -> Path:
    """An uncompressed tar holding ``members`` (names used as given, even hostile ones)."""
    path = root / name
    with tarfile.open(path, "w") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def seven_zip_file(root: Path, members: dict[str, bytes], password: str | None = None) -> Path:
    """A 7z archive holding ``members``."""
    import py7zr

    path = root / "dump.7z"
    with py7zr.SevenZipFile(path, "w", password=password) as sz:
        for member, data in members.items():
            sz.writestr(data, member)
    return path


def compressed(path: Path, kind: str) -> Path:
    """``path`` compressed as ``gz``, ``bz2`` or ``xz`` next to it."""
    openers: dict[str, Callable[..., Any]] = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
    opener = openers[kind]
    out = path.with_name(f"{path.name}.{kind}")
    with opener(out, "wb") as fp:
        fp.write(path.read_bytes())
    return out


# --- hostile files ---------------------------------------------------------------------


def nested_zip_bomb(root: Path, levels: int = 5, fanout: int = 16, inner_mb: int = 8) -> Path:
    """A 42.zip-style bomb: ``fanout`` copies per level of ``levels`` nested zips.

    Small on disk (kilobytes) but declaring ``fanout ** levels * inner_mb`` megabytes.
    """
    data = _zip_bytes({"0.csv": b"\0" * (inner_mb << 20)})
    for level in range(1, levels):
        data = _zip_bytes({f"{level}-{i}.zip": data for i in range(fanout)})
    path = root / "42.zip"
    path.write_bytes(_zip_bytes({f"top-{i}.zip": data for i in range(fanout)}))
    return path


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def flat_zip_bomb(root: Path, megabytes: int = 64) -> Path:
    """One member of zeros that expands about a thousand times."""
    path = root / "flat-bomb.zip"
    path.write_bytes(_zip_bytes({"zeros.csv": b"\0" * (megabytes << 20)}))
    return path


def gzip_bomb(root: Path, megabytes: int = 128) -> Path:
    """A gzip stream of zeros, written in chunks; expands about a thousand times."""
    path = root / "bomb.csv.gz"
    chunk = b"\0" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as fp:
        for _ in range(megabytes):
            fp.write(chunk)
    return path


def truncated_gzip(root: Path) -> Path:
    """A gzip of a CSV cut in the middle of its compressed data."""
    text = "email,phone\n" + "".join(f"u{i}@posta.it,3471234{i:03d}\n" for i in range(2000))
    data = gzip.compress(text.encode())
    path = root / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def traversal_zip(root: Path) -> Path:
    """A zip whose member names climb out of any folder they are extracted to."""
    return zip_file(
        root,
        {
            "../../etc/passwd": b"email\nmario.rossi@posta.it\n",
            "/abs/evil.csv": b"email\nanna.bianchi@esempio.it\n",
            "ok.csv": b"email\nluca.verdi@esempio.com\n",
        },
        name="traversal.zip",
    )


def traversal_tar(root: Path) -> Path:
    """A tar with a ``../`` member name and a symlink pointing outside."""
    path = tar_file(root, {"../../etc/passwd": b"email\nmario.rossi@posta.it\n"}, "traversal.tar")
    with tarfile.open(path, "a") as tf:
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tf.addfile(link)
    return path


def sheet_dimension_bomb(root: Path) -> Path:
    """A one-kilobyte XLSX whose two cells span the whole 16,384 x 1,048,576 grid."""
    path = xlsx_file(root, {"S": [["x"]]})
    parts: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            parts[name] = zf.read(name)
    parts["xl/worksheets/sheet1.xml"] = (
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1"><v>1</v></c></row>'
        b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path


def long_line(root: Path, prefix: bytes, megabytes: int = 200, name: str = "long.txt") -> Path:
    """``prefix`` then one line of ``megabytes`` written in 1 MiB chunks (no newline)."""
    path = root / name
    chunk = b"a" * (1 << 20)
    with path.open("wb") as fp:
        fp.write(prefix)
        for _ in range(megabytes):
            fp.write(chunk)
        fp.write(b"\n")
    return path


def invalid_utf8_csv(root: Path) -> Path:
    """A CSV valid for its first 70 KB, then with bytes that are not UTF-8."""
    rows = "".join(f"u{i}@posta.it,città\n" for i in range(5000))
    path = root / "bad-utf8.csv"
    path.write_bytes(b"email,city\n" + rows.encode() + b"x@y.it,\xff\xfe\xc3\n")
    return path


def nul_bytes(root: Path) -> Path:
    """A text file with NUL bytes scattered through it."""
    path = root / "nul.csv"
    path.write_bytes(b"email,phone\n" + b"a@x.it,\x00\x00\x00123\n" * 100)
    return path


def deep_json(root: Path, depth: int = 100, lines: bool = False) -> Path:
    """A record nested ``depth`` objects deep, as JSON or as one NDJSON line."""
    record = "{" + '"a":{' * depth + '"email":"x@y.it"' + "}" * depth + "}"
    path = root / ("deep.ndjson" if lines else "deep.json")
    path.write_text(f'{record}\n{{"b": 1}}\n' if lines else f"[{record}]")
    return path


# --- measuring -------------------------------------------------------------------------


@dataclass
class Memory:
    """Peak Python allocations and growth of the process's peak RSS, in bytes."""

    python_peak: int = 0
    rss_growth: int = 0


@contextlib.contextmanager
def bounded_memory() -> Iterator[Memory]:
    """Measure memory while the block runs (tracemalloc + ``ru_maxrss``)."""
    memory = Memory()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        yield memory
    finally:
        _, memory.python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        memory.rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def read_all(path: Path, limits: object | None = None, password: str | None = None) -> int:
    """Read every source in ``path`` fully (layout, batches and rows); return rows read.

    Raises only :class:`~canarino.errors.InvalidInput` for a file that cannot be read.
    """
    from canarino.sources import Limits, open_sources

    rows = 0
    with open_sources(path, limits or Limits(), password=password) as dump:  # type: ignore[arg-type]
        for source in dump:
            layout = source.layout()
            for batch in source.batches():
                assert batch.data.num_columns == layout.columns
                assert all(str(t) == "string" for t in batch.data.schema.types)
                rows += batch.data.num_rows
            for _number, cells in source.rows():
                assert all(isinstance(c, str) for c in cells)
    return rows


def parses_or_refuses(path: Path, limits: object | None = None) -> None:
    """The fuzz property: reading ``path`` either works or raises ``InvalidInput``."""
    from canarino.errors import InvalidInput

    with contextlib.suppress(InvalidInput):
        read_all(path, limits)
