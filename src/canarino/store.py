"""The database: engine, migrations, sessions, and every query as a named function."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import models as m
from .errors import NotFound, WorkspaceError

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
# Read models kept per database; past this many entries the oldest are forgotten.
CACHE_ENTRIES = 512


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; SQLite gets foreign keys and WAL."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Reads of a large workspace: map the file and keep more pages per connection.
            cur.execute("PRAGMA mmap_size=268435456")
            cur.execute("PRAGMA cache_size=-32768")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

    return engine


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def check_schema(engine: Engine) -> None:
    """Refuse a database that was never initialised, or whose schema is not this version's."""
    if not inspect(engine).has_table("alembic_version"):
        raise WorkspaceError(
            "the database has no canarino schema", hint="run 'canarino init' on this workspace"
        )
    with engine.connect() as conn:
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    head = head_revision()
    if current != head:
        raise WorkspaceError(
            f"the database schema is at revision {current}; this version of canarino "
            f"needs revision {head}",
            hint="back up the database, then run 'canarino init' on this workspace to "
            "bring its schema up to date",
        )


@cache
def head_revision() -> str:
    """The newest migration this version of canarino ships."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


@dataclass
class Page(Generic[T]):
    """One page of a longer list, with the total count."""

    items: list[T]
    total: int
    limit: int
    offset: int


def _sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine, or ``None`` (in memory, or another database)."""
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return name


class Database:
    """Engine plus a session factory; one per workspace.

    It also keeps read models (:meth:`cached`): values computed from the database and
    reused until the next committed change, by any connection or process
    (:meth:`data_version`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._cache: dict[Hashable, tuple[object, Any]] = {}
        self._cache_lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._watcher: sqlite3.Connection | None = None
        self._watcher_lock = threading.Lock()
        self._watch_file = _sqlite_file(engine)

    def data_version(self) -> object | None:
        """A value that changes whenever a change to the database is committed.

        SQLite: ``PRAGMA data_version`` of a connection kept for this purpose only (it never
        writes, so every commit, from this process or another, changes the value).
        PostgreSQL: the current write-ahead-log position (any write moves it). ``None``
        where neither applies: then nothing is cached.
        """
        if self._watch_file is not None:
            with self._watcher_lock:
                if self._watcher is None:
                    self._watcher = sqlite3.connect(self._watch_file, check_same_thread=False)
                return self._watcher.execute("PRAGMA data_version").fetchone()[0]
        if self.engine.dialect.name == "postgresql":
            try:
                with self.engine.connect() as conn:
                    return conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar()
            except SQLAlchemyError:  # a standby in recovery has no current position
                return None
        return None

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, reused while the database has not changed since it ran.

        The version is read before computing, so a change made meanwhile makes the next
        call compute again. One thread computes a key at a time; the others wait for it.
        Callers must not change the returned value: it is shared.
        """
        version = self.data_version()
        if version is None:
            return compute()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]  # type: ignore[no-any-return]
            computing = self._computing.setdefault(key, threading.Lock())
        with computing:
            with self._cache_lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]  # type: ignore[no-any-return]
            value = compute()
            with self._cache_lock:
                if len(self._cache) >= CACHE_ENTRIES:
                    for old in list(self._cache)[: CACHE_ENTRIES // 2]:
                        del self._cache[old]
                    self._computing.clear()
                self._cache[key] = (version, value)
        return value

    def close(self) -> None:
        """Release the connections."""
        with self._watcher_lock:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise


# --- recipients -------------------------------------------------------------------------


def get_recipient(s: Session, name: str) -> m.Recipient:
    """Return the recipient called ``name``."""
    found = s.scalar(select(m.Recipient).where(m.Recipient.name == name))
    if found is None:
        raise NotFound(
            f"no recipient named {name!r}", hint="list them with 'canarino recipients list'"
        )
    return found


def list_recipients(s: Session) -> Sequence[m.Recipient]:
    """All recipients, by name."""
    return s.scalars(select(m.Recipient).order_by(m.Recipient.name)).all()


# --- customers --------------------------------------------------------------------------


def existing_identities(s: Session, identities: Sequence[bytes]) -> set[bytes]:
    """Those of ``identities`` already stored."""
    out: set[bytes] = set()
    for start in range(0, len(identities), 500):
        chunk = identities[start : start + 500]
        out.update(s.scalars(select(m.Customer.identity).where(m.Customer.identity.in_(chunk))))
    return out


def count_customers(s: Session) -> int:
    """How many customers the workspace holds."""
    return s.scalar(select(func.count()).select_from(m.Customer)) or 0


def customer_countries(s: Session) -> list[str]:
    """Distinct customer countries."""
    rows = s.scalars(select(m.Customer.country).distinct())
    return sorted(c for c in rows if c)


# --- traces and incidents ---------------------------------------------------------------


def get_trace(s: Session, trace_id: int) -> m.Trace:
    """Return trace ``trace_id``."""
    trace = s.get(m.Trace, trace_id)
    if trace is None:
        raise NotFound(f"no trace {trace_id}", hint="list them with 'canarino traces'")
    return trace


def get_incident(s: Session, incident_id: int) -> m.Incident:
    """Return incident ``incident_id``."""
    incident = s.get(m.Incident, incident_id)
    if incident is None:
        raise NotFound(
            f"no incident {incident_id}", hint="list them with 'canarino incidents list'"
        )
    return incident
