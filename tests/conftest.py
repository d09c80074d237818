from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from canarino.customers import import_customers
from canarino.recipients import add_recipient
from canarino.shares import ShareResult, create_share
from canarino.testing import make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

MAIL_DOMAINS = ["canary-mail.it", "posta-clienti.eu"]
PHONE_RANGES = ["+39347555", "+3367912", "+1415555"]


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = init_workspace(
        tmp_path / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES
    )
    yield workspace
    workspace.close()


@pytest.fixture(scope="session")
def people() -> list[dict[str, str]]:
    return make_customers(400, seed=11)


@pytest.fixture
def customers_csv(tmp_path: Path, people: list[dict[str, str]]) -> Path:
    return write_customers_csv(tmp_path / "clienti.csv", people)


@pytest.fixture
def loaded(ws: Workspace, customers_csv: Path) -> Workspace:
    report = import_customers(ws, customers_csv)
    assert report.imported == 400
    return ws


@pytest.fixture
def shared(loaded: Workspace, tmp_path: Path) -> dict[str, ShareResult]:
    """Two vendors with overlapping shares and one employee of the first."""
    add_recipient(loaded, "Vendor A", "vendor")
    add_recipient(loaded, "Vendor B", "vendor")
    add_recipient(loaded, "Agent A1", "employee", parent="Vendor A")
    fields = "customer_id,first_name,last_name,email,phone,address"
    return {
        "Vendor A": create_share(loaded, "Vendor A", fields, tmp_path / "a.csv"),
        "Vendor B": create_share(loaded, "Vendor B", fields, tmp_path / "b.csv"),
        "Agent A1": create_share(
            loaded,
            "Agent A1",
            "first_name,email",
            tmp_path / "a1.csv",
            customer_filter="country=IT",
        ),
    }
