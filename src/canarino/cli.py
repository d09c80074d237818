"""The ``canarino`` command line: thin commands over the library, one error handler."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

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
from rich.table import Table
from typer.core import TyperGroup

from . import customers as customers_mod
from . import delivery, demo, incidents, recipients, shares, sightings, trace
from .attribution import one_in
from .design import DesignInput, plan
from .errors import CanarinoError, InvalidInput
from .fields import label
from .obligations import format_remaining, next_due
from .sources import SOURCES
from .workspace import Workspace, init_workspace, open_workspace

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


# --- workspace ---------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path(
        "."
    ),
    mail_domain: Annotated[
        list[str],
        typer.Option(
            "--mail-domain", help="Monitored mail domain for canary addresses (repeatable)."
        ),
    ] = [],  # noqa: B006 - Typer reads the default, never mutates it
    phone_range: Annotated[
        list[str],
        typer.Option(
            "--phone-range", help="Monitored phone prefix in E.164, e.g. +3934755 (repeatable)."
        ),
    ] = [],  # noqa: B006
    company: Annotated[str, typer.Option(help="Company name used in notices.")] = "Example S.p.A.",
) -> None:
    """Create a workspace: settings file, secret key (0600) and database."""
    ws = init_workspace(
        directory, mail_domains=mail_domain, phone_ranges=phone_range, company_name=company
    )
    out.print(f"Workspace ready in [bold]{directory}[/]")
    out.print(f"  mail domains: {', '.join(ws.settings.mail_domains)}")
    out.print(f"  phone ranges: {', '.join(ws.settings.phone_ranges) or 'none'}")
    out.print(f"  secret key:   {ws.settings.secret_path} (keep a backup outside the database)")
    ws.close()


@app.command("formats")
def formats_cmd() -> None:
    """List the dump formats canarino reads."""
    for name in SOURCES.names():
        out.print(name)


# --- customers ---------------------------------------------------------------------------


@customers_app.command("import")
def customers_import(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row (Italian or English).")],
    map_: Annotated[
        list[str],
        typer.Option(
            "--map", help="Override a column: HEADER=FIELD or HEADER=ignore (repeatable)."
        ),
    ] = [],  # noqa: B006
    country: Annotated[
        str | None,
        typer.Option(help="Country of rows that have no country column (ISO code or name)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import customers; identifiers are normalised and indexed by keyed pseudonym."""
    with _workspace(workspace) as ws, _progress("Importing", json_mode=json_out) as tick:
        report = customers_mod.import_customers(
            ws,
            file,
            mapping=customers_mod.parse_mapping(map_),
            default_country=country,
            progress=tick,
        )
    if json_out:
        _print_json(
            {
                "rows": report.rows,
                "imported": report.imported,
                "unchanged": report.unchanged,
                "columns": report.columns,
                "problems": [{"line": p.line, "reason": p.reason} for p in report.problems],
            }
        )
        return
    out.print(
        f"{report.rows:,} rows: [green]{report.imported:,} imported[/], "
        f"{report.unchanged:,} already present, [yellow]{len(report.problems):,} refused[/]"
    )
    out.print("Columns: " + ", ".join(f"{h} → {f}" for h, f in report.columns.items()))
    if report.ignored_columns:
        out.print(
            f"{report.ignored_columns} column(s) not recognised and ignored (use --map HEADER=FIELD)."
        )
    for problem in report.problems[:20]:
        out.print(f"  line {problem.line}: {problem.reason}")
    if len(report.problems) > 20:
        out.print(f"  … and {len(report.problems) - 20:,} more (use --json for all)")


@customers_app.command("count")
def customers_count(workspace: WorkspaceOpt = None) -> None:
    """Print how many customers the workspace holds."""
    from .store import count_customers

    with _workspace(workspace) as ws, ws.db.session() as s:
        out.print(count_customers(s))


# --- recipients --------------------------------------------------------------------------


