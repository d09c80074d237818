"""Archives and compressed files: zip (AES too), tar, 7z, gzip, bzip2 and xz, nested.

An archive is not a source: it holds files that are. Each format here lists its members;
:class:`~canarino.sources.dump.Dump` walks a file and the archives inside it and yields
one :class:`~canarino.sources.base.Source` per member.

Members are copied, one at a time, into a private temporary folder under generated
names (``m1``, ``m2``…) so that formats needing random access (Parquet, XLSX, nested
zips) can read them; a member's own name is only ever printed, never used as a path,
so ``../../etc/passwd`` cannot escape. Each copy is deleted once its source has been
read. While copying, the limits are enforced on the bytes actually produced, not on
what the archive declares: total unpacked size, expansion ratio per member, number of
members and depth of nesting. Breaking the total size, member count or depth refuses
the whole dump (that is what archive bombs do); a member that is damaged, encrypted
without a password, or too compressible is recorded in :attr:`Dump.problems` and the
rest is read.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import tarfile
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

import py7zr
import pyzipper

from ..errors import InvalidInput
from ..registry import Registry
from .base import Limits, printable_name
from .spreadsheet import OdsSource, XlsxSource

# Below this many bytes a member may expand freely: tiny files compress absurdly well.
RATIO_FLOOR = 1 << 20


@dataclass(frozen=True)
class Problem:
    """A member of a dump that was not read, and why (one line, no data quoted)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class Member:
    """One file inside an archive: how to open it and what the archive says of it."""

    name: str
    open: Callable[[], IO[bytes]]
    size: int | None = None
    packed: int | None = None
    path: Path | None = None


class MemberError(Exception):
    """A member that cannot be read; the message is the reason, free of data."""


class Archive(ABC):
    """A container format. Subclasses set ``NAME`` and implement ``sniff`` and ``members``."""

    NAME: ClassVar[str]
    SUFFIXES: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, path: Path, name: str, limits: Limits, password: bytes | None, workdir: Path
    ) -> None:
        self.path = path
        self.name = name
        self.limits = limits
        self.password = password
        self.workdir = workdir
        self.remaining: Callable[[], int] = lambda: limits.max_unpacked_bytes

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes) -> bool:
        """Whether the first bytes of a file look like this container."""

    @abstractmethod
    def members(self) -> Iterator[Member | Problem]:
        """Yield each regular file inside, or a :class:`Problem` for one that is not read."""

    def member_name(self, inner: str) -> str:
        """How messages name a member: ``archive!member``."""
        return f"{self.name}!{printable_name(inner)}"


ARCHIVES: Registry[type[Archive]] = Registry("archive format")


def read_error(exc: BaseException) -> str:
    """The reason, free of data, that a member's bytes could not be read."""
    if isinstance(exc, EOFError):
        return "the compressed data is cut short (truncated file)"
    if isinstance(exc, RuntimeError) and "password" in str(exc).lower():
        return "the password is wrong or missing"
    if isinstance(exc, NotImplementedError):
        return "uses a compression method canarino cannot read"
    if isinstance(exc, tarfile.TarError):
        return "the tar structure is damaged"
    return "the compressed data is damaged"


READ_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    pyzipper.BadZipFile,
    tarfile.TarError,
    py7zr.exceptions.ArchiveError,
)


