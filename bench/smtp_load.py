"""Load on the inbound SMTP listener: 1,000 messages a minute for 5 minutes, over loopback.

Usage::

    .venv/bin/python bench/smtp_load.py                        # 1,000/min for 5 minutes
    .venv/bin/python bench/smtp_load.py --rate 600 --minutes 1 # quick check

A workspace is made in a temporary folder (400 generated customers, two vendors, their
shares and canaries). The listener runs in this process, as ``canarino serve`` runs it;
the sender runs in a child process so it does not compete for the GIL. It paces
messages on a fixed schedule over ``--connections`` SMTP connections, half to canary
addresses (each message different: a numbered phishing template with links and an
HTML part) and half to unknown addresses on the monitored domains (refused at RCPT and
counted as noise). A message deferred with a 4xx reply is retried after a second, as a
real sender would. The run is bounded: it stops after ``--minutes`` whatever happens.

Checks and figures:

- lost: every canary message the listener accepted (250) must be a stored sighting with
  its raw message, and every message to an unknown address must be in the noise count;
  ``lost`` counts the difference and must be 0;
- accept latency: from MAIL FROM to the reply after the data (250, or the RCPT refusal
  for unknown addresses), p50 and p99, per kind;
- memory: the RSS of this process (psutil) sampled every 10 s; "flat" means the last
  minute's highest sample is within 10% of the first minute's highest;
- the reference: the same sender and schedule against a bare aiosmtpd server in the same
  process that stores nothing (``--reference-minutes``, 1 by default); the table gives
  canarino's latencies as a ratio of the reference's.

Results go to ``bench/results/smtp_load.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOMAINS = ["clienti-posta.it", "servizio-mail.eu"]
RSS_EVERY = 10.0


# --- the sender (child process) ---------------------------------------------------------


def _message(n: int, to: str, name: str) -> bytes:
    body = (
        f"Gentile {name},\r\n\r\nla sua pratica n. {100000 + n} risulta sospesa per una "
        "verifica di sicurezza. Per evitare il blocco del conto confermi i suoi dati entro "
        f"24 ore: https://verifica-{n % 7}.phish.example/login?id={n}\r\n\r\nServizio clienti\r\n"
    )
    html = body.replace("\r\n", "<br>\r\n")
    boundary = f"b{n:08d}"
    return (
        f"From: Servizio Clienti <assistenza@phish-{n % 5}.example>\r\n"
        f"To: {to}\r\nSubject: Pratica {100000 + n} sospesa\r\n"
        f"Message-ID: <{n}.{time.time_ns()}@phish.example>\r\n"
        f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>{html}"
        f"</body></html>\r\n--{boundary}--\r\n"
    ).encode()


def _send_one(client: smtplib.SMTP, to: str, data: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        client.sendmail("bounce@phish.example", [to], data)
        code = 250
    except smtplib.SMTPRecipientsRefused as exc:
        code = exc.recipients[to][0]
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        client.rset()
    return code, time.perf_counter() - start


def sender(
    port: int,
    canaries: list[tuple[str, str]],
    others: list[str],
    rate: float,
    seconds: float,
    connections: int,
    result: Any,
) -> None:
    """Send on a fixed schedule; report (kind, final code, latency, attempts) per message."""
    total = int(rate * seconds / 60)
    interval = 60.0 / rate
    t0 = time.perf_counter() + 0.5
    deadline = t0 + seconds + 120  # bounded even if the server stalls
    records: list[tuple[str, int, float, int]] = []
    late: list[float] = []
    lock = threading.Lock()

    def work(lane: int) -> None:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        client.ehlo("load.example")
        for n in range(lane, total, connections):
            due = t0 + n * interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if time.perf_counter() > deadline:
                break
            if n % 2 == 0:
                kind, (to, name) = "canary", canaries[(n // 2) % len(canaries)]
            else:
                kind, to, name = "other", others[(n // 2) % len(others)], "Cliente"
            data = _message(n, to, name)
            attempts = 0
            while True:
                attempts += 1
                try:
                    code, latency = _send_one(client, to, data)
                except (smtplib.SMTPServerDisconnected, OSError):
                    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    client.ehlo("load.example")
                    code, latency = 421, 0.0
                if code < 400 or code >= 500 or attempts >= 5 or time.perf_counter() > deadline:
                    break
                time.sleep(1.0)  # a 4xx: retry later, like a real sender
            with lock:
                records.append((kind, code, latency, attempts))
                late.append(max(0.0, time.perf_counter() - latency - due))
        with contextlib.suppress(smtplib.SMTPException):
            client.quit()

    threads = [threading.Thread(target=work, args=(lane,)) for lane in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.put({"records": records, "late_max": max(late, default=0.0), "planned": total})


def _run_sender(
    port: int,
    canaries: list[tuple[str, str]],
    others: list[str],
    args: argparse.Namespace,
    seconds: float,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=sender, args=(port, canaries, others, args.rate, seconds, args.connections, queue)
    )
    proc.start()
    out = queue.get(timeout=seconds + 300)
    proc.join(30)
    return out


# --- memory sampling --------------------------------------------------------------------


class RssSampler:
    """Samples this process's RSS every ``RSS_EVERY`` seconds in a thread."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - start, self._proc.memory_info().rss))
            if self._stop.wait(RSS_EVERY):
                break

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(
            (self.samples[-1][0] if self.samples else 0.0, self._proc.memory_info().rss)
        )


