"""The JSON API under ``/api``: what the command line does, for machines.

Every route calls one library function and returns a pydantic model; lists are pages
(``limit``/``offset`` with ``total``); errors are RFC 9457 problem details. Personal data
comes masked unless ``reveal=true`` is asked by an analyst, and every read of it is
written to the audit log.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
)

from .. import (
    audit,
    customers,
    delivery,
    incidents,
    recipients,
    shares,
    sightings,
    store,
    trace,
    users,
    workspace,
)
from ..errors import InvalidInput, NotFound, PermissionDenied
from ..store import count_customers
from ..workspace import Workspace
from .auth import Principal, admin, analyst, client_address, viewer, workspace_of
from .jobs import Job, Jobs, Progress

DESCRIPTION = (
    "Find out fast that shared customer data leaked, who leaked it, and respond. "
    "Authenticate with `Authorization: Bearer <token>` (create one with "
    "`canarino tokens add NAME --user USER`). Errors are RFC 9457 problem details."
)
T = TypeVar("T")
Limit = Annotated[int, Query(ge=1, le=500, description="Most items to return.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
Viewer = Annotated[Principal, Depends(viewer)]
Analyst = Annotated[Principal, Depends(analyst)]
Admin = Annotated[Principal, Depends(admin)]

Id = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="A number shown in lists.")]


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """Refuse query parameters the route does not take: a typo must not pass silently."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise InvalidInput(f"unknown query parameter(s): {shown}", hint="see /api/openapi.json")


router = APIRouter(prefix="/api", dependencies=[Depends(viewer), Depends(known_query)])


# --- models --------------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Strict(BaseModel):
    """A request body: exact types, no unknown keys."""

    model_config = ConfigDict(extra="forbid")


def _iso_only(value: Any) -> Any:
    """Times come as ISO 8601 text; a bare number is refused rather than read as epoch."""
    if isinstance(value, int | float):
        raise ValueError("give the time as ISO 8601 text, e.g. 2026-03-02T10:00+01:00")
    return value


When = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong and how to fix it."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


PROBLEMS = {
    "400": "The request body could not be read.",
    "401": "No valid session or API token.",
    "403": "The role does not allow this, or the CSRF token is missing.",
    "404": "No such thing, or no such path.",
    "422": "Invalid input; ``errors`` lists where.",
    "500": "An unexpected error; it was logged.",
}


def _document_problems(schema: dict[str, Any]) -> None:
    """Every operation can answer with these problems; say so in the schema."""
    ref = {"$ref": "#/components/schemas/Problem"}
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
        Problem.model_json_schema()
    )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, text in PROBLEMS.items():
                responses[code] = {
                    "description": text,
                    "content": {"application/problem+json": {"schema": ref}},
                }
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)


class Me(BaseModel):
    """The caller."""

    username: str
    role: str
    via: str


class RecipientOut(BaseModel):
    """A recipient of customer data."""

    id: int
    name: str
    kind: str
    parent: str | None


class RecipientIn(Strict):
    """A new recipient."""

    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    kind: Literal["vendor", "employee", "system"] = "vendor"
    parent: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S")


class RecipientDetail(BaseModel):
    """A recipient with its employer, staff and authorised senders."""

    id: int
    name: str
    kind: str
    parent: dict[str, Any] | None
    staff: list[dict[str, Any]]
    allowed_senders: list[dict[str, str]]
    created_at: str


class SenderIn(Strict):
    """Infrastructure a recipient may contact customers from."""

    kind: Literal["dkim", "ip", "caller_id"]
    value: str = Field(min_length=1, max_length=255)


class ShareOut(BaseModel):
    """A share as the ledger recorded it."""

    id: int
    recipient: str
    recipient_id: int
    created_at: str
    fields: list[str]
    customer_filter: str
    rows: int
    export_sha256: str


class ShareIn(Strict):
    """A new share: who gets which fields of which customers."""

    recipient: str = Field(min_length=1, max_length=200)
    fields: list[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]] = Field(
        min_length=1, max_length=50
    )
    customers: str = Field("", max_length=500, description="e.g. 'country=IT region=MI'")


