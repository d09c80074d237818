"""Shared pieces of the command line: the apps, the error handler, options, output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from ..errors import CanarinoError
from ..workspace import Workspace, open_workspace

out = Console()
err = Console(stderr=True)


class _Group(TyperGroup):
    """Maps every canarino error to one ``Error: …`` line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CanarinoError as exc:
            err.print(f"[bold red]Error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(1) from None


def _app(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        cls=_Group,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
        add_completion=False,
    )


app = _app("canarino: find out fast that shared customer data leaked, who leaked it, and respond.")
customers_app = _app("Import and count the company's customers.")
recipients_app = _app("The vendors, employees and systems that receive customer data.")
incidents_app = _app("Open and follow incidents.")
notices_app = _app("Prepare and send notices to affected people.")
sightings_app = _app("Contacts with canary addresses and numbers: record them, weigh them.")
app.add_typer(customers_app, name="customers")
app.add_typer(recipients_app, name="recipients")
app.add_typer(incidents_app, name="incidents")
app.add_typer(notices_app, name="notices")
app.add_typer(sightings_app, name="sightings")

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $CANARINO_WORKSPACE, else the current folder or a parent).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@contextmanager
def _workspace(path: Path | None) -> Iterator[Workspace]:
    ws = open_workspace(path)
    try:
        yield ws
    finally:
        ws.close()


@contextmanager
def _progress(title: str, *, json_mode: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar fed by a ``(done, total)`` callback."""
    if json_mode or not err.is_terminal:
        yield lambda done, total: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(title, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str, ensure_ascii=False))
