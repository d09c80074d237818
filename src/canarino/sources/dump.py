"""A dump as sources: one file, a folder, or archives expanded member by member.

See :mod:`canarino.sources.archive` for the container formats and how the limits on
unpacking are enforced.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from ..errors import InvalidInput
from .archive import (
    RATIO_FLOOR,
    READ_ERRORS,
    Member,
    MemberError,
    Problem,
    read_error,
    sniff_archive,
)
from .base import Limits, Source, by_priority, printable_name

_COPY_CHUNK = 1 << 20


class Dump:
    """Every readable file in a dump: the file itself, or the members of its archives.

    >>> with Dump(path, Limits(), password="infected") as dump:  # doctest: +SKIP
    ...     for source in dump:
    ...         read(source)  # before asking for the next one: its copy is then deleted
    ...     dump.problems
    """

    def __init__(
        self,
        path: Path,
        limits: Limits,
        *,
        password: str | bytes | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.path = path
        self.limits = limits
        self.password = password.encode("utf-8") if isinstance(password, str) else password
        self.problems: list[Problem] = []
        self.unpacked = 0
        self.members = 0
        self._workdir_parent = workdir
        self._tmp: Path | None = None
        self._counter = 0

    def __enter__(self) -> Dump:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Delete the temporary copies of members."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def workdir(self) -> Path:
        """The private folder members are copied into (created on first use)."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="canarino-dump-", dir=self._workdir_parent))
        return self._tmp

    def __iter__(self) -> Iterator[Source]:
        yielded = 0
        try:
            for source in self._expand(self.path, str(self.path), 0):
                yielded += 1
                yield source
        finally:
            self.close()
        if not yielded:
            if self.problems:
                more = (
                    f" (and {len(self.problems) - 1:,} more problems)"
                    if len(self.problems) > 1
                    else ""
                )
                raise InvalidInput(f"{self.problems[0]}{more}")
            raise InvalidInput(f"{self.path}: the archive holds no files")

    def _expand(self, path: Path, name: str, depth: int) -> Iterator[Source]:
        if depth == 0 and path.is_dir():
            yield from self._folder(path)
            return
        head = _head(path, name)
        archive_cls = sniff_archive(head) if head else None
        if archive_cls is None:
            yield from self._sources(path, name, head, depth)
            return
        if depth >= self.limits.max_archive_depth:
            raise InvalidInput(
                f"{name}: archives nested more than {self.limits.max_archive_depth} deep "
                "(an archive bomb?)",
                hint="raise max_archive_depth if the dump is genuine",
            )
        archive = archive_cls(path, name, self.limits, self.password, self.workdir)
        archive.remaining = lambda: self.limits.max_unpacked_bytes - self.unpacked
        for item in archive.members():
            if isinstance(item, Problem):
                self.problems.append(item)
                continue
            self.members += 1
            if self.members > self.limits.max_members:
                raise InvalidInput(
                    f"{self.path}: holds more than {self.limits.max_members:,} files "
                    "counting nested archives (an archive bomb?)",
                    hint="raise max_members if the dump is genuine",
                )
            copy = item.path
            try:
                if copy is None:
                    copy = self._copy(item)
                self.unpacked += copy.stat().st_size
                yield from self._expand(copy, item.name, depth + 1)
            except MemberError as exc:
                self.problems.append(Problem(item.name, str(exc)))
            finally:
                if copy is not None:
                    copy.unlink(missing_ok=True)

    def _folder(self, folder: Path) -> Iterator[Source]:
        """Every regular file under ``folder``, in name order; links are not followed."""
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        for file in files:
            self.members += 1
            if self.members > self.limits.max_members:
                raise InvalidInput(
                    f"{folder}: holds more than {self.limits.max_members:,} files",
                    hint="raise max_members if the dump is genuine",
                )
            name = f"{folder}/{printable_name(str(file.relative_to(folder)))}"
            yield from self._expand(file, name, 1)

    def _sources(self, path: Path, name: str, head: bytes, depth: int) -> Iterator[Source]:
        try:
            if not head:
                raise InvalidInput(f"{name}: the file is empty")
            for cls in by_priority():
                if cls.sniff(head):
                    parts = cls(path, self.limits, name=name).split()
                    break
            else:
                raise InvalidInput(f"{name}: not a format canarino reads")
        except InvalidInput as exc:
            if depth == 0:
                raise
            message = str(exc)
            self.problems.append(Problem(name, message.removeprefix(f"{name}: ")))
            return
        yield from parts

    def _copy(self, member: Member) -> Path:
        self._counter += 1
        target = self.workdir / f"m{self._counter}"
        remaining = self.limits.max_unpacked_bytes - self.unpacked
        allowed = remaining
        if member.packed is not None:
            allowed = min(allowed, max(member.packed * self.limits.max_ratio, RATIO_FLOOR))
        if member.size is not None and member.size > remaining:
            raise InvalidInput(
                f"{member.name}: unpacks to {member.size:,} bytes, past the limit of "
                f"{self.limits.max_unpacked_bytes:,} for the whole dump (an archive bomb?)",
                hint="raise max_unpacked_bytes if the dump is genuine",
            )
        if member.size is not None and member.size > allowed:
            raise MemberError(self._ratio_reason(member, member.size))
        written = 0
        try:
            with member.open() as src, target.open("wb") as out:
                while chunk := src.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > remaining:
                        raise InvalidInput(
                            f"{member.name}: the dump unpacks to more than "
                            f"{self.limits.max_unpacked_bytes:,} bytes (an archive bomb?)",
                            hint="raise max_unpacked_bytes if the dump is genuine",
                        )
                    if written > allowed:
                        raise MemberError(self._ratio_reason(member, written))
                    out.write(chunk)
        except READ_ERRORS as exc:
            target.unlink(missing_ok=True)
            raise MemberError(read_error(exc)) from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def _ratio_reason(self, member: Member, size: int) -> str:
        ratio = size / max(member.packed or 1, 1)
        return (
            f"expands more than {ratio:,.0f} times, past the limit of "
            f"{self.limits.max_ratio:,} (an archive bomb?); not read"
        )


def _head(path: Path, name: str) -> bytes:
    try:
        with path.open("rb") as fp:
            return fp.read(64 * 1024)
    except FileNotFoundError:
        raise InvalidInput(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{name}: is a folder; give a file") from None
    except OSError as exc:
        raise InvalidInput(f"{name}: cannot be read ({exc.strerror})") from None


def spool(stream: IO[bytes], limits: Limits, directory: Path | None = None) -> Path:
    """Copy a stream (standard input) to a new private file, refusing more than the limit.

    The caller deletes the file. Formats need to read a file twice or seek in it, which
    a pipe does not allow.
    """
    handle, name = tempfile.mkstemp(prefix="canarino-stdin-", dir=directory)
    path = Path(name)
    written = 0
    try:
        with open(handle, "wb") as out:
            while chunk := stream.read(_COPY_CHUNK):
                written += len(chunk)
                if written > limits.max_unpacked_bytes:
                    raise InvalidInput(
                        f"standard input: more than {limits.max_unpacked_bytes:,} bytes",
                        hint="raise max_unpacked_bytes, or give a file",
                    )
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def open_sources(path: Path, limits: Limits, *, password: str | bytes | None = None) -> Dump:
    """The sources in ``path`` (a file or a folder), expanding archives; a context manager.

    ``password`` opens encrypted zip and 7z members. See :class:`Dump`.
    """
    return Dump(path, limits, password=password)