class ShareCreated(BaseModel):
    """What a new share produced."""

    share_id: int
    recipient: str
    rows: int
    fields: list[str]
    sha256: str
    detection_limit: float
    download: str


class ImportOut(BaseModel):
    """What a customer import did."""

    rows: int
    imported: int
    unchanged: int
    columns: dict[str, str]
    problems: list[dict[str, Any]]


class Count(BaseModel):
    """A number."""

    count: int


class JobOut(BaseModel):
    """Background work and how far it got."""

    id: str
    kind: str
    target: str
    state: str
    done: int
    total: int
    percent: int | None
    result: dict[str, Any]
    error: str | None
    started_at: str


class TraceSummary(BaseModel):
    """A stored trace in short."""

    trace_id: int
    created_at: str
    source: str
    rows_read: int
    customers_matched: int
    top_suspect: str | None


class IncidentIn(Strict):
    """A new incident on a trace."""

    trace_id: StrictInt = Field(ge=1, le=2**31 - 1)
    title: str | None = Field(None, max_length=300)
    aware_at: When | None = None
    occurred_at: When | None = None


class RiskIn(Strict):
    """A risk assessment."""

    level: Literal["none", "risk", "high_risk"]
    reason: str = Field(min_length=1, max_length=2000)


class IncidentOut(BaseModel):
    """An incident with its counts, obligations and notices; no personal data."""

    id: int
    title: str
    status: str
    trace_id: int | None
    aware_at: str | None
    occurred_at: str | None
    contained_at: str | None
    people: int
    risk: str
    risk_reason: str
    by_field: dict[str, int]
    by_country: dict[str, int]
    by_jurisdiction: dict[str, int]
    obligations: list[dict[str, Any]]
    uncovered_jurisdictions: list[str]
    notices: dict[str, int]


class PersonOut(BaseModel):
    """An affected person; contact data masked unless revealed."""

    customer_id: int
    name: str
    email: str
    phone: str
    country: str
    exposed: list[str]
    revealed: bool


class SendIn(Strict):
    """Where and how to send an incident's notices."""

    smtp: str = Field(pattern=r"^[^\s:]+:\d{1,5}$", description="SMTP relay as HOST:PORT")
    starttls: StrictBool = False
    username: str | None = Field(None, max_length=200)
    password: SecretStr | None = None
    workers: StrictInt = Field(4, ge=1, le=32)


class SightingIn(Strict):
    """A contact with a monitored address or number."""

    channel: Literal["email", "sms", "voice", "dump"]
    contact: str = Field(min_length=1, max_length=320)
    seen_at: When
    dkim_domain: str | None = Field(None, max_length=255)
    sender_ip: str | None = Field(None, max_length=64)
    caller_id: str | None = Field(None, max_length=64)
    uses_name: StrictBool = False
    reference: str | None = Field(None, max_length=64)


class SightingOut(BaseModel):
    """A sighting; the contact itself is never returned."""

    id: int
    seen_at: str
    channel: str
    kind: str
    strong: bool


class UserOut(BaseModel):
    """A user of the web app."""

    id: int
    username: str
    role: str
    disabled: bool
    created_at: str


class UserIn(Strict):
    """A new user."""

    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
    password: SecretStr = Field(min_length=12, max_length=1000)
    role: Literal["viewer", "analyst", "admin"]


class AuditOut(BaseModel):
    """One audit log entry."""

    id: int
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    address: str | None


class SettingsOut(BaseModel):
    """The settings an administrator can change here."""

    mail_domains: list[str]
    phone_ranges: list[str]
    security_contacts: list[str]
    alert_webhooks: list[str]
    slack_webhooks: list[str]


class SettingsIn(Strict):
    """New values; keys left out stay as they are."""

    mail_domains: list[str] | None = Field(None, min_length=1, max_length=100)
    phone_ranges: list[str] | None = Field(None, max_length=100)
    security_contacts: list[str] | None = Field(None, max_length=100)
    alert_webhooks: list[str] | None = Field(None, max_length=100)
    slack_webhooks: list[str] | None = Field(None, max_length=100)


