"""The database: engine, migrations, sessions, and every query as a named function."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from . import models as m
from .errors import NotFound, WorkspaceError

MIGRATIONS = Path(__file__).parent / "migrations"


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
    """Refuse a database that was never initialised."""
    if not inspect(engine).has_table("alembic_version"):
        raise WorkspaceError(
            "the database has no canarino schema", hint="run 'canarino init' on this workspace"
        )


class Database:
    """Engine plus a session factory; one per workspace."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

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
