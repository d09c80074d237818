from __future__ import annotations

import logging
import shutil
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import delete, func, insert, select

from canarino import index
from canarino import models as m
from canarino.normalize import Pseudonymizer
from canarino.scope import PseudonymIndex
from canarino.workspace import Workspace


def _table(ws: Workspace) -> tuple[npt.NDArray[np.uint8], list[int]]:
    with ws.db.session() as s:
        rows = s.execute(
            select(m.Pseudonym.digest, m.Pseudonym.customer_id, m.Pseudonym.canary_id)
        ).all()
    raw = np.frombuffer(b"".join(bytes(d) for d, _, _ in rows), dtype=np.uint8).reshape(-1, 32)
    return raw, [c if c is not None else -k for _, c, k in rows]


def _load(ws: Workspace, *, split: bool = False) -> PseudonymIndex:
    with ws.db.session() as s:
        return index.load_index(s, ws.vault.pseudonyms, ws.settings.workspace, split=split)


def _forbid_table_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("the whole table was read")

    monkeypatch.setattr(index, "_read_table", refuse)


def _add_pseudonym(ws: Workspace, customer_id: int, digest: bytes) -> None:
    with ws.db.session() as s:
        s.execute(
            insert(m.Pseudonym),
            [{"digest": digest, "kind": "email", "customer_id": customer_id}],
        )


def test_the_index_read_in_two_processes_equals_the_index_read_in_one(
    loaded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "SPLIT_INDEX_MIN", 0)
    with loaded.db.session() as s:
        one, _ = index._read_table(s, split=False)
        two, _ = index._read_table(s, split=True)
    raw, owners = _table(loaded)
    assert len(one) == len(two) == len(owners) > 100
    assert one.lookup_raw(raw).tolist() == two.lookup_raw(raw).tolist() == owners