def _rss_summary(samples: list[tuple[float, int]]) -> dict[str, Any]:
    end = max(t for t, _ in samples)
    first = max(r for t, r in samples if t <= 60) / 2**20
    last = max(r for t, r in samples if t >= end - 60) / 2**20
    return {
        "samples_mib": [[round(t, 1), round(r / 2**20, 1)] for t, r in samples],
        "first_minute_max_mib": round(first, 1),
        "last_minute_max_mib": round(last, 1),
        "growth": round(last / first - 1, 4),
        "flat": last <= first * 1.10,
    }


def _latencies(records: list[tuple[str, int, float, int]], kind: str) -> dict[str, Any]:
    values = sorted(lat for k, code, lat, _ in records if k == kind and code != 421)
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {
        "n": len(values),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2),
    }


# --- the two runs -----------------------------------------------------------------------


def _workspace(root: Path, rate: int) -> Any:
    from canarino.customers import import_customers
    from canarino.recipients import add_recipient
    from canarino.settings import CONFIG_FILE, load_settings
    from canarino.shares import create_share
    from canarino.testing import make_customers, write_customers_csv
    from canarino.workspace import Workspace, init_workspace

    made = init_workspace(root / "ws", mail_domains=DOMAINS, phone_ranges=["+39347555"])
    made.close()
    with (root / "ws" / CONFIG_FILE).open("a", encoding="utf-8") as fp:
        # One client sends everything here: the per-IP limit would be the bottleneck.
        fp.write(f"smtp_rate_per_minute = {max(rate * 4, 600)}\ncontrol_canaries = 20\n")
    ws = Workspace.open(load_settings(root / "ws"))
    import_customers(ws, write_customers_csv(root / "c.csv", make_customers(400, seed=7)))
    for name in ("Vendor A", "Vendor B"):
        add_recipient(ws, name, "vendor")
        create_share(ws, name, "first_name,last_name,email,phone", root / f"{name[-1]}.csv")
    return ws


def _canaries(root: Path) -> list[tuple[str, str]]:
    import csv

    out = []
    for name in ("A", "B"):
        with (root / f"{name}.csv").open(encoding="utf-8", newline="") as fp:
            for row in csv.DictReader(fp):
                if row["email"].rsplit("@", 1)[1] in DOMAINS:
                    out.append((row["email"], row["first_name"]))
    return out