# --- helpers -------------------------------------------------------------------------------


def _ws(request: Request) -> Workspace:
    return workspace_of(request)


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


def _job(job: Job) -> JobOut:
    return JobOut(**job.as_dict())


def _accepted(job: Job) -> JSONResponse:
    return JSONResponse(
        _job(job).model_dump(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"}
    )


def _uploads(ws: Workspace) -> Path:
    """A private folder for uploaded files while they are read."""
    folder = ws.settings.workspace / "uploads"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def save_upload(ws: Workspace, upload: UploadFile) -> Path:
    """Copy an upload to a private file in the workspace; the caller deletes it."""
    name = Path(upload.filename or "upload").name or "upload"
    folder = Path(tempfile.mkdtemp(dir=_uploads(ws)))
    path = folder / name
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, length=1 << 20)
    return path


def discard_upload(path: Path) -> None:
    """Remove a saved upload and its private folder."""
    shutil.rmtree(path.parent, ignore_errors=True)


def start_trace(ws: Workspace, jobs: Jobs, who: Principal, path: Path, password: str | None) -> Job:
    """Trace an uploaded file in the background; the upload is removed when done."""

    def work(progress: Progress) -> dict[str, Any]:
        try:
            report = trace.run_trace(ws, path, progress=progress, password=password)
        finally:
            discard_upload(path)
        return {"trace_id": report.trace_id, "suspects": len(report.suspects)}

    return jobs.start("trace", who.name, work, target=path.name)


def start_send(ws: Workspace, jobs: Jobs, who: Principal, incident_id: Id, body: SendIn) -> Job:
    """Send an incident's prepared notices in the background."""
    host, _, port = body.smtp.rpartition(":")
    if not 0 < int(port) < 65536:
        raise InvalidInput(f"{body.smtp!r}: the port must be between 1 and 65535")
    incidents.show_incident(ws, incident_id)  # a missing incident fails now, not in the job

    def work(progress: Progress) -> dict[str, Any]:
        report = delivery.send_notices(
            ws,
            incident_id,
            host=host,
            port=int(port),
            progress=progress,
            starttls=body.starttls,
            username=body.username,
            password=body.password,
            workers=body.workers,
        )
        return dict(report.__dict__)

    audit.record(ws, who.name, "send", f"incident {incident_id}", detail={"relay": body.smtp})
    return jobs.start("send", who.name, work, target=f"incident {incident_id}")


# A masked page of people reloaded by the same caller is logged once per this many seconds.
VIEW_WINDOW = 600.0


class ViewLog:
    """Masked views already written to the audit log, so a reload does not write again.

    Kept in memory, per server process: with ``--workers N`` the same view may be logged
    up to N times per window. Revealing and exporting are logged on every request.
    """

    def __init__(self, window: float = VIEW_WINDOW) -> None:
        self.window = window
        self._seen: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()

    def first(self, key: tuple[Any, ...]) -> bool:
        """Whether ``key`` was not logged within the window (and note it as logged now)."""
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.window:
                return False
            if len(self._seen) >= 10_000:
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.window}
            self._seen[key] = now
            return True


def people_page(
    request: Request,
    who: Principal,
    incident_id: Id,
    limit: int,
    offset: int,
    reveal: bool,
) -> store.Page[incidents.PersonView]:
    """A page of affected people, audit-logged; revealing needs analyst rights.

    Every reveal is logged; a masked page once per caller, page and :data:`VIEW_WINDOW`.
    """
    if reveal and not who.user.may("analyst"):
        raise PermissionDenied(
            f"your role ({who.user.role}) cannot reveal personal data; it needs analyst"
        )
    ws = _ws(request)
    page = incidents.affected_people(ws, incident_id, limit=limit, offset=offset, reveal=reveal)
    shown = [p.customer_id for p in page.items]
    target = f"incident {incident_id} people"
    log: ViewLog = request.app.state.view_log
    if reveal or log.first((who.name, target, offset, limit, tuple(shown))):
        audit.record(
            ws,
            who.name,
            "reveal" if reveal else "view",
            target,
            detail={"offset": offset, "limit": limit, "customers": shown},
            address=client_address(request),
        )
    return page


def export_people_csv(ws: Workspace, who: Principal, address: str | None, incident_id: Id) -> str:
    """Every affected person of an incident, unmasked, as CSV; the export is logged."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer_id", "name", "email", "phone", "country", "exposed"])
    offset, total = 0, None
    while total is None or offset < total:
        page = incidents.affected_people(ws, incident_id, limit=1000, offset=offset, reveal=True)
        total = page.total
        for p in page.items:
            writer.writerow(
                [
                    p.customer_id,
                    *(
                        shares.spreadsheet_safe(v)
                        for v in (p.name, p.email, p.phone, p.country, " ".join(p.exposed))
                    ),
                ]
            )
        offset += 1000
        if not page.items:
            break
    audit.record(
        ws,
        who.name,
        "export",
        f"incident {incident_id} people",
        detail={"rows": total or 0, "format": "csv"},
        address=address,
    )
    return out.getvalue()


# --- routes --------------------------------------------------------------------------------


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI description of this API (the ``/api`` routes only)."""
    app = request.app
    if not getattr(app.state, "api_schema", None):
        schema = dict(app.openapi())
        schema["info"] = {**schema.get("info", {}), "title": "canarino API"}
        schema["paths"] = {
            p: v for p, v in schema.get("paths", {}).items() if p.startswith("/api/")
        }
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
        }
        schema["security"] = [{"bearer": []}]
        _document_problems(schema)
        app.state.api_schema = schema
    return JSONResponse(app.state.api_schema)


@router.get("/me", response_model=Me)
def me(who: Viewer) -> Me:
    """Who the API thinks you are."""
    return Me(username=who.user.username, role=who.user.role, via=who.via)


@router.get("/recipients", response_model=Page[RecipientOut])
def recipients_list(request: Request, limit: Limit = 50, offset: Offset = 0) -> Page[RecipientOut]:
    """Recipients, by name."""
    rows = recipients.list_recipients(_ws(request))
    items = [RecipientOut(**r.__dict__) for r in rows[offset : offset + limit]]
    return Page(items=items, total=len(rows), limit=limit, offset=offset)


@router.post("/recipients", response_model=RecipientOut, status_code=201)
def recipients_add(request: Request, body: RecipientIn, who: Analyst) -> RecipientOut:
    """Register a recipient (``canarino recipients add``)."""
    ws = _ws(request)
    info = recipients.add_recipient(ws, body.name, body.kind, body.parent)
    audit.record(ws, who.name, "change", f"recipient {info.id}", detail={"added": True})
    return RecipientOut(**info.__dict__)


@router.get("/recipients/{recipient_id}", response_model=RecipientDetail)
def recipients_show(request: Request, recipient_id: Id) -> RecipientDetail:
    """One recipient with its staff and authorised senders."""
    return RecipientDetail(**recipients.recipient_detail(_ws(request), recipient_id))


@router.post("/recipients/{recipient_id}/senders", response_model=RecipientDetail, status_code=201)
def recipients_allow(
    request: Request, recipient_id: Id, body: SenderIn, who: Analyst
) -> RecipientDetail:
    """Authorise a recipient's sender (``canarino recipients allow``)."""
    ws = _ws(request)
    name = recipients.recipient_detail(ws, recipient_id)["name"]
    sightings.allow_sender(ws, name, body.kind, body.value)
    audit.record(ws, who.name, "change", f"recipient {recipient_id}", detail={"allow": body.kind})
    return RecipientDetail(**recipients.recipient_detail(ws, recipient_id))


@router.get("/customers/count", response_model=Count)
def customers_count(request: Request) -> Count:
    """How many customers the workspace holds."""
    with _ws(request).db.session() as s:
        return Count(count=count_customers(s))


