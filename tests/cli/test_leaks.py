from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from canarino.cli import app, leaks
from canarino.shares import ShareResult
from canarino.testing import make_dump
from canarino.trace import Tick
from canarino.workspace import Workspace

runner = CliRunner()


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def _terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Make the trace's progress bar draw, as on a terminal, into a buffer."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    monkeypatch.setattr(leaks, "err", console)
    return screen


def test_traces_people_lists_each_person_with_fields_and_categories_and_no_contact(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    with shared["Vendor A"].path.open(encoding="utf-8") as fp:
        rows = list(csv.reader(fp))
    header, body = rows[0], rows[1:41]
    keep = [header.index(h) for h in ("first_name", "email", "phone")]
    dump = tmp_path / "dump.csv"
    with dump.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["nome", "email", "telefono"])
        for i, row in enumerate(body):
            writer.writerow([row[k] if not (i % 2 and k == keep[2]) else "" for k in keep])
    w = ("-w", str(loaded.settings.workspace))
    report = json.loads(run("trace", str(dump), "--json", *w))
    trace_id = str(report["trace_id"])

    lines = run("traces", trace_id, "--people", *w).splitlines()
    assert len(lines) == report["customers_matched"] > 10
    cells = [line.split("\t") for line in lines]
    assert all(len(c) == 5 for c in cells)
    ids = [int(c[0]) for c in cells]
    assert ids == sorted(ids)
    assert {c[3] for c in cells} == {"first_name,email,phone", "first_name,email"}
    assert {c[4] for c in cells} == {"identity,contact"}
    assert all(re.fullmatch(r"[A-Z]{2}|\?\?", c[1]) for c in cells)
    # Masked: the people are named by customer id, never by what the dump held.
    text = "\n".join(lines)
    leaked = [row[k] for row in body for k in keep if row[k]]
    assert "@" not in text and not [v for v in leaked if v in text]

    people = [
        json.loads(line) for line in run("traces", trace_id, "--people", "--json", *w).splitlines()
    ]
    assert [p["customer_id"] for p in people] == ids
    assert [(p["country"] or "??", ",".join(p["fields"])) for p in people] == [
        (c[1], c[3]) for c in cells
    ]
    assert all(p["categories"] == ["identity", "contact"] for p in people)


def test_traces_people_needs_a_trace_id(loaded: Workspace) -> None:
    output = run("traces", "--people", "-w", str(loaded.settings.workspace), ok=False)
    assert "--people needs a trace id" in output


def test_trace_progress_shows_bytes_rows_per_second_and_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = _terminal(monkeypatch)
    with leaks._trace_progress(json_mode=False) as tick:
        for step in range(1, 4):
            tick(Tick(step * 200_000, 10_000_000, step * 2_000))
            time.sleep(0.15)
    shown = screen.getvalue()
    assert "Tracing" in shown
    assert "0.6/10.0 MB" in shown
    assert "6,000 rows" in shown
    rate = re.findall(r"([\d,]+) rows/s", shown)
    assert rate and 0 < int(rate[-1].replace(",", "")) < 6_000 / 0.3
    # Time left at ~1 MB/s for 9.4 MB: seconds, not the unknown "-:--:--".
    left = re.findall(r"\d+:\d\d:\d\d", shown)
    assert any(t != "0:00:00" for t in left)


def test_trace_progress_is_silent_off_a_terminal_and_with_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(leaks, "err", Console(file=screen, force_terminal=False))
    with leaks._trace_progress(json_mode=False) as tick:
        tick(Tick(10, 100, 5))
    _terminal(monkeypatch)
    with leaks._trace_progress(json_mode=True) as tick:
        tick(Tick(10, 100, 5))
    assert screen.getvalue() == "" and leaks.err.file.getvalue() == ""  # type: ignore[attr-defined]


def test_trace_command_draws_its_progress_on_a_terminal(
    shared: dict[str, ShareResult],
    loaded: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=1.0, seed=8, noise_rows=3000)
    monkeypatch.setenv("CANARINO_MAX_LINE_BYTES", str(1 << 16))  # several batches
    screen = _terminal(monkeypatch)
    output = run("trace", str(dump), "-w", str(loaded.settings.workspace))
    assert "Suspects" in output
    shown = screen.getvalue()
    size_kb = dump.stat().st_size / 1000
    assert "Tracing" in shown and "rows/s" in shown
    assert re.search(rf"{size_kb:.1f}/{size_kb:.1f} kB", shown), shown[-500:]