@recipients_app.command("add")
def recipients_add(
    name: Annotated[str, typer.Argument(help="Name of the vendor, employee or system.")],
    kind: Annotated[str, typer.Option(help="vendor, employee or system.")] = "vendor",
    parent: Annotated[str | None, typer.Option(help="Vendor an employee works for.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Register who receives customer data."""
    with _workspace(workspace) as ws:
        info = recipients.add_recipient(ws, name, kind, parent)
    suffix = f" of {info.parent}" if info.parent else ""
    out.print(f"Recipient #{info.id}: {info.name} ({info.kind}{suffix})")


@recipients_app.command("list")
def recipients_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List recipients."""
    with _workspace(workspace) as ws:
        rows = recipients.list_recipients(ws)
    if json_out:
        _print_json([r.__dict__ for r in rows])
        return
    table = Table("id", "name", "kind", "works for")
    for r in rows:
        table.add_row(str(r.id), r.name, r.kind, r.parent or "")
    out.print(table)


@recipients_app.command("allow")
def recipients_allow(
    name: Annotated[str, typer.Argument(help="Recipient whose infrastructure this is.")],
    dkim: Annotated[str | None, typer.Option(help="DKIM d= domain it sends mail with.")] = None,
    ip: Annotated[str | None, typer.Option(help="IP address it sends from.")] = None,
    caller_id: Annotated[str | None, typer.Option(help="Caller ID its call centre uses.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Authorise a recipient's senders: their contacts with its canaries are expected use."""
    given = [(k, v) for k, v in (("dkim", dkim), ("ip", ip), ("caller_id", caller_id)) if v]
    if not given:
        raise InvalidInput("give at least one of --dkim, --ip, --caller-id")
    with _workspace(workspace) as ws:
        for kind, value in given:
            sightings.allow_sender(ws, name, kind, value)
    out.print(f"Allowed for {name}: " + ", ".join(f"{k} {v}" for k, v in given))


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


# --- share -------------------------------------------------------------------------------


@app.command("share")
def share_cmd(
    to: Annotated[str, typer.Option("--to", help="Recipient that gets the export.")],
    fields: Annotated[
        str, typer.Option(help="Comma-separated fields, e.g. first_name,last_name,email,phone.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the export (CSV).")],
    customers: Annotated[
        str,
        typer.Option(
            "--customers", help="Which customers, e.g. 'country=IT region=MI,TO' (default: all)."
        ),
    ] = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the export a recipient gets, with its own canaries, and record the share."""
    with _workspace(workspace) as ws:
        result = shares.create_share(ws, to, fields, out_path, customer_filter=customers)
    if json_out:
        _print_json(
            {
                "share_id": result.share_id,
                "recipient": result.recipient,
                "rows": result.customers + result.canaries,
                "fields": result.fields,
                "path": str(result.path),
                "sha256": result.sha256,
                "detection_limit": round(result.detection_limit, 4),
            }
        )
        return
    out.print(
        f"Share #{result.share_id} to [bold]{result.recipient}[/]: "
        f"{result.customers + result.canaries:,} rows written to {result.path}"
    )
    out.print(
        f"A leak of {result.detection_limit:.1%} or more of this export will contain a canary "
        "(99% of the time)."
    )


@app.command("design")
def design_cmd(
    recipients: Annotated[int, typer.Option(help="How many recipients receive data.")],
    colluders: Annotated[int, typer.Option(help="Most recipients that may merge copies.")] = 1,
    smallest_leak: Annotated[
        float, typer.Option(help="Smallest leaked fraction of a share to catch, e.g. 0.02.")
    ] = 0.02,
    epsilon: Annotated[
        float, typer.Option(help="Accepted chance of accusing any innocent, per trace.")
    ] = 1e-6,
    miss: Annotated[float, typer.Option(help="Accepted chance of missing such a leak.")] = 0.01,
    noise: Annotated[
        float, typer.Option(help="Chance a canary shows up without its recipient leaking.")
    ] = 1e-6,
    tardos: Annotated[bool, typer.Option(help="Also size a Tardos-type layer.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Size the canary design: canaries per share for each layer, and the bounds."""
    try:
        design = plan(
            DesignInput(recipients, colluders, smallest_leak, epsilon, miss, noise, tardos)
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if json_out:
        _print_json(design.as_dict())
        return
    table = Table("layer", "per share", "pool", "bias q", "hits to accuse", "note")
    for lay in design.layers:
        table.add_row(
            lay.name,
            f"{lay.per_share:,}",
            f"{lay.pool:,}" if lay.pool else "-",
            f"{lay.bias:g}" if lay.bias else "-",
            str(lay.hits_needed or "-"),
            lay.note,
        )
    out.print(table)
    out.print(
        f"{design.per_share:,} canaries per share; no design can use fewer than "
        f"{design.fano_bound:,.0f} in all (Fano bound); a single leaker's copy is caught from "
        f"{design.detection_limit:.2%} of a share."
    )


# --- trace -------------------------------------------------------------------------------


@app.command("trace")
def trace_cmd(
    dump: Annotated[
        Path, typer.Argument(help="The leaked file (CSV, any columns, with or without header).")
    ],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find who leaked a dump and whom it exposes; the result is stored."""
    with _workspace(workspace) as ws, _progress("Tracing", json_mode=json_out) as tick:
        report = trace.run_trace(ws, dump, progress=tick)
    if json_out:
        _print_json(report.as_dict())
        return
    _render_trace(report.as_dict())


@app.command("traces")
def traces_cmd(
    trace_id: Annotated[int | None, typer.Argument(help="Show this trace in full.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List stored traces, or show one."""
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
                f"{', '.join(decision['cover']) or 'none'}."
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


# --- incidents ---------------------------------------------------------------------------


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a date-time", hint="use ISO 8601, e.g. 2026-03-02T10:00+01:00"
        ) from None


@incidents_app.command("open")
def incidents_open(
    trace_id: Annotated[int, typer.Option("--trace", help="Trace the incident is about.")],
    title: Annotated[str | None, typer.Option(help="Short title.")] = None,
    aware_at: Annotated[
        str | None, typer.Option(help="When the company became aware (default: now).")
    ] = None,
    occurred_at: Annotated[
        str | None, typer.Option(help="When the breach happened, if known.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open an incident on a trace, with its affected people and deadlines."""
    with _workspace(workspace) as ws:
        view = incidents.open_incident(
            ws, trace_id, title=title, aware_at=_when(aware_at), occurred_at=_when(occurred_at)
        )
        _render_incident(view, ws.settings.timezone, json_out)


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show an incident: people affected, exposed data, deadlines, notices."""
    with _workspace(workspace) as ws:
        _render_incident(incidents.show_incident(ws, incident_id), ws.settings.timezone, json_out)


@incidents_app.command("list")
def incidents_list(workspace: WorkspaceOpt = None) -> None:
    """List incidents."""
    with _workspace(workspace) as ws:
        views = incidents.list_incidents(ws)
    now = datetime.now(UTC)
    table = Table("id", "title", "status", "people", "next deadline")
    for v in views:
        nxt = next_due(v.obligations)
        left = format_remaining(nxt.remaining(now)) if nxt else "none"
        table.add_row(str(v.id), v.title, v.status, f"{v.people:,}", left)
    out.print(table)


@incidents_app.command("risk")
def incidents_risk(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    level: Annotated[str, typer.Argument(help="none, risk or high_risk.")],
    reason: Annotated[str, typer.Option(help="Why: recorded with the assessment.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the risk assessment of an incident; its obligations are recomputed."""
    with _workspace(workspace) as ws:
        view = incidents.assess_risk(ws, incident_id, level, reason)
        _render_incident(view, ws.settings.timezone, json_out)


def _render_incident(view: incidents.IncidentView, tz: str, json_out: bool) -> None:
    now = datetime.now(UTC)
    if json_out:
        _print_json(view.as_dict(now, tz))
        return
    data = view.as_dict(now, tz)
    out.print(f"Incident #{view.id}: [bold]{view.title}[/] ({view.status})")
    out.print(f"  aware since {data['aware_at']}; occurred {data['occurred_at'] or 'unknown'}")
    out.print(f"  {view.people:,} people affected; from trace #{view.trace_id}")
    exposed = Table("data field", "people", title="Exposed data")
    for name, count in view.by_field.items():
        exposed.add_row(label(name, "en"), f"{count:,}")
    countries = Table("country", "people", title="Where they live")
    for country, count in view.by_country.items():
        countries.add_row(country, f"{count:,}")
    out.print(exposed, countries)
    out.print(f"  risk: [bold]{view.risk}[/] — {view.risk_reason}")
    deadlines = Table("duty", "to", "due (local)", "time left", "citation", title="Obligations")
    for o in view.obligations:
        d = o.as_dict(now, tz)
        to = d["authority"] or o.recipient
        mark = "" if o.verification == "verified" else " [yellow](unverified)[/]"
        deadlines.add_row(
            f"{o.title or o.duty} [{o.jurisdiction}]",
            to,
            o.due_at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z") if o.due_at else "-",
            format_remaining(o.remaining(now)),
            o.citation + mark,
        )
    out.print(deadlines)
    if view.uncovered:
        out.print(
            "[yellow]No rule file covers: " + ", ".join(view.uncovered) + " — check these "
            "jurisdictions by hand.[/]"
        )
    if view.notices:
        out.print("Notices: " + ", ".join(f"{k} {v:,}" for k, v in sorted(view.notices.items())))


# --- notices -----------------------------------------------------------------------------


@notices_app.command("prepare")
def notices_prepare(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Render one notice per affected person, in their language, ready to send."""
    with _workspace(workspace) as ws:
        report = delivery.prepare_notices(ws, incident_id)
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(
        f"{report.prepared:,} notices prepared, {report.already_prepared:,} were already prepared"
    )
    if report.by_language:
        out.print("By language: " + ", ".join(f"{k} {v:,}" for k, v in report.by_language.items()))
    for reason, count in report.skipped.items():
        out.print(f"[yellow]{count:,} people not notified by e-mail: {reason}[/]")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidInput(f"--smtp {text!r} must look like HOST:PORT")
    return host, int(port)


@notices_app.command("send")
def notices_send(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    smtp: Annotated[str, typer.Option(help="SMTP relay as HOST:PORT.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send the prepared notices; a notice already sent is never sent again."""
    host, port = _host_port(smtp)
    with _workspace(workspace) as ws, _progress("Sending", json_mode=json_out) as tick:
        report = delivery.send_notices(ws, incident_id, host=host, port=port, progress=tick)
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(
        f"sent {report.sent:,}, failed {report.failed:,}, to retry {report.retry_later:,}, "
        f"already sent {report.already_sent:,}"
    )
    if report.in_doubt:
        out.print(
            f"[yellow]{report.in_doubt:,} notices were being sent when a previous run stopped; "
            "check the relay's log before resending them.[/]"
        )


@notices_app.command("status")
def notices_status(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Count an incident's notices by delivery state."""
    with _workspace(workspace) as ws:
        states = delivery.notice_states(ws, incident_id)
    for state, count in sorted(states.items()):
        out.print(f"{state}: {count:,}")


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


def main() -> None:
    """Entry point of the ``canarino`` command."""
    app(prog_name="canarino")


def command_paths() -> list[tuple[str, ...]]:
    """Every command as the words that invoke it, e.g. ``("customers", "import")``."""
    from typer.main import get_command

    def walk(cmd: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        subs: dict[str, Any] = getattr(cmd, "commands", {})
        out = [prefix] if prefix else []
        for name in subs:
            out += walk(subs[name], (*prefix, name))
        return out

    return walk(get_command(app), ())


def reference() -> str:
    """The Markdown command reference, built from every command's ``--help``."""
    from typer.testing import CliRunner

    runner = CliRunner()
    parts = []
    for path in [(), *command_paths()]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        title = " ".join(("canarino", *path))
        parts.append(f"## {title}\n\n```\n{result.output.strip()}\n```\n")
    return "\n" + "\n".join(parts)
