"""Benchmark the staff web app: 50 signed-in clients against the overview and an incident.

Usage::

    .venv/bin/python bench/web.py                                   # 1,000,000 customers, 60 s
    .venv/bin/python bench/web.py --customers 5000 --seconds 5 --clients 10   # quick check

The workspace is built once and cached under ``bench/.work/web-c<N>-g<G>/``: synthetic
customers (the generator of ``bench/trace.py``: names from small pools, unique e-mail
addresses and phone numbers) enter through ``import_customers``, the path users take;
two vendors get shares (the French and the German customers), a thinned copy of the
first vendor's export is traced and an incident is opened on it. Each step's time is
recorded in ``ready.json`` and in the results.

The server is started as a user starts it, ``canarino serve --workers N`` (``--workers``,
default 2: the machine's cores; recorded in the results), in its own process group. The
clients run in this process: ``--clients`` asyncio connections, each signed in as one of
the three roles in turn, each sending its next request as soon as the last answer has
been read in full (closed loop, HTTP/1.1 keep-alive, a minimal client written on
asyncio streams so that the clients take little of the CPU the server needs). Each
target gets ``--seconds`` of load: the overview ``/``, the incident page, and, as the
reference, ``/health`` of the same server (no database, no template), which shows what
the server and the clients cost by themselves on this machine. The reference runs first
and last (the load of a shared machine drifts); the table gives each page's p95 over the
mean p95 of the two reference runs. The load average is read before and after each target.

When a page misses the goal (p95 < 200 ms), it is profiled in-process: the SQL
statements per request and their time (SQLAlchemy events), and the functions that take
the most time (cProfile). Results go to ``bench/results/web.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
GENERATOR = 1  # bump when the built workspace changes, so old caches are not reused
SEED = 20261125
GOAL_P95_MS = 200.0
ROLES = ("viewer", "analyst", "admin")
SHARES = (("Vendor A", "country=FR"), ("Vendor B", "country=DE"))
SHARE_FIELDS = "customer_id,first_name,last_name,email,phone"


def log(message: str) -> None:
    """Progress on standard error, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _trace_bench() -> Any:
    """``bench/trace.py``, for its customer generator (one generator for all benchmarks)."""
    spec = importlib.util.spec_from_file_location("bench_trace", HERE / "trace.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_trace"] = module
    spec.loader.exec_module(module)
    return module