@router.post("/customers/import", response_model=ImportOut)
def customers_import(
    request: Request,
    who: Analyst,
    file: Annotated[UploadFile, File(description="CSV with a header row")],
    country: Annotated[str | None, Form(max_length=60)] = None,
) -> ImportOut:
    """Import customers from a CSV file (``canarino customers import``)."""
    ws = _ws(request)
    path = save_upload(ws, file)
    try:
        report = customers.import_customers(ws, path, default_country=country)
    finally:
        discard_upload(path)
    audit.record(
        ws,
        who.name,
        "change",
        "customers",
        detail={"imported": report.imported},
        address=client_address(request),
    )
    return ImportOut(
        rows=report.rows,
        imported=report.imported,
        unchanged=report.unchanged,
        columns=report.columns,
        problems=[{"line": p.line, "reason": p.reason} for p in report.problems],
    )


@router.get("/shares", response_model=Page[ShareOut])
def shares_list(
    request: Request,
    limit: Limit = 50,
    offset: Offset = 0,
    recipient_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Page[ShareOut]:
    """Shares, newest first."""
    page = shares.list_shares(_ws(request), limit=limit, offset=offset, recipient_id=recipient_id)
    return Page(
        items=[ShareOut(**s.as_dict()) for s in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


def exports_folder(ws: Workspace) -> Path:
    """Where share exports made through the web are kept."""
    folder = ws.settings.workspace / "exports"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@router.post("/shares", response_model=ShareCreated, status_code=201)
def shares_create(request: Request, body: ShareIn, who: Analyst) -> ShareCreated:
    """Make the export a recipient gets, with its canaries, and record it (``canarino share``)."""
    ws = _ws(request)
    folder = exports_folder(ws)
    tmp = folder / f".new-{secrets.token_hex(8)}.csv"
    try:
        fields = ",".join(body.fields)
        result = shares.create_share(
            ws, body.recipient, fields, tmp, customer_filter=body.customers
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    os.replace(tmp, folder / f"share-{result.share_id}.csv")
    audit.record(ws, who.name, "change", f"share {result.share_id}", detail={"created": True})
    return ShareCreated(
        share_id=result.share_id,
        recipient=result.recipient,
        rows=result.customers + result.canaries,
        fields=result.fields,
        sha256=result.sha256,
        detection_limit=round(result.detection_limit, 4),
        download=f"/api/shares/{result.share_id}/export",
    )


@router.get("/shares/{share_id}", response_model=ShareOut)
def shares_show(request: Request, share_id: Id) -> ShareOut:
    """One share."""
    return ShareOut(**shares.get_share(_ws(request), share_id).as_dict())


@router.get("/shares/{share_id}/export", response_class=FileResponse)
def shares_export(request: Request, share_id: Id, who: Analyst) -> Response:
    """Download a share's export file (made through the web); the download is logged."""
    ws = _ws(request)
    shares.get_share(ws, share_id)
    path = exports_folder(ws) / f"share-{share_id}.csv"
    if not path.is_file():
        raise NotFound(
            f"share {share_id} was not made through the web, so its file is not kept here",
            hint="the file was written where the 'canarino share --out' command put it",
        )
    audit.record(
        ws,
        who.name,
        "export",
        f"share {share_id}",
        detail={"format": "csv"},
        address=client_address(request),
    )
    return FileResponse(path, media_type="text/csv", filename=f"share-{share_id}.csv")


@router.post("/traces", response_model=JobOut, status_code=202)
def traces_create(
    request: Request,
    who: Analyst,
    file: Annotated[UploadFile, File(description="The leaked file or archive")],
    password: Annotated[str | None, Form(max_length=1000)] = None,
) -> JSONResponse:
    """Trace a leaked file in the background (``canarino trace``); poll the job."""
    ws = _ws(request)
    path = save_upload(ws, file)
    return _accepted(start_trace(ws, _jobs(request), who, path, password or None))


@router.get("/traces", response_model=Page[TraceSummary])
def traces_list(request: Request, limit: Limit = 50, offset: Offset = 0) -> Page[TraceSummary]:
    """Stored traces, newest first (``canarino traces``)."""
    rows = trace.list_traces(_ws(request))
    items = [TraceSummary(**r) for r in rows[offset : offset + limit]]
    return Page(items=items, total=len(rows), limit=limit, offset=offset)


@router.get("/traces/{trace_id}")
def traces_show(request: Request, trace_id: Id) -> dict[str, Any]:
    """A stored trace: suspects with evidence, scope; no personal data."""
    return trace.get_trace_report(_ws(request), trace_id)


@router.get("/jobs/{job_id}", response_model=JobOut)
def jobs_show(request: Request, job_id: str) -> JobOut:
    """A background job's progress and result."""
    return _job(_jobs(request).get(job_id))


def _incident(ws: Workspace, view: incidents.IncidentView) -> IncidentOut:
    return IncidentOut(**view.as_dict(datetime.now(UTC), ws.settings.timezone))


@router.get("/incidents", response_model=Page[IncidentOut])
def incidents_list(request: Request, limit: Limit = 50, offset: Offset = 0) -> Page[IncidentOut]:
    """Incidents, newest first (``canarino incidents list``)."""
    ws = _ws(request)
    rows = incidents.current_incidents(ws)
    items = [_incident(ws, v) for v in rows[offset : offset + limit]]
    return Page(items=items, total=len(rows), limit=limit, offset=offset)


@router.post("/incidents", response_model=IncidentOut, status_code=201)
def incidents_open(request: Request, body: IncidentIn, who: Analyst) -> IncidentOut:
    """Open an incident on a trace (``canarino incidents open``)."""
    ws = _ws(request)
    view = incidents.open_incident(
        ws, body.trace_id, title=body.title, aware_at=body.aware_at, occurred_at=body.occurred_at
    )
    audit.record(ws, who.name, "change", f"incident {view.id}", detail={"opened": True})
    return _incident(ws, view)


@router.get("/incidents/{incident_id}", response_model=IncidentOut)
def incidents_show(request: Request, incident_id: Id) -> IncidentOut:
    """An incident: counts, obligations with deadlines, notices (``canarino incidents show``)."""
    ws = _ws(request)
    return _incident(ws, incidents.current_incident(ws, incident_id))


@router.post("/incidents/{incident_id}/risk", response_model=IncidentOut)
def incidents_risk(request: Request, incident_id: Id, body: RiskIn, who: Analyst) -> IncidentOut:
    """Record the risk assessment; obligations are recomputed (``canarino incidents risk``)."""
    ws = _ws(request)
    view = incidents.assess_risk(ws, incident_id, body.level, body.reason)
    audit.record(ws, who.name, "change", f"incident {incident_id}", detail={"risk": body.level})
    return _incident(ws, view)


@router.get("/incidents/{incident_id}/people", response_model=Page[PersonOut])
def incidents_people(
    request: Request,
    incident_id: Id,
    who: Viewer,
    limit: Limit = 50,
    offset: Offset = 0,
    reveal: Annotated[bool, Query(description="Unmasked (analysts; logged).")] = False,
) -> Page[PersonOut]:
    """Affected people of an incident, masked unless ``reveal``; views are audit-logged."""
    page = people_page(request, who, incident_id, limit, offset, reveal)
    return Page(
        items=[PersonOut(**p.__dict__) for p in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/incidents/{incident_id}/people.csv", response_class=Response)
def incidents_people_csv(request: Request, incident_id: Id, who: Analyst) -> Response:
    """Every affected person, unmasked, as CSV; the export is logged."""
    body = export_people_csv(_ws(request), who, client_address(request), incident_id)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="incident-{incident_id}.csv"'},
    )


@router.post("/incidents/{incident_id}/notices/prepare")
def notices_prepare(request: Request, incident_id: Id, who: Analyst) -> dict[str, Any]:
    """Render one notice per affected person (``canarino notices prepare``)."""
    ws = _ws(request)
    report = delivery.prepare_notices(ws, incident_id)
    audit.record(
        ws, who.name, "change", f"incident {incident_id}", detail={"prepared": report.prepared}
    )
    return dict(report.__dict__)


@router.post("/incidents/{incident_id}/notices/send", response_model=JobOut, status_code=202)
def notices_send(request: Request, incident_id: Id, body: SendIn, who: Analyst) -> JSONResponse:
    """Send the prepared notices through an SMTP relay in the background; poll the job."""
    return _accepted(start_send(_ws(request), _jobs(request), who, incident_id, body))


@router.get("/incidents/{incident_id}/notices", response_model=dict[str, int])
def notices_status(request: Request, incident_id: Id) -> dict[str, int]:
    """An incident's notices by delivery state (``canarino notices status``)."""
    return delivery.notice_states(_ws(request), incident_id)


@router.get("/sightings", response_model=Page[SightingOut])
def sightings_list(request: Request, limit: Limit = 50, offset: Offset = 0) -> Page[SightingOut]:
    """Sightings, newest first; contacts are never returned."""
    page = sightings.recent_sightings(_ws(request), limit=limit, offset=offset)
    return Page(
        items=[SightingOut(**s.as_dict()) for s in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.post("/sightings")
def sightings_import(
    request: Request,
    body: Annotated[list[SightingIn], Body(max_length=10_000)],
    who: Analyst,
) -> dict[str, Any]:
    """Record sightings (``canarino sightings import``)."""
    ws = _ws(request)
    items = [sightings.SightingIn(**s.model_dump()) for s in body]
    report = sightings.record_sightings(ws, items)
    audit.record(ws, who.name, "change", "sightings", detail={"recorded": report.recorded})
    return dict(report.__dict__)


@router.get("/sightings/attribution")
def sightings_attribution(request: Request, strong_only: bool = False) -> dict[str, Any]:
    """Recipients whose canaries are being contacted (``canarino sightings trace``)."""
    return sightings.attribute_sightings(_ws(request), strong_only=strong_only).as_dict()


@router.get("/users", response_model=list[UserOut])
def users_list(request: Request, who: Admin) -> list[UserOut]:
    """Users of the web app (``canarino users list``)."""
    return [
        UserOut(**{**u.__dict__, "created_at": u.created_at.isoformat(timespec="seconds")})
        for u in users.list_users(_ws(request))
    ]


@router.post("/users", response_model=UserOut, status_code=201)
def users_add(request: Request, body: UserIn, who: Admin) -> UserOut:
    """Create a user (``canarino users add``)."""
    ws = _ws(request)
    u = users.add_user(ws, body.username, body.password.get_secret_value(), body.role)
    audit.record(ws, who.name, "change", f"user {u.username}", detail={"role": u.role})
    return UserOut(**{**u.__dict__, "created_at": u.created_at.isoformat(timespec="seconds")})


@router.post("/users/{username}/disable", response_model=UserOut)
def users_disable(request: Request, username: str, who: Admin) -> UserOut:
    """Disable a user (``canarino users disable``)."""
    ws = _ws(request)
    u = users.disable_user(ws, username)
    audit.record(ws, who.name, "change", f"user {u.username}", detail={"disabled": True})
    return UserOut(**{**u.__dict__, "created_at": u.created_at.isoformat(timespec="seconds")})


@router.get("/audit", response_model=Page[AuditOut])
def audit_list(
    request: Request,
    who: Admin,
    limit: Limit = 50,
    offset: Offset = 0,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=50)] = None,
) -> Page[AuditOut]:
    """The audit log, newest first (administrators)."""
    total, rows = audit.list_events(
        _ws(request), limit=limit, offset=offset, actor=actor, action=action
    )
    return Page(
        items=[AuditOut(**e.as_dict()) for e in rows], total=total, limit=limit, offset=offset
    )


@router.get("/settings", response_model=SettingsOut)
def settings_show(request: Request, who: Admin) -> SettingsOut:
    """Monitored domains and ranges and alert targets."""
    return SettingsOut(**workspace.editable_settings(_ws(request)).as_dict())


@router.put("/settings", response_model=SettingsOut)
def settings_update(request: Request, body: SettingsIn, who: Admin) -> SettingsOut:
    """Change monitored domains and ranges and alert targets; written to canarino.toml."""
    ws = _ws(request)
    changes = {k: v for k, v in body.model_dump().items() if v is not None}
    result = workspace.update_settings(ws, changes)
    audit.record(ws, who.name, "change", "settings", detail={"keys": sorted(changes)})
    return SettingsOut(**result.as_dict())
