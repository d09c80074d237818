from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from canarino import models as m
from canarino.customers import import_customers
from canarino.recipients import add_recipient
from canarino.settings import CONFIG_FILE, load_settings
from canarino.shares import CANARY_CONTEXT, create_share
from canarino.testing import make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

from ..conftest import MAIL_DOMAINS, PHONE_RANGES


def canary_rows(path: Path) -> list[dict[str, str]]:
    """The canary rows of a share file (their e-mail is on a monitored domain)."""
    with path.open(encoding="utf-8", newline="") as fp:
        return [r for r in csv.DictReader(fp) if r["email"].split("@")[1] in MAIL_DOMAINS]


def control_emails(ws: Workspace, n: int) -> list[str]:
    with ws.db.session() as s:
        sealed = s.scalars(select(m.Canary.sealed).where(m.Canary.layer == "control").limit(n))
        return [ws.vault.open(x, context=CANARY_CONTEXT)["email"] for x in sealed]


@pytest.fixture(scope="session")
def mailws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A workspace with 200 customers and two vendors' shares, made once for these tests."""
    root = tmp_path_factory.mktemp("mail")
    made = init_workspace(root / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    made.close()
    # A small control pool keeps the module fast; the behaviour is the same.
    with (root / "ws" / CONFIG_FILE).open("a", encoding="utf-8") as fp:
        fp.write("control_canaries = 5\n")
    ws = Workspace.open(load_settings(root / "ws"))
    import_customers(ws, write_customers_csv(root / "c.csv", make_customers(200, seed=5)))
    add_recipient(ws, "Vendor A", "vendor")
    add_recipient(ws, "Vendor B", "vendor")
    fields = "customer_id,first_name,last_name,email,phone,address"
    create_share(ws, "Vendor A", fields, root / "a.csv")
    create_share(ws, "Vendor B", fields, root / "b.csv")
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def canaries(mailws: Workspace) -> dict[str, list[dict[str, str]]]:
    root = mailws.settings.workspace.parent
    return {"Vendor A": canary_rows(root / "a.csv"), "Vendor B": canary_rows(root / "b.csv")}
