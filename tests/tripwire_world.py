"""A workspace with shares, built once per test module, and a reset between tests.

The trip-wire tests (webhooks, alerts, campaigns, end to end) only add sightings and
what follows from them, so they share one set of customers and shares and clear the
live tables between tests instead of rebuilding everything.
"""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from canarino import models as m
from canarino.customers import import_customers
from canarino.recipients import add_recipient
from canarino.shares import ShareResult, create_share
from canarino.testing import make_customers, write_customers_csv
from canarino.workspace import Workspace, init_workspace

MAIL_DOMAINS = ["canary-mail.it", "posta-clienti.eu"]
PHONE_RANGES = ["+39347555", "+3367912", "+1415555"]
FIELDS = "customer_id,first_name,last_name,email,phone,address"


@dataclass
class World:
    """The workspace, its shares, and each share's canary rows as exported."""

    ws: Workspace
    shares: dict[str, ShareResult]
    settings: object

    def canaries(self, recipient: str) -> list[dict[str, str]]:
        """The canary rows of ``recipient``'s share (known by their monitored domain)."""
        with self.shares[recipient].path.open(encoding="utf-8", newline="") as fp:
            rows = list(csv.DictReader(fp))
        return [r for r in rows if r["email"].split("@")[1] in MAIL_DOMAINS]

    def reset(self) -> None:
        """Forget every sighting, alert and campaign; restore the settings."""
        with self.ws.db.session() as s:
            for table in (
                m.CampaignSighting,
                m.Campaign,
                m.Alert,
                m.InboundMessage,
                m.Sighting,
                m.NoiseCount,
                m.AllowedSender,
                m.Incident,
            ):
                s.execute(delete(table))
        self.ws.settings = self.settings  # type: ignore[assignment]


def build_world(folder: Path, customers: int = 150) -> World:
    """Customers, two vendors and an employee of the first, each with a share."""
    ws = init_workspace(folder / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    path = write_customers_csv(folder / "clienti.csv", make_customers(customers, seed=23))
    import_customers(ws, path)
    add_recipient(ws, "Vendor A", "vendor")
    add_recipient(ws, "Vendor B", "vendor")
    add_recipient(ws, "Agent A1", "employee", parent="Vendor A")
    shares = {
        name: create_share(ws, name, FIELDS, folder / f"{name.replace(' ', '_')}.csv")
        for name in ("Vendor A", "Vendor B", "Agent A1")
    }
    return World(ws, shares, ws.settings)


@dataclass
class Receiver:
    """A loopback HTTP server that keeps what is POSTed; ``fail`` requests get a 500 first."""

    fail: int = 0
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(body) for p, _, body in self.posts if p == path]

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
