"""Commands of the response: incidents, their duties, and notices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from .. import delivery, incidents
from ..errors import InvalidInput
from ..fields import label
from ..obligations import format_remaining, next_due
from .base import (
    JsonOpt,
    WorkspaceOpt,
    _print_json,
    _progress,
    _workspace,
    incidents_app,
    notices_app,
    out,
)

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
