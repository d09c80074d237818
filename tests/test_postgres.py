"""The whole flow on PostgreSQL, the production database.

Runs when CANARINO_TEST_POSTGRES names a server role allowed to create databases, e.g.
``postgresql+psycopg://canarino:canarino@127.0.0.1/postgres`` (``.ci/run`` sets it up).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from canarino.demo import LEAKER, run_demo

ADMIN = os.environ.get("CANARINO_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not ADMIN, reason="CANARINO_TEST_POSTGRES is not set")


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    assert ADMIN is not None
    name = f"canarino_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("CANARINO_DATABASE_URL", url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_demo_flow_runs_on_postgresql(tmp_path: Path, database: str) -> None:
    summary = run_demo(tmp_path, customers=1_500, seed=7, leak_fraction=0.5)
    assert summary.named_first == LEAKER and summary.trace.suspects[0].accused
    assert summary.prepared == summary.sent == summary.received > 0
    assert not (tmp_path / "workspace" / "canarino.db").exists()
    engine = create_engine(database)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM customers")).scalar()
    engine.dispose()
    assert stored == summary.customers


def test_migrations_build_exactly_the_models_schema_on_postgresql(database: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from canarino.models import Base
    from canarino.store import make_engine, upgrade

    engine = make_engine(database)
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
