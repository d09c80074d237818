from __future__ import annotations

import pytest

from canarino import audit
from canarino.workspace import Workspace


@pytest.mark.parametrize(
    ("field", "value", "masked"),
    [
        ("email", "mario.rossi@example.it", "m•••@e•••.it"),
        ("email", "a@b.co.uk", "a•••@b•••.uk"),
        ("email", "no-at-sign", "n•••"),
        ("email", "x@localhost", "x•••@l•••"),
        ("phone", "+393471234567", "+39•••67"),
        ("phone", "1234", "•••"),
        ("first_name", "Maria Grazia", "M••• G•••"),
        ("address", "Via Roma 1", "V••• R••• 1•••"),
        ("country", "IT", "IT"),
        ("language", "it", "it"),
        ("email", "", ""),
    ],
)
def test_masking_keeps_only_a_hint(field: str, value: str, masked: str) -> None:
    assert audit.mask_value(field, value) == masked


def test_mask_record_masks_every_field() -> None:
    record = {"first_name": "Luca", "email": "luca@posta.it", "country": "IT"}
    assert audit.mask_record(record) == {
        "first_name": "L•••",
        "email": "l•••@p•••.it",
        "country": "IT",
    }


def test_events_are_listed_newest_first_with_a_total(ws: Workspace) -> None:
    for i in range(5):
        audit.record(ws, "dpo", "view", f"incident {i}", detail={"n": i}, address="10.0.0.1")
    audit.record(ws, "soc", "export", "incident 1", detail={"rows": 3})
    total, rows = audit.list_events(ws, limit=2)
    assert total == 6 and [r.target for r in rows] == ["incident 1", "incident 4"]
    total, rows = audit.list_events(ws, limit=2, offset=2, action="view")
    assert total == 5 and [r.detail["n"] for r in rows] == [2, 1]
    assert audit.list_events(ws, actor="soc")[0] == 1
    assert rows[0].as_dict()["address"] == "10.0.0.1"


def test_unknown_actions_are_a_programming_error(ws: Workspace) -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(ws, "dpo", "peek", "incident 1")


def test_overlong_values_are_cut_not_refused(ws: Workspace) -> None:
    audit.record(ws, "x" * 500, "view", "y" * 500, address="z" * 500)
    _, (entry,) = audit.list_events(ws)
    assert len(entry.actor) == 100 and len(entry.target) == 200 and len(entry.address or "") == 64
