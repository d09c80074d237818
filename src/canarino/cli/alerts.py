"""Commands for leak alerts and the campaigns that sightings form."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .. import alerts, campaigns
from ..attribution import one_in
from .base import JsonOpt, WorkspaceOpt, _app, _print_json, _workspace, app, out

alerts_app = _app("Alerts to the security team when canaries of a share are contacted.")
campaigns_app = _app("Sightings grouped by sender infrastructure, links and message template.")
app.add_typer(alerts_app, name="alerts")
app.add_typer(campaigns_app, name="campaigns")


def _render_alerts(views: list[alerts.AlertView]) -> None:
    table = Table("id", "day", "share", "recipient", "sightings", "p-value", "delivered")
    for v in views:
        sent = sum(1 for d in v.deliveries.values() if d.get("state") == "sent")
        table.add_row(
            str(v.alert_id),
            v.day,
            f"#{v.share_id} of {v.shared_at[:10]}",
            v.recipient,
            str(v.sightings),
            one_in(v.p_value) if v.p_value is not None else "",
            f"{sent}/{len(v.deliveries)}",
        )
    out.print(table)


@alerts_app.command("run")
def alerts_run(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Raise alerts for newly contacted canaries and retry failed deliveries, once."""
    with _workspace(workspace) as ws:
        views = alerts.raise_alerts(ws)
    if json_out:
        _print_json([v.as_dict() for v in views])
    elif not views:
        out.print("Nothing to alert.")
    else:
        _render_alerts(views)


@alerts_app.command("list")
def alerts_list(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, newest first.")] = 50,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List alerts with the state of each delivery."""
    with _workspace(workspace) as ws:
        views = alerts.list_alerts(ws, limit=limit)
    if json_out:
        _print_json([v.as_dict() for v in views])
    elif not views:
        out.print("No alerts yet.")
    else:
        _render_alerts(views)


def _render_campaigns(views: list[campaigns.CampaignView]) -> None:
    table = Table("id", "sightings", "first seen", "last seen", "incident", "what they share")
    for v in views:
        table.add_row(
            str(v.campaign_id),
            str(v.sightings),
            v.first_seen[:16].replace("T", " "),
            v.last_seen[:16].replace("T", " "),
            str(v.incident_id or ""),
            v.label,
        )
    out.print(table)


@campaigns_app.command("build")
def campaigns_build(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Group the evidence sightings into campaigns again; keys and incidents are kept."""
    with _workspace(workspace) as ws:
        report = campaigns.build_campaigns(ws)
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(
        f"{report.campaigns:,} campaigns over {report.sightings:,} sightings "
        f"({report.created:,} new, {report.merged:,} merged into others)"
    )


@campaigns_app.command("list")
def campaigns_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List campaigns, largest first."""
    with _workspace(workspace) as ws:
        views = campaigns.list_campaigns(ws)
    if json_out:
        _print_json([v.as_dict() for v in views])
    elif not views:
        out.print("No campaigns: run 'canarino campaigns build' after sightings arrive.")
    else:
        _render_campaigns(views)


@campaigns_app.command("attach")
def campaigns_attach(
    campaign_id: Annotated[int, typer.Argument(metavar="CAMPAIGN", help="Campaign id.")],
    incident_id: Annotated[int, typer.Option("--incident", help="Incident to attach it to.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Attach a campaign to an incident."""
    with _workspace(workspace) as ws:
        view = campaigns.attach_campaign(ws, campaign_id, incident_id)
    if json_out:
        _print_json(view.as_dict())
    else:
        out.print(f"Campaign {view.campaign_id} is attached to incident {view.incident_id}.")
