"""The pseudonym index a trace matches against, kept in a file beside the database.

With it go the country and region of each customer, so a trace sums up its scope
without joining hundreds of thousands of rows back to the customer table.

Reading two million pseudonyms row by row costs seconds; loading them already sorted
from one file costs milliseconds. The file is a cache: every trace checks it against
the table (how many rows up to the id it covers, and the digest of that last row) and
reads only the pseudonyms added since. A file that is missing, damaged, made under
another key or out of step with the table is rebuilt from the table, never trusted.

It holds what the tables hold in clear (keyed digests, owner ids, countries and
regions; no identifier in clear) and is written owner-only, like the workspace secret.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .normalize import Pseudonymizer
from .scope import PseudonymIndex

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
INDEX_FILE = "pseudonyms.npz"
FORMAT = 2
# Below this many pseudonyms the table is read by one process: forking costs more.
SPLIT_INDEX_MIN = 200_000


@dataclass(frozen=True)
class Coverage:
    """Which rows of the pseudonym table an index file holds: ids up to ``upto``."""

    upto: int
    count: int
    last: bytes


@dataclass(frozen=True)
class Places:
    """Country and region of each customer up to id ``upto``, as small codes."""

    ids: npt.NDArray[np.int64]
    codes: npt.NDArray[np.int32]
    names: list[tuple[str | None, str | None]]
    upto: int

    @classmethod
    def empty(cls) -> Places:
        """No customer yet."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32), [], 0)

    def of(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        """The place code of each customer id, -1 for ids not known here."""
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, max(self.ids.size - 1, 0))
        out = np.full(ids.size, -1, dtype=np.int32)
        if self.ids.size:
            known = self.ids[pos] == ids
            out[known] = self.codes[pos[known]]
        return out

    def with_added(self, rows: list[tuple[int, str | None, str | None]]) -> Places:
        """These places plus ``(id, country, region)`` rows of newer customers."""
        if not rows:
            return self
        names = list(self.names)
        known = {name: code for code, name in enumerate(names)}
        codes = []
        for _, country, region in rows:
            code = known.setdefault((country, region), len(names))
            if code == len(names):
                names.append((country, region))
            codes.append(code)
        ids = np.concatenate([self.ids, np.array([r[0] for r in rows], dtype=np.int64)])
        all_codes = np.concatenate([self.codes, np.array(codes, dtype=np.int32)])
        order = np.argsort(ids, kind="stable")
        return Places(ids[order], all_codes[order], names, max(self.upto, int(ids.max())))


@dataclass(frozen=True)
class Lookup:
    """What a trace looks dump values up in: pseudonyms, and customers' places."""

    pseudonyms: PseudonymIndex
    places: Places


def index_path(folder: Path) -> Path:
    """Where the index file of the workspace in ``folder`` lives."""
    return folder / CACHE_DIR / INDEX_FILE


def load_lookup(
    s: Session, ps: Pseudonymizer, folder: Path | None, *, split: bool = False
) -> Lookup:
    """Every pseudonym in the workspace, ready for lookups, and the customers' places.

    With ``folder`` the index file there is used when it still matches the table and
    brought up to date (and rewritten) when rows were added; without it, or when the
    file cannot be used, the tables are read in full (``split``: by two processes).
    """
    check = _key_check(ps)
    cached = _read_file(index_path(folder), check) if folder is not None else None
    if cached is not None:
        lookup, coverage = cached
        state = _table_state(s, coverage)
        if state is not None:
            top, added = state
            if added:
                digests, owners = _read_pseudonyms(s.connection(), coverage.upto + 1, top)
                lookup = Lookup(
                    lookup.pseudonyms.with_added(digests, owners),
                    lookup.places.with_added(_read_places(s, lookup.places.upto)),
                )
                covered = _coverage(s, top, len(lookup.pseudonyms))
                _write_file(index_path(folder), lookup, covered, check)
            return lookup
    index, coverage = _read_table(s, split=split)
    lookup = Lookup(index, Places.empty().with_added(_read_places(s, 0)))
    if folder is not None and coverage is not None:
        _write_file(index_path(folder), lookup, coverage, check)
    return lookup


def load_index(
    s: Session, ps: Pseudonymizer, folder: Path | None, *, split: bool = False
) -> PseudonymIndex:
    """The pseudonyms of :func:`load_lookup` alone."""
    return load_lookup(s, ps, folder, split=split).pseudonyms


def refresh_index(ws: Workspace) -> int:
    """Bring the index file up to date with the table; the number of pseudonyms.

    Imports and shares call this once they have committed, so the next trace finds the
    file current and spends nothing on it.
    """
    with ws.db.session() as s:
        return len(load_index(s, ws.vault.pseudonyms, ws.settings.workspace, split=True))


def _read_places(s: Session, after: int) -> list[tuple[int, str | None, str | None]]:
    """``(id, country, region)`` of the customers with ids above ``after``."""
    cursor = s.connection().connection.cursor()
    try:
        cursor.execute(f"SELECT id, country, region FROM customers WHERE id > {int(after)}")
        return [(int(i), c, r) for i, c, r in cursor.fetchall()]
    finally:
        cursor.close()


def _key_check(ps: Pseudonymizer) -> str:
    # A pseudonym of a fixed marker: tells whether a file was made under this key
    # without storing anything about the key itself.
    return ps.digest("index", "canarino")[:8].hex()


