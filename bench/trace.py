"""Benchmark ``trace`` on a large synthetic leak, next to DuckDB counting the same file's rows.

Usage::

    .venv/bin/python bench/trace.py                               # 1,000,000 customers and rows
    .venv/bin/python bench/trace.py --customers 20000 --rows 20000  # quick check
    .venv/bin/python bench/trace.py --formats csv                   # CSV only
    .venv/bin/python bench/trace.py --big-gb 10                     # also a 10 GB CSV

The customers are synthetic (no Faker per row: names come from small pools, e-mail addresses
and phone numbers are made unique from the row number) and enter the workspace through
``import_customers``, the path users take. A share to one vendor plants canaries; the dump
is half rows of that share's export, reformatted the way a thief's copy looks, and half
unrelated people.

The same dump is also written as NDJSON and Parquet (by DuckDB, from the CSV), and each
format is traced and counted by DuckDB. ``--big-gb N`` streams the CSV's rows over and
over into an N GB file (checking the free disk space first), traces it once and
records the peak memory; the file is deleted afterwards.

Each measured step runs in a fresh child process (``spawn``), so its peak RSS is that of
one process doing one thing: the kernel's high-water mark ``ru_maxrss`` of the child,
read by the child itself when the step is done. Module imports (scipy for the decision,
DuckDB) happen before the clock starts, for both sides.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import sys
import time
import traceback
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
GENERATOR = 2  # bump when the generated data changes, so old caches are not reused
SEED = 20261125
MAIL_DOMAIN = "canaries.bench-example.it"
PHONE_RANGE = "+3934755"
RECIPIENT = "Bench Vendor"
SHARE_FIELDS = "first_name,last_name,email,phone"
DELIMITER = ";"
MIB = 1024 * 1024

COUNTRIES = ("IT", "FR", "DE", "ES", "US")
WEIGHTS = (0.70, 0.06, 0.06, 0.06, 0.12)
LOCALES = {"IT": "it_IT", "FR": "fr_FR", "DE": "de_DE", "ES": "es_ES", "US": "en_US"}
MAIL_PROVIDERS = (
    "gmail.com",
    "libero.it",
    "hotmail.it",
    "yahoo.it",
    "outlook.com",
    "virgilio.it",
    "tiscali.it",
    "alice.it",
    "icloud.com",
    "gmx.de",
    "orange.fr",
)
# Mobile prefixes per country; no Italian 347 (the canaries' range is +39 347 55).
IT_PREFIXES = ("320", "328", "329", "333", "334", "335", "338", "339", "340", "345", "348")
# US area codes starting with neither 0, 1, 3 nor 6: a national Italian, French or Spanish
# number read as American can then never be a customer's number.
US_AREAS = ("212", "415", "202", "718", "818", "929", "972", "510", "713", "206")
PHONE_SPACE = 10_000_000  # distinct phone numbers per country the generator can make
PHONE_STEP = 7_654_321  # coprime with PHONE_SPACE: row number -> unique scrambled number
DUMP_HEADERS = {
    "first_name": "Given Name",
    "last_name": "Surname",
    "email": "Email Address",
    "phone": "Mobile",
}
EXTRA_COLUMNS = ("Town", "Created", "Order Ref")
# A fixed order unlike the export's. The date column comes after the phone column: an ISO
# date also looks like a phone number to the content classifier.
DUMP_ORDER = (
    "Order Ref",
    "Surname",
    "Given Name",
    "Mobile",
    "Email Address",
    "Town",
    "Created",
)
CUSTOMER_HEADERS = (
    "codice cliente",
    "nome",
    "cognome",
    "e-mail",
    "cellulare",
    "città",
    "provincia",
    "paese",
    "data di nascita",
)


# --- synthetic people -------------------------------------------------------------------


@dataclass
class Pools:
    """Names and places per country, drawn once from Faker."""

    first: dict[str, list[str]]
    last: dict[str, list[str]]
    city: dict[str, list[str]]
    region: dict[str, list[str]]


def make_pools(seed: int) -> Pools:
    from faker import Faker

    first: dict[str, list[str]] = {}
    last: dict[str, list[str]] = {}
    city: dict[str, list[str]] = {}
    region: dict[str, list[str]] = {}
    for country in COUNTRIES:
        fake = Faker(LOCALES[country])
        fake.seed_instance(seed)
        first[country] = sorted({fake.first_name() for _ in range(400)})
        last[country] = sorted({fake.last_name() for _ in range(400)})
        city[country] = sorted({fake.city() for _ in range(200)})
        if country in ("IT", "US"):
            region[country] = sorted({fake.state_abbr() for _ in range(200)})
        else:
            region[country] = sorted({fake.administrative_unit() for _ in range(200)})
    return Pools(first, last, city, region)


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())


def phone_e164(country: str, number: int) -> str:
    """The ``number``-th phone (0 <= number < PHONE_SPACE) of ``country``, unique per pair."""
    u = (number * PHONE_STEP) % PHONE_SPACE
    if country == "IT":
        return f"+39{IT_PREFIXES[u % len(IT_PREFIXES)]}{u // len(IT_PREFIXES):07d}"
    if country == "FR":
        return f"+336{u:08d}"
    if country == "DE":
        return f"+49151{u:08d}"
    if country == "ES":
        return f"+346{u:08d}"
    return f"+1{US_AREAS[u // 1_000_000]}5{u % 1_000_000:06d}"


@dataclass
class People:
    """Columns of synthetic people, one list per field."""

    country: list[str]
    first: list[str]
    last: list[str]
    email: list[str]
    phone: list[str]
    city: list[str]
    region: list[str]


def make_people(
    pools: Pools, start: int, n: int, rng: np.random.Generator, *, noise: bool
) -> People:
    """``n`` people numbered from ``start``; ``noise`` people use another e-mail pattern."""
    idx = rng.choice(len(COUNTRIES), size=n, p=WEIGHTS)
    country = [COUNTRIES[i] for i in idx]
    first, last, city, region = [""] * n, [""] * n, [""] * n, [""] * n
    for ci, c in enumerate(COUNTRIES):
        rows = np.flatnonzero(idx == ci)
        for target, pool in (
            (first, pools.first[c]),
            (last, pools.last[c]),
            (city, pools.city[c]),
            (region, pools.region[c]),
        ):
            picks = rng.integers(len(pool), size=rows.size)
            for r, p in zip(rows.tolist(), picks.tolist(), strict=True):
                target[r] = pool[p]
    providers = rng.integers(len(MAIL_PROVIDERS), size=n).tolist()
    email, phone = [], []
    for k in range(n):
        number = start + k
        f, la = _ascii(first[k]) or "x", _ascii(last[k]) or "y"
        local = f"{f}_{la}.{number}" if noise else f"{f}.{la}{number}"
        email.append(f"{local}@{MAIL_PROVIDERS[providers[k]]}")
        phone.append(phone_e164(country[k], number))
    return People(country, first, last, email, phone, city, region)


def write_customers(path: Path, people: People, rng: np.random.Generator) -> None:
    born = rng.integers(0, 72 * 365, size=len(people.email)).tolist()
    base = date(1935, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(CUSTOMER_HEADERS)
        for k in range(len(people.email)):
            writer.writerow(
                (
                    f"C{k:08d}",
                    people.first[k],
                    people.last[k],
                    people.email[k],
                    people.phone[k],
                    people.city[k],
                    people.region[k],
                    people.country[k],
                    (base + timedelta(days=born[k])).isoformat(),
                )
            )


_CODES = (("+39", "IT"), ("+33", "FR"), ("+49", "DE"), ("+34", "ES"), ("+1", "US"))


def reformat_phone(e164: str, style: int) -> str:
    """``e164`` written the way people write phones: national, spaced, 00-prefixed…."""
    found = next(((c, k) for c, k in _CODES if e164.startswith(c)), None)
    if found is None:
        return e164
    code, country = found
    nsn = e164[len(code) :]
    if country == "IT":
        national = spaced = f"{nsn[:3]} {nsn[3:6]} {nsn[6:]}"
    elif country == "FR":
        spaced = f"{nsn[0]} {nsn[1:3]} {nsn[3:5]} {nsn[5:7]} {nsn[7:]}"
        national = "0" + spaced
    elif country == "DE":
        spaced = f"{nsn[:3]} {nsn[3:]}"
        national = "0" + spaced
    elif country == "ES":
        national = spaced = f"{nsn[:3]} {nsn[3:5]} {nsn[5:7]} {nsn[7:]}"
    else:
        spaced = f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}"
        national = f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}"
    if style == 0:
        return national
    if style == 1:
        return f"{code} {spaced}"
    if style == 2:
        return "00" + e164[1:]
    if style == 3:
        return e164
    return national.replace(" ", "").replace("(", "").replace(")", "").replace("-", "")


def write_dump(
    export: Path, out: Path, rows: int, pools: Pools, start: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Half rows of the share's export, half unrelated people, reformatted; return facts.

    Of the leaked rows one in ten lost its e-mail and one in ten its phone, so the check
    at the end fails unless phones and e-mails are both matched.
    """
    with export.open(encoding="utf-8", newline="") as fp:
        reader = csv.reader(fp)
        header = next(reader)
        exported = list(reader)
    email_at, phone_at = header.index("email"), header.index("phone")
    leaked = round(rows * 0.5)
    picks = rng.choice(len(exported), size=leaked, replace=leaked > len(exported)).tolist()
    body = [list(exported[i]) for i in picks]
    planted = {i for i, r in enumerate(exported) if r[email_at].endswith("@" + MAIL_DOMAIN)}
    distinct = set(picks)
    canaries = len(distinct & planted)
    # Canaries sharing a phone number or address with another canary of the share: a row
    # of one of them may match the other instead, or as well.
    seen = Counter(v for i in planted for v in (exported[i][email_at], exported[i][phone_at]))
    shared = sum(
        1 for i in planted if seen[exported[i][email_at]] > 1 or seen[exported[i][phone_at]] > 1
    )
    del exported
    for row, r in zip(body, rng.random(leaked).tolist(), strict=True):
        if r < 0.1:
            row[email_at] = ""
        elif r < 0.2:
            row[phone_at] = ""
    noise = make_people(pools, start, rows - leaked, rng, noise=True)
    for k in range(rows - leaked):
        body.append([getattr(noise, _PEOPLE_ATTR[h])[k] for h in header])
    del noise
    names = [DUMP_HEADERS[h] for h in header] + [*EXTRA_COLUMNS]
    columns = [names.index(h) for h in DUMP_ORDER]
    order = rng.permutation(len(body)).tolist()
    styles = rng.integers(5, size=len(body)).tolist()
    upper = (rng.random(len(body)) < 0.3).tolist()
    towns = pools.city["IT"] + pools.city["FR"]
    town = rng.integers(len(towns), size=len(body)).tolist()
    days = rng.integers(0, 3 * 365, size=len(body)).tolist()
    created = date(2023, 1, 1)
    with out.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp, delimiter=DELIMITER)
        writer.writerow(DUMP_ORDER)
        for n, k in enumerate(order):
            row = body[k]
            row[phone_at] = reformat_phone(row[phone_at], styles[n])
            if upper[n]:
                row[email_at] = row[email_at].upper()
            row += [
                towns[town[n]],
                (created + timedelta(days=days[n])).isoformat(),
                f"ORD-{n:09d}",
            ]
            writer.writerow([row[c] for c in columns])
    return {
        "rows": rows,
        "leaked_rows": leaked,
        "unrelated_rows": rows - leaked,
        "expected_customers": len(distinct) - canaries,
        "expected_canaries": canaries,
        "canaries_sharing_an_identifier": shared,
        "size_bytes": out.stat().st_size,
    }


_PEOPLE_ATTR = {"first_name": "first", "last_name": "last", "email": "email", "phone": "phone"}


# --- steps, each run in a fresh child process ------------------------------------------


def _peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _current_rss() -> int:
    with open("/proc/self/statm") as fp:
        return int(fp.read().split()[1]) * resource.getpagesize()


def _open(ws_dir: str) -> Any:
    """Open the workspace, first bringing its schema up to date (as ``canarino init`` does)."""
    from canarino.workspace import init_workspace

    return init_workspace(Path(ws_dir), mail_domains=[MAIL_DOMAIN], phone_ranges=[PHONE_RANGE])


TRACE_MODULES = (
    "trace",
    "index",
    "columnhash",
    "scope",
    "normalize",
    "recognition",
    "attribution",
    "store",
    "models",
    "sources.base",
    "sources.csv",
    "sources.ndjson",
    "sources.parquet",
)
FORMATS = ("csv", "ndjson", "parquet")
GB = 10**9


def _code_version() -> str:
    """A short fingerprint of the canarino modules on the trace path."""
    import importlib

    digest = hashlib.sha256()
    for name in TRACE_MODULES:
        module = importlib.import_module(f"canarino.{name}")
        digest.update(name.encode() + b"\0" + Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def _children_cpu() -> float:
    """CPU seconds of the worker processes this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def step_import(ws_dir: str, csv_path: str) -> dict[str, Any]:
    from canarino.customers import import_customers

    ws = _open(ws_dir)
    started = time.perf_counter()
    report = import_customers(ws, Path(csv_path))
    seconds = time.perf_counter() - started
    ws.close()
    return {
        "seconds": seconds,
        "rows": report.rows,
        "imported": report.imported,
        "problems": len(report.problems),
    }


def step_share(ws_dir: str, out_path: str) -> dict[str, Any]:
    from canarino.recipients import add_recipient
    from canarino.shares import create_share

    ws = _open(ws_dir)
    add_recipient(ws, RECIPIENT, "vendor")
    started = time.perf_counter()
    result = create_share(ws, RECIPIENT, SHARE_FIELDS, Path(out_path))
    seconds = time.perf_counter() - started
    ws.close()
    return {"seconds": seconds, "customers": result.customers, "canaries": result.canaries}


class _PssSampler:
    """The largest sum of proportional set sizes (PSS) of process ``pid`` and its children.

    The trace's worker processes share the index and libraries with it since the fork;
    PSS counts each shared page once, split among the processes using it, so the sum is
    the memory the trace as a whole holds. Sampled every 0.5 s from the benchmark's own
    process, so reading the kernel's figures costs the measured process nothing.
    """

    def __init__(self, pid: int) -> None:
        import threading

        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            try:
                step = psutil.Process(self.pid)
                family = [step, *step.children(recursive=True)]
            except psutil.Error:
                continue
            self.peak = max(self.peak, sum(_pss(proc.pid) for proc in family))


def _pss(pid: int) -> int:
    """Proportional set size of process ``pid`` in bytes (0 once it has gone).

    ``smaps_rollup`` is the kernel's own sum: reading it costs a fraction of walking
    ``smaps``, so sampling does not slow the trace it measures.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fp:
            for line in fp:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def step_trace(ws_dir: str, dump_path: str, profile_path: str = "") -> dict[str, Any]:
    from scipy import stats  # noqa: F401  (imported lazily by the decision; not timed)

    from canarino.trace import run_trace
    from canarino.workspace import open_workspace

    code = _code_version()
    ws = open_workspace(Path(ws_dir))  # as ``canarino trace`` does; run_step("upgrade") first
    rss_before = _current_rss()
    load_before = os.getloadavg()[0]
    cpu = time.process_time() + _children_cpu()
    started = time.perf_counter()
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        report = profiler.runcall(run_trace, ws, Path(dump_path))
        profiler.dump_stats(profile_path)
    else:
        report = run_trace(ws, Path(dump_path))
    seconds = time.perf_counter() - started
    cpu = time.process_time() + _children_cpu() - cpu
    ws.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_average": [load_before, os.getloadavg()[0]],
        "rss_before_bytes": rss_before,
        "rows_read": report.rows_read,
        "size_bytes": report.size_bytes,
        "customers_matched": report.customers_matched,
        "canaries_matched": report.canaries_matched,
        "top_suspect": getattr(report.suspects[0], "recipient", None) if report.suspects else None,
        "code": code,
    }


def step_upgrade(ws_dir: str) -> dict[str, Any]:
    """Bring a workspace to the current schema and its pseudonym index file up to date.

    Imports and shares keep the index file current; a workspace generated by older code
    gets it here, timed, outside the trace's figures.
    """
    from canarino.index import refresh_index

    ws = _open(ws_dir)
    try:
        start = time.perf_counter()
        count = refresh_index(ws)
        return {"index_seconds": time.perf_counter() - start, "pseudonyms": count}
    finally:
        ws.close()


def _reader(path: str) -> str:
    """DuckDB's reader for a dump file, chosen by its suffix."""
    quoted = path.replace("'", "''")
    if path.endswith(".ndjson"):
        return f"read_json('{quoted}', format='newline_delimited', columns={_JSON_COLUMNS})"
    if path.endswith(".parquet"):
        return f"read_parquet('{quoted}')"
    return f"read_csv('{quoted}', delim='{DELIMITER}', header=true, all_varchar=true)"


_JSON_COLUMNS = "{" + ", ".join(f"'{h}': 'VARCHAR'" for h in DUMP_ORDER) + "}"


def step_duckdb(dump_path: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    query = f"SELECT count(*) FROM {_reader(dump_path)}"
    cpu = time.process_time()
    started = time.perf_counter()
    row = con.execute(query).fetchone()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    con.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": int(row[0]) if row else 0,
        "threads": int(threads[0]) if threads else None,
        "version": duckdb.__version__,
    }


