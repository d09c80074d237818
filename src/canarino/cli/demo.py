"""The demo command and its summary."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from .. import demo
from ..obligations import format_remaining, next_due
from .base import (
    app,
    err,
    out,
)
from .leaks import _render_trace

# --- demo --------------------------------------------------------------------------------


class _DemoReporter:
    def __init__(self) -> None:
        self._bar: Progress | None = None

    def step(self, title: str) -> Callable[[int, int], None]:
        self._close()
        if not err.is_terminal:
            err.print(f"… {title}")
            return lambda done, total: None
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task(title, total=None)
        bar = self._bar

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        return tick

    def done(self, title: str, detail: str) -> None:
        self._close()
        out.print(f"[green]✓[/] [bold]{title}[/]: {detail}")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@app.command("demo")
def demo_cmd(
    customers: Annotated[
        int, typer.Option(min=500, help="How many customers to generate.")
    ] = 20_000,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo workspace in this folder.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated scenario.")] = 2026,
) -> None:
    """Run the whole flow on generated data, with notices sent to a loopback SMTP server."""
    with tempfile.TemporaryDirectory(prefix="canarino-demo-") as tmp:
        where = keep or Path(tmp)
        summary = demo.run_demo(where, customers=customers, seed=seed, reporter=_DemoReporter())
        _render_demo(summary)
        if keep:
            out.print(
                f"Workspace kept in {summary.workspace}; try: canarino -w {summary.workspace} incidents show 1"
            )


def _render_demo(s: demo.DemoSummary) -> None:
    out.rule("What happened")
    named = s.named_first
    verdict = "[bold green]right[/]" if named == s.leaker else "[bold red]wrong[/]"
    out.print(
        f"{s.leaker} leaked {s.leaked_rows:,} rows of its export, mixed with {s.noise_rows:,} "
        f"unrelated rows. canarino named first: [bold]{named}[/] ({verdict})."
    )
    _render_trace(s.trace.as_dict(), top=5)
    now = datetime.now(UTC)
    nxt = next_due(s.incident.obligations)
    duties = len(s.incident.obligations)
    if nxt is not None and nxt.due_at is not None:
        out.print(
            f"Incident #{s.incident.id}: {s.incident.people:,} people, {duties} legal duties; "
            f"first: {nxt.title or nxt.duty} ({nxt.citation}) due "
            f"{nxt.due_at.isoformat(timespec='minutes')} ({format_remaining(nxt.remaining(now))})."
        )
    skipped = sum(s.skipped.values())
    out.print(
        f"Notices: {s.prepared:,} prepared, {s.sent:,} sent, {s.received:,} received by the loopback "
        f"server"
        + (f", {skipped:,} people without e-mail listed for another channel" if skipped else "")
        + "."
    )
    out.print("Seconds per step: " + ", ".join(f"{k} {v}" for k, v in s.seconds.items()))
