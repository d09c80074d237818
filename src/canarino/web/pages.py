"""The staff pages: server-rendered HTML with htmx partial updates, plain forms without it.

Each route calls the library (or the API helpers that wrap it) and renders a template;
roles come from the same dependency as the API, so a page and its API route always
agree on who may do what.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from .. import (
    audit,
    delivery,
    incidents,
    recipients,
    shares,
    sightings,
    trace,
    users,
    workspace,
)
from ..errors import InvalidInput
from ..fields import BY_NAME, category_of, label
from ..obligations import next_due
from ..store import Page
from . import api, charts
from .auth import Principal, admin, analyst, client_address, viewer, workspace_of
from .i18n import translator
from .render import language_of, render, render_kept

Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="A number shown in lists.")]
router = APIRouter(include_in_schema=False, dependencies=[Depends(viewer)])
Viewer = Annotated[Principal, Depends(viewer)]
Analyst = Annotated[Principal, Depends(analyst)]
Admin = Annotated[Principal, Depends(admin)]
PAGE = 25
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _field_label(lang: str) -> Any:
    return lambda name: label(name, lang) if name in BY_NAME else name


def _deadline(view: incidents.IncidentView, now: datetime) -> dict[str, Any] | None:
    nxt = next_due(view.obligations)
    if nxt is None or nxt.due_at is None:
        return None
    return {"due_at": nxt.due_at, "remaining": nxt.remaining(now), "title": nxt.title or nxt.duty}


@router.get("/")
def overview(request: Request) -> Response:
    """Recipients, shares, recent sightings and open incidents with their next deadline."""
    ws = workspace_of(request)

    def context() -> dict[str, Any]:
        now = datetime.now(UTC)
        open_incidents = [
            {"view": v, "next": _deadline(v, now)}
            for v in incidents.current_incidents(ws)
            if v.status != "closed"
        ]
        return {
            "recipients": recipients.current_recipients(ws),
            "shares": shares.list_shares(ws, limit=10),
            "sightings": sightings.recent_sightings(ws, limit=10),
            "incidents": open_incidents,
            "traces": trace.recent_traces(ws, 5),
            "now": now,
        }

    return render_kept(request, "overview.html", None, context)


@router.get("/recipients/{recipient_id}")
def recipient_page(request: Request, recipient_id: Id) -> Response:
    """One recipient: who they are, their staff, senders and shares."""
    ws = workspace_of(request)
    return render(
        request,
        "recipient.html",
        {
            "r": recipients.recipient_detail(ws, recipient_id),
            "shares": shares.list_shares(ws, recipient_id=recipient_id, limit=100),
        },
    )


@router.get("/shares/{share_id}")
def share_page(request: Request, share_id: Id) -> Response:
    """One share as the ledger recorded it."""
    ws = workspace_of(request)
    share = shares.get_share(ws, share_id)
    lang = language_of(request)
    return render(
        request,
        "share.html",
        {"share": share, "field_label": _field_label(lang)},
    )


# --- traces --------------------------------------------------------------------------------


@router.get("/traces")
def traces_page(request: Request) -> Response:
    """Stored traces and the upload form."""
    ws = workspace_of(request)
    return render(request, "traces.html", {"traces": trace.list_traces(ws)})


@router.post("/traces")
def traces_upload(
    request: Request,
    who: Analyst,
    file: Annotated[UploadFile, File()],
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Save the upload and trace it in the background; the job page shows progress."""
    ws = workspace_of(request)
    if not file.filename:
        raise InvalidInput("choose a file to trace")
    path = api.save_upload(ws, file)
    job = api.start_trace(ws, request.app.state.jobs, who, path, password or None)
    return _see_other(f"/jobs/{job.id}")


@router.get("/traces/{trace_id}")
def trace_page(request: Request, trace_id: Id) -> Response:
    """A trace: suspects, the evidence picture, and the exposed data."""
    ws = workspace_of(request)
    report = trace.get_trace_report(ws, trace_id)
    lang = language_of(request)
    t = translator(lang)
    found = datetime.fromisoformat(report["created_at"])
    found = found if found.tzinfo else found.replace(tzinfo=UTC)
    scope = report.get("scope") or {}
    return render(
        request,
        "trace.html",
        {
            "r": report,
            "picture": charts.attribution_picture(report.get("suspects", []), found, t=t),
            "by_field": charts.bar_chart(
                t("Exposed data"),
                scope.get("by_field", {}),
                label=_field_label(lang),
                testid="chart-fields",
            ),
            "by_country": charts.bar_chart(
                t("By country"), scope.get("by_country", {}), testid="chart-countries"
            ),
        },
    )


@router.post("/traces/{trace_id}/incident")
def trace_open_incident(
    request: Request,
    trace_id: Id,
    who: Analyst,
    title: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Open an incident on this trace."""
    ws = workspace_of(request)
    view = incidents.open_incident(ws, trace_id, title=title.strip() or None)
    audit.record(ws, who.name, "change", f"incident {view.id}", detail={"opened": True})
    return _see_other(f"/incidents/{view.id}")


# --- jobs ----------------------------------------------------------------------------------


def _job_context(request: Request, job_id: str) -> dict[str, Any]:
    job = request.app.state.jobs.get(job_id)
    follow = None
    if job.state == "done" and job.kind == "trace":
        follow = f"/traces/{job.result['trace_id']}"
    elif job.kind == "send" and job.target.startswith("incident "):
        follow = f"/incidents/{job.target.split()[1]}"
    return {"job": job, "follow": follow}


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    """A background job with its progress bar."""
    return render(request, "job.html", _job_context(request, job_id))


@router.get("/jobs/{job_id}/progress")
def job_progress(request: Request, job_id: str) -> Response:
    """The progress partial htmx polls."""
    return render(request, "_progress.html", _job_context(request, job_id))


# --- incidents -----------------------------------------------------------------------------


def _incident_context(
    request: Request,
    incident_id: int,
    people: Page[incidents.PersonView],
    *,
    reveal: int | None = None,
) -> dict[str, Any]:
    ws = workspace_of(request)
    lang = language_of(request)
    t = translator(lang)
    now = datetime.now(UTC)
    view = incidents.current_incident(ws, incident_id)
    revealed = None
    if reveal is not None:
        revealed = incidents.affected_people(
            ws, incident_id, limit=PAGE, offset=people.offset, reveal=True
        )
        revealed.items = [p for p in revealed.items if p.customer_id == reveal]
    categories: dict[str, int] = {}
    for name, count in view.by_field.items():
        if name in BY_NAME:
            cat = category_of(name)
            categories[cat] = max(categories.get(cat, 0), count)
    total_notices = sum(view.notices.values())
    sent = view.notices.get("sent", 0)
    return {
        "v": view,
        "data": view.as_dict(now, ws.settings.timezone),
        "now": now,
        "people": people,
        "revealed": {p.customer_id: p for p in revealed.items} if revealed else {},
        "by_country": charts.bar_chart(
            t("People affected per country"), view.by_country, testid="chart-countries"
        ),
        "by_category": charts.bar_chart(
            t("People affected per data category"),
            categories,
            label=lambda c: c.replace("_", " "),
            testid="chart-categories",
        ),
        "by_field_label": _field_label(lang),
        "notices_total": total_notices,
        "notices_sent": sent,
        "send_jobs": _send_jobs(request, incident_id),
        "relay": ws.settings.smtp_relay or "",
    }


def _send_jobs(request: Request, incident_id: int) -> list[Any]:
    jobs = request.app.state.jobs.list("send")
    return [j for j in jobs if j.target == f"incident {incident_id}"][:1]


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: Id, who: Viewer, offset: Offset = 0) -> Response:
    """An incident: timeline, affected breakdown, obligations with countdowns, notices."""
    people = api.people_page(request, who, incident_id, PAGE, offset, reveal=False)
    # A send job in progress shows on the page: its state is part of what the page shows.
    jobs = tuple(
        (j.id, j.state, j.done, j.total, j.error) for j in _send_jobs(request, incident_id)
    )
    return render_kept(
        request,
        "incident.html",
        (incident_id, offset, jobs),
        lambda: _incident_context(request, incident_id, people),
    )


@router.post("/incidents/{incident_id}/people/{customer_id}/reveal")
def incident_reveal(
    request: Request, incident_id: Id, customer_id: Id, who: Analyst, offset: Offset = 0
) -> Response:
    """Show one person's contact data unmasked; the request is written to the audit log."""
    ws = workspace_of(request)
    audit.record(
        ws,
        who.name,
        "reveal",
        f"incident {incident_id} person",
        detail={"customers": [customer_id]},
        address=client_address(request),
    )
    people = api.people_page(request, who, incident_id, PAGE, offset, reveal=False)
    context = _incident_context(request, incident_id, people, reveal=customer_id)
    return render(request, "incident.html", context)


@router.get("/incidents/{incident_id}/people.csv")
def incident_export(request: Request, incident_id: Id, who: Analyst) -> Response:
    """Every affected person as CSV; the export is logged."""
    body = api.export_people_csv(workspace_of(request), who, client_address(request), incident_id)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="incident-{incident_id}.csv"'},
    )


@router.post("/incidents/{incident_id}/risk")
def incident_risk(
    request: Request,
    incident_id: Id,
    who: Analyst,
    level: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    """Record the risk assessment."""
    ws = workspace_of(request)
    incidents.assess_risk(ws, incident_id, level, reason)
    audit.record(ws, who.name, "change", f"incident {incident_id}", detail={"risk": level})
    return _see_other(f"/incidents/{incident_id}")


@router.post("/incidents/{incident_id}/notices/prepare")
def incident_prepare(request: Request, incident_id: Id, who: Analyst) -> Response:
    """Render the notices of this incident."""
    ws = workspace_of(request)
    report = delivery.prepare_notices(ws, incident_id)
    audit.record(
        ws, who.name, "change", f"incident {incident_id}", detail={"prepared": report.prepared}
    )
    return _see_other(f"/incidents/{incident_id}#notices")


@router.post("/incidents/{incident_id}/notices/send")
def incident_send(
    request: Request,
    incident_id: Id,
    who: Analyst,
    smtp: Annotated[str, Form(max_length=300)],
    starttls: Annotated[bool, Form()] = False,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Send the prepared notices through the relay given in the form, in the background."""
    try:
        body = api.SendIn(
            smtp=smtp.strip(),
            starttls=starttls,
            username=username or None,
            password=password or None,  # type: ignore[arg-type]
        )
    except ValueError:
        raise InvalidInput(
            f"{smtp!r} is not an SMTP relay", hint="write it as HOST:PORT, e.g. smtp.example.it:25"
        ) from None
    job = api.start_send(workspace_of(request), request.app.state.jobs, who, incident_id, body)
    return _see_other(f"/jobs/{job.id}")


# --- administration ------------------------------------------------------------------------


@router.get("/settings")
def settings_page(request: Request, who: Admin) -> Response:
    """Monitored domains and ranges, alert targets."""
    ws = workspace_of(request)
    saved = request.query_params.get("saved") == "1"
    return render(request, "settings.html", {"s": workspace.editable_settings(ws), "saved": saved})


@router.post("/settings")
def settings_save(
    request: Request,
    who: Admin,
    mail_domains: Annotated[str, Form(max_length=20_000)] = "",
    phone_ranges: Annotated[str, Form(max_length=20_000)] = "",
    security_contacts: Annotated[str, Form(max_length=20_000)] = "",
    alert_webhooks: Annotated[str, Form(max_length=20_000)] = "",
    slack_webhooks: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """Save the settings; one value per line."""
    ws = workspace_of(request)
    changes = {
        "mail_domains": mail_domains.splitlines(),
        "phone_ranges": phone_ranges.splitlines(),
        "security_contacts": security_contacts.splitlines(),
        "alert_webhooks": alert_webhooks.splitlines(),
        "slack_webhooks": slack_webhooks.splitlines(),
    }
    workspace.update_settings(ws, changes)
    audit.record(ws, who.name, "change", "settings", detail={"keys": sorted(changes)})
    return _see_other("/settings?saved=1")


@router.get("/audit")
def audit_page(
    request: Request,
    who: Admin,
    offset: Offset = 0,
    action: Annotated[str | None, Query(max_length=50)] = None,
) -> Response:
    """The audit log (administrators)."""
    total, rows = audit.list_events(
        workspace_of(request), limit=50, offset=offset, action=action or None
    )
    return render(
        request,
        "audit.html",
        {"rows": rows, "total": total, "offset": offset, "limit": 50, "actions": audit.ACTIONS},
    )


def _users_page(request: Request, **extra: Any) -> Response:
    ws = workspace_of(request)
    return render(
        request,
        "users.html",
        {
            "users": users.list_users(ws),
            "tokens": users.list_tokens(ws),
            "roles": users.ROLES,
            "saved": request.query_params.get("saved") == "1",
            **extra,
        },
    )


@router.get("/users")
def users_page(request: Request, who: Admin) -> Response:
    """Users and API tokens (administrators)."""
    return _users_page(request)


@router.post("/users")
def users_add(
    request: Request,
    who: Admin,
    username: Annotated[str, Form(max_length=100)],
    role: Annotated[str, Form(max_length=16)],
    password: Annotated[str, Form(max_length=1000)],
) -> Response:
    """Create a user."""
    ws = workspace_of(request)
    info = users.add_user(ws, username, password, role)
    audit.record(ws, who.name, "change", f"user {info.username}", detail={"role": info.role})
    return _see_other("/users?saved=1")


@router.post("/users/{username}/disable")
def users_disable(request: Request, username: str, who: Admin) -> Response:
    """Disable a user; their sessions end and tokens stop working."""
    ws = workspace_of(request)
    users.disable_user(ws, username)
    audit.record(ws, who.name, "change", f"user {username}", detail={"disabled": True})
    return _see_other("/users?saved=1")


@router.post("/tokens")
def tokens_add(
    request: Request,
    who: Admin,
    name: Annotated[str, Form(max_length=100)],
    username: Annotated[str, Form(max_length=100)],
) -> Response:
    """Create an API token; it is shown on this page once."""
    ws = workspace_of(request)
    secret, info = users.add_token(ws, name, username)
    audit.record(ws, who.name, "change", f"token {info.id}", detail={"user": info.username})
    return _users_page(request, new_token=secret)


@router.post("/tokens/{token_id}/revoke")
def tokens_revoke(request: Request, token_id: Id, who: Admin) -> Response:
    """Revoke an API token."""
    ws = workspace_of(request)
    users.revoke_token(ws, token_id)
    audit.record(ws, who.name, "change", f"token {token_id}", detail={"revoked": True})
    return _see_other("/users?saved=1")
