from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, select, text

from canarino import models as m
from canarino.models import Base
from canarino.scope import fields_of
from canarino.store import Database, _alembic_config, make_engine, upgrade


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def _migrate(engine: Engine, verb: str, target: str) -> None:
    from alembic import command

    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, target)


def test_stored_trace_fields_become_masks_and_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _migrate(engine, "upgrade", "0008")
    texts = {1: "email,phone", 2: "first_name,email", 3: "", 4: "iban,password,tax_code"}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO traces (id, created_at, source_name, source_sha256, size_bytes, "
                "rows_read, result) VALUES (1, '2026-11-25', 'd.csv', '', 1, 1, '{}')"
            )
        )
        for cid, fields in texts.items():
            conn.execute(
                text(
                    "INSERT INTO customers (id, identity, sealed, created_at) "
                    "VALUES (:id, :identity, x'00', '2026-11-25')"
                ),
                {"id": cid, "identity": bytes([cid]) * 32},
            )
            conn.execute(
                text(
                    "INSERT INTO trace_customers (trace_id, customer_id, fields) VALUES (1, :c, :f)"
                ),
                {"c": cid, "f": fields},
            )
    _migrate(engine, "upgrade", "head")
    with engine.connect() as conn:
        masks = dict(conn.execute(text("SELECT customer_id, mask FROM trace_customers")).all())
        ddl = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'trace_customers'")
        ).scalar_one()
    # Written out again in the canonical order of the fields.
    canonical = {**texts, 4: "tax_code,password,iban"}
    assert {cid: ",".join(fields_of(k)) for cid, k in masks.items()} == canonical
    assert "WITHOUT ROWID" in ddl.upper()
    _migrate(engine, "downgrade", "0008")
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT customer_id, fields FROM trace_customers")).all())
    assert back == canonical
    engine.dispose()


def _database(tmp_path: Path) -> Database:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return Database(engine)


def test_data_version_changes_when_any_connection_or_process_commits(tmp_path: Path) -> None:
    db = _database(tmp_path)
    try:
        first = db.data_version()
        with db.session() as s:
            s.execute(select(m.Recipient)).all()
        assert db.data_version() == first, "a read must not change the version"
        with db.session() as s:
            s.add(m.Recipient(name="Vendor A", kind="vendor"))
        second = db.data_version()
        assert second != first
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute(\"UPDATE recipients SET kind = 'system'\"); c.commit()"
        )
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "db.sqlite")], check=True)
        assert db.data_version() not in (first, second)
    finally:
        db.close()


def test_cached_value_is_reused_until_a_write_then_computed_again(tmp_path: Path) -> None:
    db = _database(tmp_path)
    calls: list[int] = []

    def names() -> list[str]:
        calls.append(1)
        with db.session() as s:
            return [r.name for r in s.scalars(select(m.Recipient))]

    try:
        assert db.cached("names", names) == [] and db.cached("names", names) == []
        assert len(calls) == 1
        with db.session() as s:
            s.add(m.Recipient(name="Vendor B", kind="vendor"))
        assert db.cached("names", names) == ["Vendor B"]
        assert len(calls) == 2
    finally:
        db.close()


def test_a_database_without_a_version_is_never_cached() -> None:
    db = Database(create_engine("sqlite://"))
    calls: list[int] = []
    try:
        assert db.data_version() is None
        for _ in range(3):
            db.cached("k", lambda: calls.append(1))
        assert len(calls) == 3
    finally:
        db.close()


def test_one_thread_computes_a_key_while_the_others_wait(tmp_path: Path) -> None:
    db = _database(tmp_path)
    calls: list[int] = []
    gate = threading.Event()

    def slow() -> int:
        calls.append(1)
        gate.wait(5)
        return 42

    try:
        threads = [threading.Thread(target=lambda: db.cached("slow", slow)) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        gate.set()
        for t in threads:
            t.join(10)
        assert calls == [1]
    finally:
        db.close()


def test_a_database_behind_this_version_is_refused_until_init_upgrades_it(
    tmp_path: Path,
) -> None:
    from canarino.errors import WorkspaceError
    from canarino.store import check_schema, head_revision

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _migrate(engine, "upgrade", "0008")
    with pytest.raises(WorkspaceError) as refused:
        check_schema(engine)
    assert "revision 0008" in str(refused.value) and head_revision() in str(refused.value)
    assert "canarino init" in (refused.value.hint or "")
    upgrade(engine)
    check_schema(engine)
    engine.dispose()
