"""Fixtures of the delivery tests: a copied workspace with one incident, an SMTP sink."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from canarino import models as m
from canarino.customers import import_customers
from canarino.settings import load_settings
from canarino.testing import make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

from ..inbound.test_imap import dovecot  # noqa: F401  (a real IMAP server, shared)
from .support import PEOPLE, Case, RecordingSink, make_incident


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("delivery")
    ws = init_workspace(root / "ws", mail_domains=["canary-mail.it"], phone_ranges=["+39347555"])
    customers = make_customers(PEOPLE, seed=5)
    for i, c in enumerate(customers):
        if i % 3 == 0:
            c["email"] = ""
        if i % 15 == 0:
            c["address"] = ""
    assert import_customers(ws, write_customers_csv(root / "c.csv", customers)).imported == PEOPLE
    with ws.db.session() as s:
        ids = list(s.scalars(select(m.Customer.id).order_by(m.Customer.id)))
    make_incident(ws, ids)
    ws.close()
    return root / "ws"


@pytest.fixture
def case(template: Path, tmp_path: Path) -> Iterator[Case]:
    shutil.copytree(template, tmp_path / "ws")
    ws = Workspace.open(load_settings(tmp_path / "ws"))
    yield Case(ws, 1, PEOPLE, emails=30, letters=12, unreachable=3)
    ws.close()


@pytest.fixture
def smtp() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink
