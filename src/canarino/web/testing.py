"""A ready workspace for web tests, browser tests and benchmarks.

Three users (admin, analyst, viewer) with known passwords, generated customers, three
recipients with shares, one traced leak and, on request, an incident. All data is
synthetic (Faker through :mod:`canarino.testing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..customers import import_customers
from ..incidents import open_incident
from ..recipients import add_recipient
from ..shares import create_share
from ..testing import make_customers, make_dump, write_customers_csv
from ..trace import run_trace
from ..users import add_user
from ..workspace import Workspace, init_workspace
from .problems import flat_routes

PASSWORDS = {
    "admin": "admin-password-1234",
    "analyst": "analyst-password-1234",
    "viewer": "viewer-password-1234",
}
MAIL_DOMAINS = ["canary-mail.it", "posta-clienti.eu"]
PHONE_RANGES = ["+39347555", "+3367912", "+1415555"]


@dataclass
class WebFixture:
    """What :func:`make_web_workspace` built."""

    ws: Workspace
    passwords: dict[str, str] = field(default_factory=lambda: dict(PASSWORDS))
    share_ids: dict[str, int] = field(default_factory=dict)
    dump: Path | None = None
    trace_id: int | None = None
    incident_id: int | None = None


def make_web_workspace(
    folder: Path,
    *,
    customers: int = 300,
    seed: int = 11,
    trace: bool = True,
    incident: bool = True,
) -> WebFixture:
    """Build a workspace in ``folder`` with users and, optionally, a traced leak and incident."""
    ws = init_workspace(folder / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    fx = WebFixture(ws)
    for role, password in PASSWORDS.items():
        add_user(ws, role, password, role)
    csv_path = write_customers_csv(folder / "clienti.csv", make_customers(customers, seed=seed))
    import_customers(ws, csv_path)
    add_recipient(ws, "Vendor A", "vendor")
    add_recipient(ws, "Vendor B", "vendor")
    add_recipient(ws, "Agent A1", "employee", parent="Vendor A")
    fields = "customer_id,first_name,last_name,email,phone,address"
    exports = folder / "exports"
    exports.mkdir(exist_ok=True)
    for name, spec, flt in (
        ("Vendor A", fields, ""),
        ("Vendor B", fields, ""),
        ("Agent A1", "first_name,email", "country=IT"),
    ):
        result = create_share(
            ws, name, spec, exports / f"{name.replace(' ', '_')}.csv", customer_filter=flt
        )
        fx.share_ids[name] = result.share_id
    if trace:
        fx.dump = folder / "dump.csv"
        make_dump(exports / "Vendor_A.csv", fx.dump, fraction=0.3, seed=3)
        fx.trace_id = run_trace(ws, fx.dump).trace_id
        if incident:
            fx.incident_id = open_incident(ws, fx.trace_id, title="Vendor A leak").id
    return fx


def iter_routes(routes: Iterable[Any]) -> Iterator[tuple[str, frozenset[str]]]:
    """Every ``(path, methods)`` an app answers, included routers flattened."""
    for route in flat_routes(routes):
        if getattr(route, "path", None) is not None:
            yield route.path, frozenset(getattr(route, "methods", None) or {"GET"})