def run_canarino(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from canarino import models as m
    from canarino.inbound.smtp import start_listener
    from canarino.sightings import noise_counts

    ws = _workspace(root, args.rate)
    canaries = _canaries(root)
    others = [f"utente.{i}@{DOMAINS[i % 2]}" for i in range(997)]
    listener = start_listener(ws, "127.0.0.1", 0)
    try:
        with RssSampler() as rss:
            sent = _run_sender(listener.port, canaries, others, args, args.minutes * 60)
        deadline = time.monotonic() + 30
        while listener._inflight and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        listener.stop()
    records = sent["records"]
    accepted = sum(1 for k, code, _, _ in records if k == "canary" and code == 250)
    refused = sum(1 for k, code, _, _ in records if k == "other" and code == 550)
    with ws.db.session() as s:
        stored_raw = s.scalar(select(func.count()).select_from(m.InboundMessage)) or 0
        stored_sightings = s.scalar(select(func.count()).select_from(m.Sighting)) or 0
    noise = noise_counts(ws)["unknown"]
    ws.close()
    return {
        "planned": sent["planned"],
        "sent": len(records),
        "canary_accepted": accepted,
        "other_refused": refused,
        "deferred_retries": sum(a - 1 for _, _, _, a in records),
        "failed": sum(1 for _, code, _, _ in records if code not in (250, 550)),
        "stored_sightings": stored_sightings,
        "stored_raw_messages": stored_raw,
        "noise_counted": noise,
        "lost": abs(accepted - stored_raw)
        + abs(accepted - stored_sightings)
        + abs(refused - noise),
        "sender_late_max_s": round(sent["late_max"], 3),
        "latency_canary": _latencies(records, "canary"),
        "latency_other": _latencies(records, "other"),
        "rss": _rss_summary(rss.samples),
        "listener": listener.stats.__dict__,
    }


class _Sink:
    """The reference: aiosmtpd accepting every recipient and keeping nothing."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def run_reference(args: argparse.Namespace, canaries: list[tuple[str, str]]) -> dict[str, Any]:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(_Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        others = [f"utente.{i}@{DOMAINS[i % 2]}" for i in range(997)]
        sent = _run_sender(port, canaries, others, args, args.reference_minutes * 60)
    finally:
        controller.stop()
    records = sent["records"]
    return {
        "sent": len(records),
        "latency_canary": _latencies(records, "canary"),
        "latency_other": _latencies(records, "other"),
    }


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def render(results: dict[str, Any]) -> str:
    c, r = results["canarino"], results["reference"]
    rows = [
        ("messages sent", f"{c['sent']:,}", f"{r['sent']:,}", ""),
        ("canary messages accepted", f"{c['canary_accepted']:,}", "", ""),
        (
            "  stored sightings / raw",
            f"{c['stored_sightings']:,} / {c['stored_raw_messages']:,}",
            "",
            "",
        ),
        ("other addresses refused", f"{c['other_refused']:,}", "", ""),
        ("  counted as noise", f"{c['noise_counted']:,}", "", ""),
        ("4xx retries / failed", f"{c['deferred_retries']} / {c['failed']}", "", ""),
        ("lost", f"{c['lost']}", "", ""),
    ]
    for kind in ("canary", "other"):
        for q in ("p50_ms", "p99_ms"):
            a, b = c[f"latency_{kind}"][q], r[f"latency_{kind}"][q]
            rows.append((f"{kind} accept {q[:3]} (ms)", f"{a}", f"{b}", _ratio(a, b)))
    rss = c["rss"]
    rows += [
        ("RSS first minute max (MiB)", f"{rss['first_minute_max_mib']}", "", ""),
        ("RSS last minute max (MiB)", f"{rss['last_minute_max_mib']}", "", ""),
        ("memory flat (<=10% growth)", f"{rss['flat']} ({rss['growth']:+.1%})", "", ""),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'':{width}}  {'canarino':>16}  {'reference':>10}  {'ratio':>6}"]
    lines += [f"{a:{width}}  {b:>16}  {c_:>10}  {d:>6}" for a, b, c_, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="messages per minute")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run")
    parser.add_argument(
        "--reference-minutes", type=float, default=None, help="length of the reference run"
    )
    parser.add_argument("--connections", type=int, default=4, help="sender's SMTP connections")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "smtp_load.json")
    args = parser.parse_args(argv)
    if args.reference_minutes is None:
        args.reference_minutes = min(1.0, args.minutes)
    root = Path(tempfile.mkdtemp(prefix="smtp-load-"))
    try:
        started = time.time()
        canarino = run_canarino(args, root)
        reference = run_reference(args, _canaries(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = {
        "benchmark": "smtp_load",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rate_per_minute": args.rate,
        "minutes": args.minutes,
        "reference_minutes": args.reference_minutes,
        "connections": args.connections,
        "wall_s": round(time.time() - started, 1),
        "canarino": canarino,
        "reference": reference,
    }
    print(render(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}")
    ok = canarino["lost"] == 0 and canarino["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