def build(cache: Path, customers: int) -> dict[str, Any]:
    """Make the workspace in ``cache``; return what each step took."""
    from canarino.customers import import_customers
    from canarino.incidents import open_incident
    from canarino.recipients import add_recipient
    from canarino.shares import create_share
    from canarino.testing import make_dump
    from canarino.trace import run_trace
    from canarino.users import add_user
    from canarino.web.testing import MAIL_DOMAINS, PASSWORDS, PHONE_RANGES
    from canarino.workspace import init_workspace

    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    meta: dict[str, Any] = {"customers": customers, "generator": GENERATOR, "seconds": {}}
    took = meta["seconds"]

    started = time.perf_counter()
    gen = _trace_bench()
    rng = np.random.default_rng(SEED)
    people = gen.make_people(gen.make_pools(SEED), 0, customers, rng, noise=False)
    customers_csv = cache / "customers.csv"
    gen.write_customers(customers_csv, people, rng)
    del people
    took["customers_csv"] = time.perf_counter() - started
    log(f"customers file written in {took['customers_csv']:.1f} s")

    ws = init_workspace(cache / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    try:
        started = time.perf_counter()
        report = import_customers(ws, customers_csv)
        took["import_customers"] = time.perf_counter() - started
        meta["imported"] = report.imported
        log(f"imported {report.imported:,} customers in {took['import_customers']:.1f} s")
        customers_csv.unlink()
        for role, password in PASSWORDS.items():
            add_user(ws, role, password, role)
        started = time.perf_counter()
        exports = {}
        for name, flt in SHARES:
            add_recipient(ws, name, "vendor")
            exports[name] = cache / f"{name.replace(' ', '_')}.csv"
            create_share(ws, name, SHARE_FIELDS, exports[name], customer_filter=flt)
        took["shares"] = time.perf_counter() - started
        log(f"two shares in {took['shares']:.1f} s")
        dump = cache / "dump.csv"
        meta["dump_rows"] = make_dump(exports["Vendor A"], dump, fraction=0.2, seed=7)
        started = time.perf_counter()
        traced = run_trace(ws, dump)
        took["trace"] = time.perf_counter() - started
        incident = open_incident(ws, traced.trace_id, title="Vendor A leak")
        meta["incident_id"] = incident.id
        meta["incident_people"] = incident.people
        log(f"traced and opened incident {incident.id} ({incident.people:,} people)")
    finally:
        ws.close()
    (cache / "ready.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def start_server(ws_dir: Path, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """``canarino serve`` on ``port`` with ``workers`` processes (no mail listener)."""
    command = [sys.executable, "-m", "canarino", "serve", "--no-smtp"]
    command += ["--listen", f"127.0.0.1:{port}", "--workers", str(workers)]
    command += ["--workspace", str(ws_dir)]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers (its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_up(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"the web server did not answer on {base} within {seconds:.0f} s")


def sign_in(base: str, role: str = "viewer") -> str:
    """A session cookie for ``role`` (the sign-in form, with its token, as a browser does)."""
    from canarino.web.auth import SESSION_COOKIE, SIGNIN_COOKIE
    from canarino.web.testing import PASSWORDS

    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/signin")
        answer = client.post(
            "/signin",
            data={
                "username": role,
                "password": PASSWORDS[role],
                "csrf_token": client.cookies.get(SIGNIN_COOKIE, ""),
                "next": "/",
            },
        )
        if SESSION_COOKIE not in client.cookies:
            raise SystemExit(f"signing in as {role} failed with HTTP {answer.status_code}")
        return str(client.cookies[SESSION_COOKIE])


def _request(path: str, port: int, cookie: str) -> bytes:
    from canarino.web.auth import SESSION_COOKIE

    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/html\r\n"
        f"Accept-Language: en\r\nCookie: {SESSION_COOKIE}={cookie}\r\n\r\n"
    ).encode()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response in full: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")
    return status, bytes(body)


async def _load(
    port: int, path: str, cookies: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` closed-loop clients on ``path`` for ``seconds``; latency figures."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds

    async def one(number: int) -> None:
        request = _request(path, port, cookies[number % len(cookies)])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    writer.write(request)
                    status, _ = await _answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
        finally:
            writer.close()

    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "path": path,
        "requests": len(latencies),
        "seconds": round(wall, 1),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": errors,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _run(work: Any) -> Any:
    """Run a coroutine on uvloop where installed (the server uses it too), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def check_page(base: str, path: str, cookie: str, marker: str) -> int:
    """One request the way a browser makes it: the real page, in full; its size in bytes."""
    from canarino.web.auth import SESSION_COOKIE

    answer = httpx.get(base + path, cookies={SESSION_COOKIE: cookie}, timeout=120)
    if answer.status_code != 200 or marker not in answer.text:
        raise SystemExit(f"{path} answered HTTP {answer.status_code} without {marker!r}")
    return len(answer.content)


async def _inline(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a sync endpoint in the calling thread, so one profiler sees all of it."""
    return func(*args, **kwargs)


def _run_inline() -> None:
    import fastapi.dependencies.utils
    import fastapi.routing

    import canarino.web.auth

    for module in (fastapi.routing, fastapi.dependencies.utils, canarino.web.auth):
        if hasattr(module, "run_in_threadpool"):
            module.run_in_threadpool = _inline  # type: ignore[attr-defined]


def profile(ws_dir: Path, path: str, requests: int = 20) -> dict[str, Any]:
    """Where one request's time goes: SQL statements and time, and the top functions.

    The app runs in this process and this thread (endpoints inline, not in the thread
    pool), so cProfile sees the whole request; sign-in happens before the clock starts.
    """
    from sqlalchemy import event

    from canarino.settings import load_settings
    from canarino.web.app import create_app
    from canarino.web.auth import SESSION_COOKIE, SIGNIN_COOKIE
    from canarino.web.testing import PASSWORDS
    from canarino.workspace import Workspace

    _run_inline()
    ws = Workspace.open(load_settings(ws_dir))
    sql = {"count": 0, "seconds": 0.0}
    per_statement: dict[str, float] = {}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        spent = time.perf_counter() - conn.info.pop("started", time.perf_counter())
        sql["count"] += 1
        sql["seconds"] += spent
        key = " ".join(statement.split())[:200]
        per_statement[key] = per_statement.get(key, 0.0) + spent

    profiler = cProfile.Profile()

    async def run() -> float:
        transport = httpx.ASGITransport(app=create_app(ws))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            await c.get("/signin")
            await c.post(
                "/signin",
                data={
                    "username": "viewer",
                    "password": PASSWORDS["viewer"],
                    "csrf_token": c.cookies.get(SIGNIN_COOKIE, ""),
                    "next": "/",
                },
            )
            assert SESSION_COOKIE in c.cookies, "sign-in for the profile failed"
            assert (await c.get(path)).status_code == 200  # warm: templates, rules
            event.listen(ws.db.engine, "before_cursor_execute", before)
            event.listen(ws.db.engine, "after_cursor_execute", after)
            started = time.perf_counter()
            profiler.enable()
            for _ in range(requests):
                assert (await c.get(path)).status_code == 200
            profiler.disable()
            return time.perf_counter() - started

    try:
        total = asyncio.run(run())
    finally:
        ws.close()
    out = StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"canarino|jinja2|sqlalchemy/orm/session", 30)
    stats.sort_stats("tottime").print_stats(15)
    top_sql = sorted(per_statement.items(), key=lambda kv: -kv[1])[:5]
    return {
        "path": path,
        "ms_per_request": round(1000 * total / requests, 1),
        "sql_statements_per_request": round(sql["count"] / requests, 1),
        "sql_ms_per_request": round(1000 * sql["seconds"] / requests, 1),
        "slowest_sql_ms_per_request": [
            {"ms": round(1000 * s / requests, 1), "statement": q} for q, s in top_sql
        ],
        "cprofile": [line.rstrip() for line in out.getvalue().splitlines() if line.strip()],
    }


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the workspace, load the pages, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per target")
    parser.add_argument("--workers", type=int, default=2, help="canarino serve --workers")
    parser.add_argument("--rebuild", action="store_true", help="build the workspace again")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "web.json")
    args = parser.parse_args(argv)
    if args.customers < 2000:
        parser.error("--customers must be at least 2000 (the shares need French and Germans)")
    if not 1 <= args.clients <= 1000 or not 1 <= args.seconds <= 600:
        parser.error("--clients must be 1-1000 and --seconds 1-600")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be 1-16")

    cache = HERE / ".work" / f"web-c{args.customers}-g{GENERATOR}"
    ready = cache / "ready.json"
    if args.rebuild or not ready.exists():
        log(f"building a workspace with {args.customers:,} customers in {cache}…")
        meta = build(cache, args.customers)
    else:
        meta = json.loads(ready.read_text())
        log(f"reusing the workspace in {cache}")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(cache / "ws", port, args.workers, cache / "serve.log")
    rows: list[dict[str, Any]] = []
    try:
        _wait_up(base)
        cookies = [sign_in(base, role) for role in ROLES]
        incident = f"/incidents/{meta['incident_id']}"
        # The reference runs first and last: the machine's load drifts during a run.
        targets = [
            ("reference: /health", "/health", '"ok"'),
            ("overview", "/", 'data-testid="open-incidents"'),
            ("incident", incident, 'data-testid="people-count"'),
            ("reference: /health", "/health", '"ok"'),
        ]
        for name, path, marker in targets:
            size = check_page(base, path, cookies[0], marker)
            log(f"{args.clients} clients on {path} ({size:,} bytes) for {args.seconds:.0f} s…")
            row = _run(_load(port, path, cookies, args.clients, args.seconds))
            rows.append({"page": name, "bytes": size, **row})
    finally:
        stop_server(server)
    references = [r["p95_ms"] for r in rows if r["page"].startswith("reference")]
    reference = sum(references) / len(references)
    for r in rows:
        r["p95_over_reference"] = round(r["p95_ms"] / reference, 2) if reference else None

    print(
        f"\n{args.clients} clients, {args.workers} server processes, "
        f"{meta['customers']:,} customers; goal p95 < {GOAL_P95_MS:.0f} ms"
    )
    print(
        f"{'page':<20} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'p95/ref':>8} {'load':>11}  errors"
    )
    for r in rows:
        load = "→".join(f"{x:.1f}" for x in r["load_average"])
        print(
            f"{r['page']:<20} {r['requests_per_s']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} "
            f"{r['p99_ms']:>8} {r['p95_over_reference']:>8} {load:>11}  "
            f"{sum(r['errors'].values())}"
        )
    profiles = []
    print(f"p95/ref: a page's p95 over the mean p95 of the two reference runs ({reference:.1f} ms)")
    for r in rows[1:3]:
        if not r["p95_ms"] <= GOAL_P95_MS:
            log(f"{r['page']} misses p95 < {GOAL_P95_MS:.0f} ms; profiling it…")
            found = profile(cache / "ws", r["path"])
            profiles.append(found)
            print(
                f"{r['page']}: {found['ms_per_request']} ms per request alone, "
                f"{found['sql_statements_per_request']} SQL statements taking "
                f"{found['sql_ms_per_request']} ms"
            )
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "goal_p95_ms": GOAL_P95_MS,
        "clients": args.clients,
        "workers": args.workers,
        "server": "canarino serve --no-smtp --workers N (uvicorn)",
        "client": "asyncio streams, HTTP/1.1 keep-alive, one connection per client",
        "seconds_per_target": args.seconds,
        "workspace": meta,
        "pages": rows,
        "reference_p95_ms": round(reference, 1),
        "profiles": profiles,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