@ARCHIVES.register("zip")
class ZipArchive(Archive):
    """Zip archives, including AES (WinZip) and ZipCrypto encrypted ones."""

    NAME = "zip"
    SUFFIXES = (".zip",)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Zip magic, excluding zip-based spreadsheets (they are sources)."""
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return False
        return not (XlsxSource.sniff(head) or OdsSource.sniff(head))

    def members(self) -> Iterator[Member | Problem]:
        """Each file entry; encrypted ones need the password."""
        entries = _zip_entries(self.path)
        if entries > self.limits.max_members:
            raise InvalidInput(
                f"{self.name}: holds {entries:,} files, more than the limit of "
                f"{self.limits.max_members:,}"
            )
        try:
            zf = pyzipper.AESZipFile(self.path)
        except READ_ERRORS:
            yield Problem(self.name, "the zip directory is damaged or missing")
            return
        with zf:
            if self.password:
                zf.setpassword(self.password)
            for info in zf.infolist():
                if info.is_dir():
                    continue
                name = self.member_name(info.filename)
                if info.flag_bits & 0x1 and not self.password:
                    yield Problem(name, "is encrypted; give the archive password")
                    continue
                yield Member(
                    name,
                    lambda info=info: zf.open(info),  # type: ignore[misc]
                    info.file_size,
                    info.compress_size,
                )


def _zip_entries(path: Path) -> int:
    """The entry count a zip's end record declares, read before its directory is loaded."""
    try:
        with path.open("rb") as fp:
            # The directory is loaded whole by zipfile; its size is checked first.
            end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
    except (OSError, ValueError, struct.error):
        return 0
    return int(end[zipfile._ECD_ENTRIES_TOTAL]) if end else 0  # type: ignore[attr-defined]


@ARCHIVES.register("tar")
class TarArchive(Archive):
    """Uncompressed tar archives (compressed ones are gzip/bzip2/xz around a tar)."""

    NAME = "tar"
    SUFFIXES = (".tar",)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """The ``ustar`` magic of POSIX and GNU tar."""
        return head[257:262] == b"ustar"

    def members(self) -> Iterator[Member | Problem]:
        """Each regular file, read as the tar streams; links and devices are skipped."""
        with self.path.open("rb") as fp:
            try:
                tf = tarfile.open(fileobj=fp, mode="r|")  # noqa: SIM115 - closed with fp
            except READ_ERRORS:
                yield Problem(self.name, "the tar structure is damaged")
                return
            count = 0
            try:
                for info in tf:
                    count += 1
                    if info.isdir():
                        continue
                    name = self.member_name(info.name)
                    if not info.isfile():
                        yield Problem(name, "is a link or device, not a file; skipped")
                        continue
                    stream = tf.extractfile(info)
                    if stream is None:
                        continue
                    yield Member(name, lambda stream=stream: stream, info.size, None)  # type: ignore[misc]
            except READ_ERRORS as exc:
                yield Problem(self.name, f"after {count:,} entries: {read_error(exc)}")


