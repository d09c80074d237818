"""The end-to-end demo: a generated company, its vendors and staff, one leak, the response.

Everything runs on generated data in a workspace of its own, and notices go to an SMTP
server started on loopback, so nothing leaves the machine.
"""

from __future__ import annotations

import random  # noqa: TID251 - reproducible scenario; canaries themselves use SystemRandom
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .customers import import_customers
from .delivery import prepare_notices, send_notices
from .incidents import IncidentView, open_incident
from .recipients import add_recipient
from .shares import ShareResult, create_share
from .testing import SmtpSink, iter_customers, make_dump, write_customers_csv
from .trace import TraceReport, run_trace
from .workspace import init_workspace

Progress = Callable[[int, int], None]

VENDORS: tuple[tuple[str, str, str], ...] = (
    (
        "CallOne Italia S.r.l.",
        "country=IT",
        "customer_id,first_name,last_name,email,phone,address,city,region",
    ),
    (
        "EuroSupport GmbH",
        "country=FR,DE,ES",
        "customer_id,first_name,last_name,email,phone,country",
    ),
    ("US Care Services Inc.", "country=US", "customer_id,first_name,last_name,email,phone,region"),
    ("Mailing Express S.p.A.", "", "first_name,last_name,email,language"),
    ("Logistica Veloce S.r.l.", "country=IT", "first_name,last_name,phone,address,city,postcode"),
)
LEAKER = VENDORS[0][0]
LEAK_FRACTION = 0.05


class Reporter(Protocol):
    """How the demo tells a person what it is doing."""

    def step(self, title: str) -> Progress:
        """Announce a step; return a callback for its progress."""
        ...

    def done(self, title: str, detail: str) -> None:
        """Close a step with a one-line result."""
        ...


class _Quiet:
    def step(self, title: str) -> Progress:
        return lambda done, total: None

    def done(self, title: str, detail: str) -> None:
        return None


@dataclass
class DemoSummary:
    """What the demo did, for a person to read in a minute."""

    workspace: Path
    customers: int
    recipients: int
    shares: list[ShareResult]
    leaker: str
    leaked_rows: int
    noise_rows: int
    trace: TraceReport
    incident: IncidentView
    prepared: int
    skipped: dict[str, int]
    sent: int
    received: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def named_first(self) -> str | None:
        """The recipient the trace names first."""
        return self.trace.suspects[0].recipient if self.trace.suspects else None


def run_demo(
    workdir: Path,
    *,
    customers: int = 20_000,
    seed: int = 2026,
    leak_fraction: float = LEAK_FRACTION,
    reporter: Reporter | None = None,
) -> DemoSummary:
    """Run the whole flow on generated data inside ``workdir``."""
    rep = reporter or _Quiet()
    rng = random.Random(seed)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    ws = init_workspace(
        workdir / "workspace",
        mail_domains=["clienti-posta.it", "servizio-clienti-mail.it", "assistenza-email.eu"],
        phone_ranges=["+39347555", "+39333909", "+3367912", "+49157300", "+34655120", "+1415555"],
        company_name="Spesa Facile S.p.A.",
        company_email="privacy@spesafacile.example",
    )
    files = workdir / "files"
    files.mkdir(parents=True, exist_ok=True)

    tick = rep.step(f"Generating {customers:,} customers")
    people = []
    for i, person in enumerate(iter_customers(customers, seed=seed), 1):
        people.append(person)
        if i % 1_000 == 0:
            tick(i, customers)
    base = write_customers_csv(files / "clienti.csv", people)
    rep.done("Generated", f"{customers:,} customers in Italy, France, Germany, Spain and the US")
    lap("generate")

    tick = rep.step("Importing customers")
    report = import_customers(ws, base, progress=lambda done, _t: tick(done, customers))
    rep.done("Imported", f"{report.imported:,} customers, {len(report.problems)} rows refused")
    lap("import")

    tick = rep.step("Registering vendors and staff; sharing data with canaries")
    shares: list[ShareResult] = []
    employees = 0
    for name, _, _ in VENDORS:
        add_recipient(ws, name, "vendor")
    jobs: list[tuple[str, str, str]] = list(VENDORS)
    provinces = sorted({p["region"] for p in people if p["country"] == "IT"})
    for v, (vendor, _, _) in enumerate(VENDORS):
        for k in range(4):
            employee = f"{vendor.split()[0]} agent {v * 4 + k + 1:02d}"
            add_recipient(ws, employee, "employee", parent=vendor)
            employees += 1
            picked = ",".join(rng.sample(provinces, 3))
            jobs.append(
                (employee, f"country=IT region={picked}", "first_name,last_name,email,phone")
            )
    for i, (who, where, what) in enumerate(jobs, 1):
        out = files / "exports" / f"share-{i:02d}.csv"
        shares.append(create_share(ws, who, what, out, customer_filter=where))
        tick(i, len(jobs))
    planted = sum(s.canaries for s in shares)
    rep.done(
        "Shared",
        f"{len(shares)} exports to {len(VENDORS)} vendors and {employees} employees, "
        f"{planted:,} canaries planted",
    )
    lap("share")

    rep.step(f"{LEAKER} leaks {leak_fraction:.0%} of its export, reformatted and mixed")
    leak = files / "leak" / "dump-found-online.csv"
    leak.parent.mkdir(exist_ok=True)
    noise = max(200, customers // 20)
    leaked = make_dump(
        shares[0].path, leak, fraction=leak_fraction, seed=seed + 1, noise_rows=noise
    )
    rep.done("Leak", f"{leaked:,} rows of the export plus {noise:,} unrelated rows")
    lap("leak")

    tick = rep.step("Tracing the leak")
    trace = run_trace(ws, leak, progress=tick)
    top = trace.suspects[0].recipient if trace.suspects else "nobody"
    rep.done("Traced", f"{trace.customers_matched:,} customers exposed; named first: {top}")
    lap("trace")

    rep.step("Opening the incident and preparing notices")
    incident = open_incident(
        ws, trace.trace_id, title="Leak of the CallOne customer-service export"
    )
    prepared = prepare_notices(ws, incident.id)
    rep.done(
        "Incident", f"#{incident.id}: {incident.people:,} people; {prepared.prepared:,} notices"
    )
    lap("incident")

    tick = rep.step("Sending notices to the loopback SMTP server")
    with SmtpSink() as sink:
        sent = send_notices(ws, incident.id, host=sink.host, port=sink.port, progress=tick)
        received = len(sink.messages)
    rep.done("Sent", f"{sent.sent:,} notices; the server received {received:,}")
    lap("notices")
    ws.close()
    return DemoSummary(
        workspace=ws.settings.workspace,
        customers=report.imported,
        recipients=len(VENDORS) + employees,
        shares=shares,
        leaker=LEAKER,
        leaked_rows=leaked,
        noise_rows=noise,
        trace=trace,
        incident=incident,
        prepared=prepared.prepared,
        skipped=dict(prepared.skipped),
        sent=sent.sent,
        received=received,
        seconds=timings,
    )