def test_a_trace_index_is_stored_owner_only_and_read_back_without_the_table(
    loaded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _load(loaded)
    path = index.index_path(loaded.settings.workspace)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    _forbid_table_reads(monkeypatch)
    again = _load(loaded)
    raw, owners = _table(loaded)
    assert again.lookup_raw(raw).tolist() == first.lookup_raw(raw).tolist() == owners


def test_pseudonyms_added_after_the_file_are_found_and_the_file_catches_up(
    loaded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(loaded)
    with loaded.db.session() as s:
        cid = s.scalar(select(func.max(m.Customer.id)))
    fresh = Pseudonymizer(b"k" * 32).digest("email", "nuovo@example.it")
    _add_pseudonym(loaded, cid, fresh)
    _forbid_table_reads(monkeypatch)
    grown = _load(loaded)
    assert grown.lookup([fresh]).tolist() == [cid]
    stored = index._read_file(
        index.index_path(loaded.settings.workspace), index._key_check(loaded.vault.pseudonyms)
    )
    assert stored is not None and stored[0].pseudonyms.lookup([fresh]).tolist() == [cid]


def test_removed_pseudonyms_make_the_file_untrusted(loaded: Workspace) -> None:
    before = _load(loaded)
    with loaded.db.session() as s:
        gone = bytes(s.scalar(select(m.Pseudonym.digest).order_by(m.Pseudonym.id).limit(1)))
        s.execute(delete(m.Pseudonym).where(m.Pseudonym.digest == gone))
    assert before.lookup([gone]).tolist() != [0]
    assert _load(loaded).lookup([gone]).tolist() == [0]


def test_a_rewritten_last_row_makes_the_file_untrusted(loaded: Workspace) -> None:
    # Deleting the newest row and adding another lets SQLite give the new one the same
    # id and the table the same count: only the row's digest tells.
    _load(loaded)
    with loaded.db.session() as s:
        top = s.scalar(select(func.max(m.Pseudonym.id)))
        owner = s.scalar(select(m.Pseudonym.customer_id).where(m.Pseudonym.id == top))
        s.execute(delete(m.Pseudonym).where(m.Pseudonym.id == top))
    fresh = Pseudonymizer(b"k" * 32).digest("phone", "+390212345678")
    _add_pseudonym(loaded, owner, fresh)
    with loaded.db.session() as s:
        assert s.scalar(select(func.max(m.Pseudonym.id))) == top
    assert _load(loaded).lookup([fresh]).tolist() == [owner]


def test_a_file_made_under_another_key_is_not_used(loaded: Workspace, tmp_path: Path) -> None:
    with loaded.db.session() as s:
        whole, coverage = index._read_table(s, split=False)
    assert coverage is not None
    path = index.index_path(loaded.settings.workspace)
    stranger = Pseudonymizer(b"z" * 32).digest("email", "estraneo@example.it")
    forged = whole.with_added(stranger, np.array([1], dtype=np.int64))
    index._write_file(
        path,
        index.Lookup(forged, index.Places.empty()),
        coverage,
        index._key_check(Pseudonymizer(b"y" * 32)),
    )
    assert _load(loaded).lookup([stranger]).tolist() == [0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_is_rebuilt_with_a_warning(
    loaded: Workspace, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    _load(loaded)
    path = index.index_path(loaded.settings.workspace)
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"\x00\xff" * 999, "empty": b""}[damage]
    )
    with caplog.at_level(logging.WARNING, logger="canarino.index"):
        rebuilt = _load(loaded)
    raw, owners = _table(loaded)
    assert rebuilt.lookup_raw(raw).tolist() == owners
    assert "rebuilding" in caplog.text
    assert index._read_file(path, index._key_check(loaded.vault.pseudonyms)) is not None


def _places(ws: Workspace) -> dict[int, tuple[str | None, str | None]]:
    with ws.db.session() as s:
        rows = s.execute(select(m.Customer.id, m.Customer.country, m.Customer.region))
        return {cid: (country, region) for cid, country, region in rows}


def _lookup(ws: Workspace) -> index.Lookup:
    with ws.db.session() as s:
        return index.load_lookup(s, ws.vault.pseudonyms, ws.settings.workspace)


def test_every_customer_has_its_country_and_region_in_the_file(
    loaded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lookup(loaded)
    _forbid_table_reads(monkeypatch)
    places = _lookup(loaded).places
    truth = _places(loaded)
    ids = np.array(sorted(truth), dtype=np.int64)
    got = [places.names[c] for c in places.of(ids).tolist()]
    assert got == [truth[i] for i in ids.tolist()]
    assert places.of(np.array([ids.max() + 1, -5], dtype=np.int64)).tolist() == [-1, -1]


def test_customers_imported_after_the_file_get_their_places(
    loaded: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from canarino.customers import import_customers
    from canarino.testing import make_customers, write_customers_csv

    before = _lookup(loaded)
    more = write_customers_csv(tmp_path / "altri.csv", make_customers(30, seed=99))
    # Import refreshes the file itself; remove what it wrote to see a trace catch up.
    monkeypatch.setattr("canarino.customers.refresh_index", lambda ws: 0)
    assert import_customers(loaded, more).imported == 30
    _forbid_table_reads(monkeypatch)
    after = _lookup(loaded).places
    truth = _places(loaded)
    new_ids = np.array(sorted(set(truth) - set(before.places.ids.tolist())), dtype=np.int64)
    assert new_ids.size == 30
    assert [after.names[c] for c in after.of(new_ids).tolist()] == [
        truth[i] for i in new_ids.tolist()
    ]


def test_import_and_share_leave_the_file_current(
    loaded: Workspace, shared: dict[str, object]
) -> None:
    stored = index._read_file(
        index.index_path(loaded.settings.workspace), index._key_check(loaded.vault.pseudonyms)
    )
    assert stored is not None
    lookup, coverage = stored
    raw, owners = _table(loaded)
    assert any(o < 0 for o in owners), "the shares planted canaries"
    with loaded.db.session() as s:
        assert coverage.upto == s.scalar(select(func.max(m.Pseudonym.id)))
    assert lookup.pseudonyms.lookup_raw(raw).tolist() == owners


def test_a_folder_that_refuses_the_file_only_costs_speed(
    loaded: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = index.index_path(loaded.settings.workspace).parent
    shutil.rmtree(blocker)
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="canarino.index"):
        got = _load(loaded)
    raw, owners = _table(loaded)
    assert got.lookup_raw(raw).tolist() == owners
    assert "cannot store the pseudonym index" in caplog.text


def test_an_empty_workspace_has_an_empty_index_and_no_file(ws: Workspace) -> None:
    assert len(_load(ws)) == 0
    assert not index.index_path(ws.settings.workspace).exists()