class _Budget(py7zr.io.Py7zIO):
    """A py7zr output that writes to a temp file and stops when the total passes a limit."""

    def __init__(self, path: Path, total: list[int], limit: int) -> None:
        self.path = path
        self._fp = path.open("wb")
        self._total = total
        self._limit = limit
        self._size = 0

    def write(self, s: bytes | bytearray) -> int:
        self._size += len(s)
        self._total[0] += len(s)
        if self._total[0] > self._limit:
            raise _TooBig
        return self._fp.write(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        self._fp.flush()

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._fp.close()


class _TooBig(Exception):
    """Unpacking passed the total size limit."""


@ARCHIVES.register("7z")
class SevenZipArchive(Archive):
    """7-Zip archives (py7zr), including AES-encrypted ones."""

    NAME = "7z"
    SUFFIXES = (".7z",)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """The 7z signature."""
        return head.startswith(b"7z\xbc\xaf\x27\x1c")

    def members(self) -> Iterator[Member | Problem]:
        """Every file, unpacked together (solid 7z blocks cannot be read one by one)."""
        password = self.password.decode("utf-8", "replace") if self.password else None
        try:
            with py7zr.SevenZipFile(self.path, password=password) as sz:
                if sz.needs_password() and not password:
                    yield Problem(self.name, "is encrypted; give the archive password")
                    return
                infos = [f for f in sz.list() if not f.is_directory]
        except READ_ERRORS as exc:
            yield Problem(self.name, read_error(exc))
            return
        if len(infos) > self.limits.max_members:
            raise InvalidInput(
                f"{self.name}: holds {len(infos):,} files, more than the limit of "
                f"{self.limits.max_members:,}"
            )
        declared = sum(f.uncompressed or 0 for f in infos)
        if declared > self.limits.max_unpacked_bytes:
            raise InvalidInput(
                f"{self.name}: declares {declared:,} unpacked bytes, more than the limit of "
                f"{self.limits.max_unpacked_bytes:,} (an archive bomb?)"
            )
        ratio = declared / max(self.path.stat().st_size, 1)
        if declared > RATIO_FLOOR and ratio > self.limits.max_ratio:
            yield Problem(
                self.name,
                f"expands {ratio:,.0f} times, more than the limit of {self.limits.max_ratio:,} "
                "(an archive bomb?); not read",
            )
            return
        safe: list[str] = []
        unsafe: list[str] = []
        for f in infos:
            (unsafe if _unsafe(f.filename) else safe).append(f.filename)
        for filename in unsafe:
            yield Problem(
                self.member_name(filename), "has an unsafe path; the 7z reader refuses it"
            )
        outputs: dict[str, _Budget] = {}
        limit = self.remaining()
        total = [0]
        workdir = self.workdir

        class Factory(py7zr.io.WriterFactory):
            def create(self, filename: str) -> py7zr.io.Py7zIO:
                out = _Budget(workdir / f"z{len(outputs)}", total, limit)
                outputs[filename] = out
                return out

        try:
            with py7zr.SevenZipFile(self.path, password=password) as sz:
                sz.extract(targets=safe, factory=Factory())
        except _TooBig:
            self._discard(outputs)
            raise InvalidInput(
                f"{self.name}: unpacks past the limit of {self.limits.max_unpacked_bytes:,} "
                "bytes for the whole dump (an archive bomb?)",
                hint="raise max_unpacked_bytes if the dump is genuine",
            ) from None
        except READ_ERRORS as exc:
            self._discard(outputs)
            yield Problem(self.name, read_error(exc))
            return
        for filename, out in outputs.items():
            out.close()
            yield Member(
                self.member_name(filename),
                lambda out=out: out.path.open("rb"),  # type: ignore[misc]
                out.size(),
                None,
                out.path,
            )

    @staticmethod
    def _discard(outputs: dict[str, _Budget]) -> None:
        for out in outputs.values():
            out.close()
            out.path.unlink(missing_ok=True)


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


class _Compressed(Archive):
    """A single compressed stream around one file."""

    @abstractmethod
    def stream(self) -> IO[bytes]:
        """The decompressed bytes."""

    def members(self) -> Iterator[Member | Problem]:
        """The one file inside, named after the archive without its suffix."""
        inner = self.name.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
        for suffix in self.SUFFIXES:
            if inner.lower().endswith(suffix):
                inner = inner[: -len(suffix)]
                break
        yield Member(
            f"{self.name}!{inner or 'data'}",
            self.stream,
            None,
            self.path.stat().st_size,
        )


@ARCHIVES.register("gzip")
class GzipArchive(_Compressed):
    """gzip (``.gz``, ``.tgz``), including concatenated members."""

    NAME = "gzip"
    SUFFIXES = (".gz", ".tgz", ".gzip")

    def stream(self) -> IO[bytes]:
        """The decompressed bytes."""
        return gzip.open(self.path, "rb")  # type: ignore[return-value]

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """The gzip magic with the deflate method."""
        return head.startswith(b"\x1f\x8b\x08")


@ARCHIVES.register("bzip2")
class Bz2Archive(_Compressed):
    """bzip2 (``.bz2``)."""

    NAME = "bzip2"
    SUFFIXES = (".bz2", ".tbz2", ".tbz")

    def stream(self) -> IO[bytes]:
        """The decompressed bytes."""
        return bz2.open(self.path, "rb")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """``BZh`` with a block size and the first block's magic."""
        return head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY"


@ARCHIVES.register("xz")
class XzArchive(_Compressed):
    """xz and lzma (``.xz``, ``.txz``)."""

    NAME = "xz"
    SUFFIXES = (".xz", ".txz", ".lzma")

    def stream(self) -> IO[bytes]:
        """The decompressed bytes."""
        return lzma.open(self.path, "rb")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """The xz magic."""
        return head.startswith(b"\xfd7zXZ\x00")


def sniff_archive(head: bytes) -> type[Archive] | None:
    """The container format of a file head, if it is one."""
    for cls in ARCHIVES:
        if cls.sniff(head):
            return cls
    return None
