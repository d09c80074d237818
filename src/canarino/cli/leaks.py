"""Commands that weigh leaks: traces of dumps and sightings of canaries."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .. import sightings, trace
from ..attribution import one_in
from ..errors import InvalidInput
from ..fields import label
from ..sources import Limits, spool
from .base import (
    JsonOpt,
    WorkspaceOpt,
    _print_json,
    _workspace,
    app,
    err,
    out,
    sightings_app,
)

# --- sightings ---------------------------------------------------------------------------


@sightings_app.command("import")
def sightings_import(
    file: Annotated[Path, typer.Argument(help="JSON lines: channel, contact, seen_at, sender…")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record sightings reported by a mail gateway, an SMS or voice provider, or a person."""
    items = sightings.read_sightings(file)
    with _workspace(workspace) as ws:
        report = sightings.record_sightings(ws, items)
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(
        f"{report.recorded:,} recorded: {report.evidence:,} evidence, "
        f"{report.expected_use:,} expected use, {report.not_canary:,} not canaries; "
        f"{report.duplicates:,} duplicates skipped"
    )
    for problem in report.problems[:20]:
        out.print(f"  [yellow]{problem}[/]")


@sightings_app.command("trace")
def sightings_trace(
    strong_only: Annotated[
        bool, typer.Option(help="Count only contacts that used the canary's name.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Name the recipients whose canaries are being contacted, with p-values."""
    with _workspace(workspace) as ws:
        decision = sightings.attribute_sightings(ws, strong_only=strong_only)
    data = decision.as_dict()
    if json_out:
        _print_json(data)
        return
    if not decision.suspects:
        out.print("No suspect: no canary has been contacted outside expected use.")
        return
    _render_attribution(data["suspects"], data, top=10)


# --- trace -------------------------------------------------------------------------------


@app.command("trace")
def trace_cmd(
    dump: Annotated[
        Path,
        typer.Argument(
            help="The leak: a file (CSV/TSV, JSON, NDJSON, XLSX/XLS/ODS, SQL dump, Parquet, "
            "combo list, mbox/EML/MSG), an archive (zip, 7z, tar, gz, bz2, xz, nested), "
            "a folder, or - for standard input."
        ),
    ],
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            envvar="CANARINO_DUMP_PASSWORD",
            help="Password of an encrypted zip or 7z archive.",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find who leaked a dump and whom it exposes; the result is stored."""
    with _workspace(workspace) as ws, _trace_progress(json_mode=json_out) as tick:
        limits = Limits(ws.settings.max_line_bytes, ws.settings.max_columns)
        spooled = spool(sys.stdin.buffer, limits) if str(dump) == "-" else None
        try:
            report = trace.run_trace(ws, spooled or dump, on_tick=tick, password=password)
        finally:
            if spooled is not None:
                spooled.unlink(missing_ok=True)
    if json_out:
        _print_json(report.as_dict())
        return
    _render_trace(report.as_dict())
    for problem in report.problems:
        err.print(f"[yellow]Not read:[/] {problem}", highlight=False)


class _RowsPerSecond(ProgressColumn):
    """Rows read per second, from the ``rows`` field of the task."""

    def render(self, task: Task) -> Text:
        """The current rate, or nothing before the first batch."""
        rows = task.fields.get("rows", 0)
        elapsed = task.elapsed or 0
        rate = f"{rows / elapsed:,.0f} rows/s" if rows and elapsed > 0 else ""
        return Text(f"{rows:,} rows {rate}".strip(), style="progress.data.speed")


@contextmanager
def _trace_progress(*, json_mode: bool) -> Iterator[Callable[[trace.Tick], None]]:
    """A progress bar with bytes read, rows per second and time left, fed by ticks."""
    if json_mode or not err.is_terminal:
        yield lambda _tick: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("Tracing", total=None, rows=0)

        def update(tick: trace.Tick) -> None:
            bar.update(
                task, completed=tick.bytes_done, total=tick.bytes_total or None, rows=tick.rows
            )

        yield update


@app.command("traces")
def traces_cmd(
    trace_id: Annotated[int | None, typer.Argument(help="Show this trace in full.")] = None,
    people: Annotated[
        bool,
        typer.Option(
            "--people",
            help="With a trace id: list each exposed person (customer id, country, region, "
            "exposed fields and data categories), one per line; JSON lines with --json.",
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List stored traces, or show one."""
    if people:
        if not trace_id:
            raise InvalidInput(
                "--people needs a trace id", hint="list the traces with: canarino traces"
            )
        with _workspace(workspace) as ws:
            # Plain writes: Rich would expand the tabs that make the lines easy to cut.
            for person in trace.exposed_people(ws, trace_id):
                row = person.as_dict()
                typer.echo(json.dumps(row) if json_out else _person_line(row))
        return
    with _workspace(workspace) as ws:
        data: Any = trace.get_trace_report(ws, trace_id) if trace_id else trace.list_traces(ws)
    if json_out:
        _print_json(data)
    elif trace_id:
        _render_trace(data)
    else:
        table = Table("id", "when", "source", "rows", "customers", "named first")
        for t in data:
            table.add_row(
                str(t["trace_id"]),
                t["created_at"],
                t["source"],
                f"{t['rows_read']:,}",
                f"{t['customers_matched']:,}",
                t["top_suspect"] or "",
            )
        out.print(table)


def _person_line(p: dict[str, Any]) -> str:
    return "\t".join(
        (
            str(p["customer_id"]),
            p["country"] or "??",
            p["region"] or "?",
            ",".join(p["fields"]),
            ",".join(p["categories"]),
        )
    )


def _render_attribution(suspects: list[dict[str, Any]], decision: dict[str, Any], top: int) -> None:
    r = {"suspects": suspects, "attribution": decision}
    table = Table(
        "#",
        "suspect",
        "kind",
        "verdict",
        "innocent match chance",
        "canaries",
        "customers",
        title="Suspects",
    )
    for i, s in enumerate(r["suspects"][:top], 1):
        who = s["recipient"] + (f" ({s['parent']})" if s["parent"] else "")
        verdict = "[bold red]accused[/]" if s["accused"] else "not accused"
        chance = one_in(s["p_value"]) if s["canaries_seen"] else "-"
        table.add_row(
            str(i),
            who,
            s["kind"],
            verdict,
            chance,
            f"{s['canaries_seen']}/{s['canaries_observed']}",
            f"{s['customers_covered']:,}/{s['customers_matched']:,}",
        )
    if r["suspects"]:
        out.print(table)
        for i, s in enumerate(r["suspects"][:3], 1):
            if s["canaries_seen"] or i == 1:
                out.print(f"  {i}. {s['explanation']}")
        decision = r.get("attribution") or {}
        if decision:
            out.print(
                f"Accusation rule: innocent match chance at most {decision['threshold']:.1e} "
                f"(ε = {decision['epsilon']:g} over {decision['recipients']} recipients, "
                f"{decision['layers']} layer(s)); simplest explanation: "
                f"{', '.join(decision['cover']) or 'none'}"
            )
    else:
        out.print(
            "No suspect: nothing in this file matches a canary or a customer shared with anyone."
        )


def _render_trace(r: dict[str, Any], *, top: int = 10) -> None:
    out.print(
        f"Trace #{r['trace_id']} of [bold]{r['source']}[/]: {r['rows_read']:,} rows, "
        f"{r['customers_matched']:,} customers and {r['canaries_matched']:,} canaries matched"
    )
    if r["columns"]:
        out.print("Columns read: " + ", ".join(f"{h} → {f}" for h, f in r["columns"].items()))
    _render_attribution(r["suspects"], r.get("attribution") or {}, top)
    scope = r["scope"]
    if scope["people"]:
        fields_t = Table("data field", "people", title=f"Exposed: {scope['people']:,} people")
        for name, count in scope["by_field"].items():
            fields_t.add_row(label(name, "en"), f"{count:,}")
        places = Table("country", "people", title="By country")
        for country, count in scope["by_country"].items():
            places.add_row(country, f"{count:,}")
        out.print(fields_t, places)
        # Older stored traces have no per-person breakdown.
        if scope.get("by_exposure"):
            sets = Table("exposed together", "people", title="What each person lost")
            for names, count in list(scope["by_exposure"].items())[:top]:
                sets.add_row(", ".join(label(n, "en") for n in names.split(",")), f"{count:,}")
            out.print(sets)
            out.print(f"Each person: canarino traces {r['trace_id']} --people", highlight=False)