def step_convert(csv_path: str, out_path: str) -> dict[str, Any]:
    """Write the CSV dump as NDJSON or Parquet, same rows in the same order."""
    import duckdb

    con = duckdb.connect()
    fmt = "PARQUET" if out_path.endswith(".parquet") else "JSON"
    target = out_path.replace("'", "''")
    started = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM {_reader(csv_path)}) TO '{target}' (FORMAT {fmt})")
    con.close()
    return {"seconds": time.perf_counter() - started, "size_bytes": Path(out_path).stat().st_size}


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "import": step_import,
    "share": step_share,
    "upgrade": step_upgrade,
    "trace": step_trace,
    "duckdb": step_duckdb,
    "convert": step_convert,
}


def _child_main(conn: Connection, name: str, args: Sequence[str]) -> None:
    try:
        result = STEPS[name](*args)
        result["peak_rss_bytes"] = _peak_rss()
        # Worker processes the step forked and waited for (the largest one's peak).
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result["peak_rss_children_bytes"] = (
            children if sys.platform == "darwin" else children * 1024
        )
        conn.send(("ok", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_step(name: str, *args: str) -> dict[str, Any]:
    """Run step ``name`` in a fresh interpreter and return its figures and peak RSS."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child, name, args))
    proc.start()
    child.close()
    assert proc.pid is not None
    with _PssSampler(proc.pid) as pss:
        try:
            status, payload = parent.recv()
        except EOFError:
            status, payload = "error", f"the {name} process died (exit code {proc.exitcode})"
    proc.join()
    if status != "ok":
        raise SystemExit(f"step {name} failed:\n{payload}")
    payload["peak_pss_total_bytes"] = pss.peak
    return payload


# --- the benchmark ------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def build(cache: Path, customers: int, rows: int) -> dict[str, Any]:
    """Generate the workspace, share and dump into ``cache``; return what was measured."""
    from canarino.workspace import init_workspace

    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    meta: dict[str, Any] = {"customers": customers, "rows": rows, "generator": GENERATOR}

    started = time.perf_counter()
    pools = make_pools(SEED)
    people = make_people(pools, 0, customers, rng, noise=False)
    customers_csv = cache / "customers.csv"
    write_customers(customers_csv, people, rng)
    del people
    meta["customers_csv"] = {
        "seconds": time.perf_counter() - started,
        "size_bytes": customers_csv.stat().st_size,
    }
    log(f"customers file written in {meta['customers_csv']['seconds']:.1f} s")

    ws = init_workspace(cache / "ws", mail_domains=[MAIL_DOMAIN], phone_ranges=[PHONE_RANGE])
    ws.close()
    log("importing customers (import_customers)…")
    meta["import"] = run_step("import", str(cache / "ws"), str(customers_csv))
    log(f"imported {meta['import']['imported']:,} customers in {meta['import']['seconds']:.1f} s")
    if meta["import"]["problems"]:
        raise SystemExit(f"import skipped {meta['import']['problems']} rows; fix the generator")

    log("creating the share (create_share)…")
    export = cache / "export.csv"
    meta["share"] = run_step("share", str(cache / "ws"), str(export))
    log(f"share with {meta['share']['canaries']} canaries in {meta['share']['seconds']:.1f} s")

    started = time.perf_counter()
    meta["dump"] = write_dump(export, cache / "dump.csv", rows, pools, customers, rng)
    meta["dump"]["seconds"] = time.perf_counter() - started
    log(f"dump written in {meta['dump']['seconds']:.1f} s")
    customers_csv.unlink()
    (cache / "ready.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def dump_file(cache: Path, fmt: str) -> Path:
    """The cached dump in ``fmt``, converted from the CSV on first use."""
    path = cache / f"dump.{fmt}"
    if not path.exists():
        log(f"writing the dump as {fmt}…")
        partial = cache / f"partial.{fmt}"
        run_step("convert", str(cache / "dump.csv"), str(partial))
        partial.rename(path)
    return path


def write_big(csv_path: Path, out: Path, size: int) -> int:
    """Repeat the data rows of ``csv_path`` into ``out`` until it holds ``size`` bytes.

    Streams in 8 MiB blocks, so memory stays flat; returns how many times the rows were
    written (the last copy may stop at a row boundary short of the whole).
    """
    with csv_path.open("rb") as fp:
        header = fp.readline()
        start = fp.tell()
    copies = 0
    with out.open("wb") as dst:
        dst.write(header)
        while dst.tell() < size:
            with csv_path.open("rb") as src:
                src.seek(start)
                while block := src.read(8 * MIB):
                    dst.write(block)
            copies += 1
    return copies


def trace_rounds(
    args: argparse.Namespace, cache: Path, dump: Path, label: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Time DuckDB's count and the trace of ``dump`` ``--repeat`` times."""
    traces: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    run_dir = args.workdir / f"run-{os.getpid()}"
    for i in range(args.repeat):
        log(f"{label} round {i + 1}/{args.repeat}: DuckDB count…")
        counts.append(run_step("duckdb", str(dump)))
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(cache / "ws", run_dir)
        # The copy's pages are still waiting to be written; the trace's first fsync would
        # pay for writing the whole copied database, which no real workspace does.
        os.sync()
        run_step("upgrade", str(run_dir))
        log(f"{label} round {i + 1}/{args.repeat}: trace…")
        profile = str(args.profile) if args.profile and i == 0 and label == "csv" else ""
        traces.append(run_step("trace", str(run_dir), str(dump), profile))
        log(
            f"{label}: trace {traces[-1]['seconds']:.1f} s, DuckDB {counts[-1]['seconds']:.2f} s, "
            f"trace peak RSS {traces[-1]['peak_rss_bytes'] / MIB:,.0f} MiB"
        )
        if not args.keep or i + 1 < args.repeat:
            shutil.rmtree(run_dir)
    return traces, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers to import")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the leaked dump")
    parser.add_argument(
        "--workdir", type=Path, default=HERE / ".work", help="where generated data is cached"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the traced copy of the workspace (with the stored trace) after the run",
    )
    parser.add_argument("--repeat", type=int, default=1, help="time trace and DuckDB N times")
    parser.add_argument("--profile", type=Path, help="also write a cProfile of one CSV trace here")
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"dump formats to trace, comma-separated (default: {','.join(FORMATS)})",
    )
    parser.add_argument(
        "--big-gb",
        type=float,
        default=0,
        help="also trace a CSV of this many GB made by repeating the dump (0: skip)",
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results" / "trace.json", help="results file"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.customers < 100 or args.rows < 100:
        parser.error("--customers and --rows must be at least 100")
    if args.customers + args.rows > PHONE_SPACE:
        parser.error(f"--customers plus --rows must stay under {PHONE_SPACE:,}")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--formats takes some of {', '.join(FORMATS)}")
    if not 0 <= args.big_gb <= 100:
        parser.error("--big-gb must be between 0 and 100")

    cache = args.workdir / f"c{args.customers}-r{args.rows}-g{GENERATOR}"
    ready = cache / "ready.json"
    if ready.exists():
        meta = json.loads(ready.read_text())
        log(f"reusing generated data in {cache}")
        cached = True
    else:
        log(f"generating {args.customers:,} customers and a {args.rows:,}-row dump in {cache}")
        meta = build(cache, args.customers, args.rows)
        cached = False

    prepared = run_step("upgrade", str(cache / "ws"))
    log(
        f"pseudonym index file up to date ({prepared['pseudonyms']:,} pseudonyms, "
        f"{prepared['index_seconds']:.1f} s)"
    )
    per_format: dict[str, Any] = {}
    for fmt in formats:
        dump = dump_file(cache, fmt)
        traces, counts = trace_rounds(args, cache, dump, fmt)
        per_format[fmt] = summarise_format(meta, dump, traces, counts)
    big = run_big(args, cache, meta) if args.big_gb else None

    results = summarise(args, meta, cached, per_format, big)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    show(results)
    print(f"results written to {args.output}")
    if args.keep:
        print(f"traced workspace kept in {args.workdir / f'run-{os.getpid()}'}")
    return 0 if results["check"]["ok"] else 1


def run_big(args: argparse.Namespace, cache: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Trace one CSV of ``--big-gb`` GB made of the dump's rows; report time and memory."""
    size = int(args.big_gb * GB)
    free = shutil.disk_usage(args.workdir).free
    if free < size + 2 * GB:
        raise SystemExit(
            f"--big-gb {args.big_gb:g} needs {size / GB + 2:,.1f} GB free in {args.workdir}, "
            f"there are {free / GB:,.1f} GB; choose a smaller size"
        )
    big = args.workdir / "big.csv"
    log(f"writing a {size / GB:,.1f} GB CSV…")
    started = time.perf_counter()
    copies = write_big(cache / "dump.csv", big, size)
    written = time.perf_counter() - started
    try:
        rows = meta["dump"]["rows"] * copies
        run_dir = args.workdir / f"run-{os.getpid()}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(cache / "ws", run_dir)
        os.sync()
        run_step("upgrade", str(run_dir))
        log(f"tracing {big.stat().st_size / GB:,.1f} GB ({rows:,} rows)…")
        trace = run_step("trace", str(run_dir), str(big))
        log(
            f"big trace {trace['seconds']:.0f} s, peak RSS {trace['peak_rss_bytes'] / MIB:,.0f} MiB"
        )
        shutil.rmtree(run_dir)
        size_bytes = big.stat().st_size
    finally:
        big.unlink(missing_ok=True)
    return {
        "size_bytes": size_bytes,
        "rows": rows,
        "copies_of_dump": copies,
        "write_seconds": written,
        "seconds": trace["seconds"],
        "cpu_seconds": trace["cpu_seconds"],
        "load_average": trace["load_average"],
        "rows_per_second": _rate(rows, trace["seconds"]),
        "mb_per_second": _rate(size_bytes / 1e6, trace["seconds"]),
        "peak_rss_bytes": trace["peak_rss_bytes"],
        "peak_rss_worker_bytes": trace.get("peak_rss_children_bytes", 0),
        "peak_pss_total_bytes": trace.get("peak_pss_total_bytes", 0),
        # Every process under the bound, and all of them together (summed PSS).
        "under_1_5gb": max(
            trace["peak_rss_bytes"],
            trace.get("peak_rss_children_bytes", 0),
            trace.get("peak_pss_total_bytes", 0),
        )
        < 1.5 * GB,
        "rows_read": trace["rows_read"],
        "customers_matched": trace["customers_matched"],
        "ok": trace["rows_read"] == rows
        and trace["customers_matched"] == meta["dump"]["expected_customers"],
    }


def summarise_format(
    meta: dict[str, Any], dump: Path, traces: list[dict[str, Any]], counts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Times, rates, memory and the correctness check of one dump format."""
    expected = meta["dump"]
    size = dump.stat().st_size
    rows = expected["rows"]
    t = statistics.median(r["seconds"] for r in traces)
    d = statistics.median(r["seconds"] for r in counts)
    t_cpu = statistics.median(r["cpu_seconds"] for r in traces)
    d_cpu = statistics.median(r["cpu_seconds"] for r in counts)
    last = traces[-1]
    check = {
        "rows_read": last["rows_read"],
        "duckdb_rows": counts[-1]["rows"],
        "customers_matched": last["customers_matched"],
        "expected_customers": expected["expected_customers"],
        "canaries_matched": last["canaries_matched"],
        "expected_canaries": expected["expected_canaries"],
        "canaries_sharing_an_identifier": expected["canaries_sharing_an_identifier"],
        "top_suspect": last["top_suspect"],
    }
    check["ok"] = (
        last["rows_read"] == rows == counts[-1]["rows"]
        and last["customers_matched"] == expected["expected_customers"]
        and abs(last["canaries_matched"] - expected["expected_canaries"])
        <= expected["canaries_sharing_an_identifier"]
        and (expected["expected_canaries"] == 0 or last["top_suspect"] == RECIPIENT)
    )
    peak = max(r["peak_rss_bytes"] for r in traces)
    return {
        "dump_bytes": size,
        "trace": {
            "seconds_median": t,
            "seconds_all": [r["seconds"] for r in traces],
            "cpu_seconds_median": t_cpu,
            "rows_per_second": _rate(rows, t),
            "load_average": [r.get("load_average") for r in traces],
            "mb_per_second": _rate(size / 1e6, t),
            "peak_rss_bytes": peak,
            "peak_rss_worker_bytes": max(r.get("peak_rss_children_bytes", 0) for r in traces),
            "peak_pss_total_bytes": max(r.get("peak_pss_total_bytes", 0) for r in traces),
            "rss_before_bytes": max(r["rss_before_bytes"] for r in traces),
            "under_1gb": max(
                peak,
                max(r.get("peak_rss_children_bytes", 0) for r in traces),
                max(r.get("peak_pss_total_bytes", 0) for r in traces),
            )
            < 1 << 30,
        },
        "duckdb_count": {
            "seconds_median": d,
            "seconds_all": [r["seconds"] for r in counts],
            "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in counts),
            "rows_per_second": _rate(rows, d),
            "mb_per_second": _rate(size / 1e6, d),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in counts),
            "threads": counts[-1]["threads"],
            "version": counts[-1]["version"],
        },
        "ratio_trace_to_duckdb": t / d if d > 0 else None,
        "ratio_cpu_trace_to_duckdb": t_cpu / d_cpu if d_cpu > 0 else None,
        "canarino_code": sorted({r["code"] for r in traces}),
        "check": check,
    }


def summarise(
    args: argparse.Namespace,
    meta: dict[str, Any],
    cached: bool,
    per_format: dict[str, Any],
    big: dict[str, Any] | None,
) -> dict[str, Any]:
    import pyarrow

    main_fmt = per_format.get("csv") or next(iter(per_format.values()))
    imp = meta["import"]
    return {
        "benchmark": "trace",
        "date": date.today().isoformat(),
        "machine": {
            "cpus": mp.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pyarrow": pyarrow.__version__,
            "duckdb": main_fmt["duckdb_count"]["version"],
            "duckdb_threads": main_fmt["duckdb_count"]["threads"],
            "load_average_at_end": os.getloadavg()[0],
        },
        "customers": meta["customers"],
        "rows": meta["dump"]["rows"],
        "dump_bytes": main_fmt["dump_bytes"],
        "bytes_per_row": main_fmt["dump_bytes"] / meta["dump"]["rows"],
        "repeat": args.repeat,
        "canarino_code": sorted({c for f in per_format.values() for c in f["canarino_code"]}),
        "generated_this_run": not cached,
        # The first format's figures (CSV when traced) stay at the top level, as before.
        "trace": main_fmt["trace"],
        "duckdb_count": main_fmt["duckdb_count"],
        "ratio_trace_to_duckdb": main_fmt["ratio_trace_to_duckdb"],
        "ratio_cpu_trace_to_duckdb": main_fmt["ratio_cpu_trace_to_duckdb"],
        "formats": per_format,
        "big": big,
        "import": {
            "seconds": imp["seconds"],
            "rows": imp["rows"],
            "rows_per_second": _rate(imp["rows"], imp["seconds"]),
            "peak_rss_bytes": imp["peak_rss_bytes"],
            "measured_when_generated": True,
        },
        "share": {
            "seconds": meta["share"]["seconds"],
            "customers": meta["share"]["customers"],
            "canaries": meta["share"]["canaries"],
            "rows_per_second": _rate(meta["share"]["customers"], meta["share"]["seconds"]),
            "peak_rss_bytes": meta["share"]["peak_rss_bytes"],
        },
        "check": {
            **main_fmt["check"],
            "ok": all(f["check"]["ok"] for f in per_format.values()) and (big is None or big["ok"]),
        },
    }


def show(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    imp, sh = results["import"], results["share"]
    table = Table(
        title=(
            f"trace: {results['customers']:,} customers, {results['rows']:,}-row dump, "
            f"median of {results['repeat']}"
        )
    )
    for name in ("step", "MB", "seconds", "min-max", "CPU s", "rows/s", "MB/s", "peak RSS"):
        table.add_column(name, justify="left" if name == "step" else "right")
    for fmt, f in results["formats"].items():
        for label, r in (
            (f"trace {fmt}", f["trace"]),
            (f"DuckDB count(*) {fmt}", f["duckdb_count"]),
        ):
            table.add_row(
                label,
                f"{f['dump_bytes'] / 1e6:,.1f}",
                f"{r['seconds_median']:,.2f}",
                f"{min(r['seconds_all']):,.2f}-{max(r['seconds_all']):,.2f}",
                f"{r['cpu_seconds_median']:,.2f}",
                f"{r['rows_per_second']:,.0f}",
                f"{r['mb_per_second']:,.1f}",
                f"{r['peak_rss_bytes'] / MIB:,.0f} MiB",
            )
        ratio, ratio_cpu = f["ratio_trace_to_duckdb"], f["ratio_cpu_trace_to_duckdb"]
        table.add_row(
            f"trace / DuckDB {fmt}",
            "",
            f"{ratio:,.1f}×" if ratio else "n/a",
            "",
            f"{ratio_cpu:,.1f}×" if ratio_cpu else "n/a",
        )
        table.add_section()
    big = results.get("big")
    if big:
        table.add_row(
            f"trace {big['size_bytes'] / 1e9:,.1f} GB CSV",
            f"{big['size_bytes'] / 1e6:,.0f}",
            f"{big['seconds']:,.0f}",
            "",
            f"{big['cpu_seconds']:,.0f}",
            f"{big['rows_per_second']:,.0f}",
            f"{big['mb_per_second']:,.1f}",
            f"{big['peak_rss_bytes'] / MIB:,.0f} MiB",
        )
        table.add_section()
    for label, r in (
        ("import_customers", imp),
        ("create_share", sh),
    ):
        table.add_row(
            label,
            "",
            f"{r['seconds']:,.1f}",
            "",
            "",
            f"{r['rows_per_second']:,.0f}",
            "",
            f"{r['peak_rss_bytes'] / MIB:,.0f} MiB",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(table)
    tr = results["trace"]
    check = results["check"]
    console.print(
        f"trace RSS before run_trace: {tr['rss_before_bytes'] / MIB:,.0f} MiB; "
        f"CSV trace's peak under 1 GiB (every process, and all together): "
        f"{'yes' if tr['under_1gb'] else 'NO'}; "
        f"DuckDB ran on {results['machine']['duckdb_threads']} threads; "
        f"load average at the end {results['machine']['load_average_at_end']:.1f}; "
        f"the share holds {sh['customers']:,} customers and {sh['canaries']} canaries"
    )
    if big:
        console.print(
            f"big CSV: {big['rows_read']:,} rows read, {big['customers_matched']:,} customers; "
            f"peak under 1.5 GB: {'yes' if big['under_1_5gb'] else 'NO'} (trace process "
            f"{big['peak_rss_bytes'] / MIB:,.0f} MiB, largest worker "
            f"{big['peak_rss_worker_bytes'] / MIB:,.0f} MiB, all together "
            f"{big['peak_pss_total_bytes'] / MIB:,.0f} MiB summed PSS)"
        )
    if len(results["canarino_code"]) > 1:
        console.print("[bold red]the canarino sources changed between rounds[/]")
    for fmt, f in results["formats"].items():
        c = f["check"]
        console.print(
            f"check {fmt}: {c['customers_matched']:,}/{c['expected_customers']:,} customers, "
            f"{c['canaries_matched']}/{c['expected_canaries']} canaries "
            f"({c['canaries_sharing_an_identifier']} share a phone or address), "
            f"top suspect {c['top_suspect']!r}: {'ok' if c['ok'] else 'MISMATCH'}"
        )
    console.print(f"all checks: {'ok' if check['ok'] else 'MISMATCH'}")


if __name__ == "__main__":
    sys.exit(main())