def _table_state(s: Session, coverage: Coverage) -> tuple[int, int] | None:
    """``(highest id, rows added)`` when the file still describes the table, else None."""
    top, total = s.execute(select(func.max(m.Pseudonym.id), func.count())).one()
    if top is None or top < coverage.upto:
        return None
    added = 0
    if top > coverage.upto:
        added = s.scalar(
            select(func.count()).select_from(m.Pseudonym).where(m.Pseudonym.id > coverage.upto)
        )
    # Rows are only ever added with growing ids; a count that does not add up means
    # rows were removed or rewritten, and the file no longer describes the table.
    if total - added != coverage.count:
        return None
    last = s.scalar(select(m.Pseudonym.digest).where(m.Pseudonym.id == coverage.upto))
    if last is None or bytes(last) != coverage.last:
        return None
    return top, added


def _coverage(s: Session, upto: int, count: int) -> Coverage | None:
    last = s.scalar(select(m.Pseudonym.digest).where(m.Pseudonym.id == upto))
    return None if last is None else Coverage(upto, count, bytes(last))


def _read_table(s: Session, *, split: bool) -> tuple[PseudonymIndex, Coverage | None]:
    """The whole table as an index, and what it covers."""
    lo, hi = s.execute(select(func.min(m.Pseudonym.id), func.max(m.Pseudonym.id))).one()
    if lo is None:
        return PseudonymIndex([], []), None
    if not split or hi - lo < SPLIT_INDEX_MIN or "fork" not in mp.get_all_start_methods():
        digests, owners = _read_pseudonyms(s.connection(), lo, hi)
    else:
        digests, owners = _read_split(s, lo, hi)
    index = PseudonymIndex.from_raw(digests, owners)
    return index, _coverage(s, hi, len(index))


def _read_split(s: Session, lo: int, hi: int) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Read ids ``lo..hi``: a forked process the upper half, this one the lower half."""
    mid = (lo + hi) // 2
    engine = s.get_bind()
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    # Forked, the child has the engine's address without it crossing a pipe; it sends
    # back only pseudonyms.
    child = ctx.Process(target=_read_half, args=(engine, mid + 1, hi, sender), daemon=True)
    child.start()
    sender.close()
    try:
        low_digests, low_owners = _read_pseudonyms(s.connection(), lo, mid)
        try:
            high_digests = receiver.recv_bytes()
            high_owners = np.frombuffer(receiver.recv_bytes(), dtype=np.int64)
        except EOFError:
            raise RuntimeError("the process reading the pseudonym index failed") from None
    finally:
        receiver.close()
        child.join()
    return low_digests + high_digests, np.concatenate([low_owners, high_owners])


def _read_pseudonyms(conn: Any, lo: int, hi: int) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Digests (concatenated) and owners of the pseudonyms with ``lo <= id <= hi``."""
    # The DB-API cursor skips SQLAlchemy's row objects: several times faster for millions.
    cursor = conn.connection.cursor()
    digests: list[bytes] = []
    owners: list[int] = []
    try:
        cursor.execute(
            "SELECT digest, COALESCE(customer_id, -canary_id) FROM pseudonyms "
            f"WHERE id >= {int(lo)} AND id <= {int(hi)}"
        )
        while chunk := cursor.fetchmany(200_000):
            for d, o in chunk:
                digests.append(d if isinstance(d, bytes) else bytes(d))
                owners.append(o)
    finally:
        cursor.close()
    return b"".join(digests), np.asarray(owners, dtype=np.int64)


def _read_half(engine: Any, lo: int, hi: int, sender: Any) -> None:
    """In a forked child: read pseudonyms ``lo..hi`` and send them to the parent.

    The child opens a new engine of its own and never touches the parent's connections
    (closing an inherited SQLite connection could disturb the parent's).
    """
    own = store.make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with own.connect() as conn:
            digests, owners = _read_pseudonyms(conn, lo, hi)
        sender.send_bytes(digests)
        sender.send_bytes(owners.tobytes())
    finally:
        own.dispose()
        sender.close()


def _read_file(path: Path, check: str) -> tuple[Lookup, Coverage] | None:
    """The lookup stored at ``path`` and what it covers, or None when it cannot be used."""
    try:
        with path.open("rb") as fp, np.load(fp, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT or meta.get("key") != check:
                return None
            coverage = Coverage(int(meta["upto"]), int(meta["count"]), bytes.fromhex(meta["last"]))
            full, owners = data["digests"], data["owners"]
            places = Places(
                data["place_ids"],
                data["place_codes"],
                [(c, r) for c, r in meta["places"]],
                int(meta["places_upto"]),
            )
        if full.dtype != np.uint8 or owners.dtype != np.int64 or owners.size != coverage.count:
            return None
        if places.ids.dtype != np.int64 or places.codes.dtype != np.int32:
            return None
        if places.ids.size != places.codes.size or (
            places.codes.size and not 0 <= int(places.codes.max()) < len(places.names)
        ):
            return None
        return Lookup(PseudonymIndex.from_sorted(full, owners), places), coverage
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        # A damaged file is rebuilt from the table; worth a line, never an error.
        log.warning("the pseudonym index file %s cannot be used (%s); rebuilding it", path, exc)
        return None


def _write_file(path: Path, lookup: Lookup, coverage: Coverage | None, check: str) -> None:
    """Store ``lookup`` at ``path`` atomically; a folder that refuses is not an error."""
    if coverage is None:
        return
    meta = {
        "format": FORMAT,
        "key": check,
        "upto": coverage.upto,
        "count": coverage.count,
        "last": coverage.last.hex(),
        "places": lookup.places.names,
        "places_upto": lookup.places.upto,
    }
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pseudonyms-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fp:
                np.savez(
                    fp,
                    meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                    digests=lookup.pseudonyms.digests,
                    owners=lookup.pseudonyms.owners,
                    place_ids=lookup.places.ids,
                    place_codes=lookup.places.codes,
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("cannot store the pseudonym index in %s (%s); traces read the table", path, exc)
