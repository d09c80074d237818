"""Public pages for customers: "Was I affected?" and "Is this really us?".

These routes sit outside staff sign-in and protect themselves: a signed double-submit
token on every form (cookie and hidden field), a sliding-window limit per client address
(``selfcheck_per_hour``, 429 with ``Retry-After``), a cap on the size of every body and
field, no caching, and no personal data in any log line. The answers that could reveal
whether someone is a customer never appear on screen: they go by e-mail to the address
the company holds, from a background worker, and the page is the same byte for byte.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import yaml
from babel.dates import format_date
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import callers, selfcheck
from ..errors import InvalidInput
from ..workspace import Workspace
from .api import Page
from .api import router as api_router
from .auth import Principal, analyst

router = APIRouter()

FORM_COOKIE = "canarino_public_form"
MAX_BODY = 32 * 1024  # the report's 2,000 characters, percent-encoded, with room to spare
MAX_FIELDS = 10
CHECK, VERIFY = "/public/check", "/public/verify"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

_env = Environment(
    loader=PackageLoader("canarino", "web/templates/public"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def _day(day: date, language: str) -> str:
    """A date as people write it: ``2 March 2026``, ``2 marzo 2026``."""
    # English dates in British order (2 March 2026), as the EU customers first served expect.
    return str(format_date(day, format="long", locale="en_GB" if language == "en" else language))


_env.filters["day"] = _day


@cache
def _texts() -> dict[str, dict[str, Any]]:
    text = (
        resources.files("canarino").joinpath("web/templates/public/texts.yaml").read_text("utf-8")
    )
    data: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return data


@cache
def _css() -> bytes:
    return resources.files("canarino").joinpath("web/templates/public/style.css").read_bytes()


@dataclass
class PublicState:
    """What the public pages keep between requests: the rate limiter and the mail worker."""

    limiter: selfcheck.RateLimiter
    mailer: selfcheck.PublicMailer


_state_lock = threading.Lock()


def _workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def public_state(request: Request) -> PublicState:
    """The app's public state, made on first use."""
    app_state = request.app.state
    with _state_lock:
        found: PublicState | None = getattr(app_state, "public", None)
        if found is None:
            ws = _workspace(request)
            found = PublicState(
                selfcheck.RateLimiter(ws.settings.selfcheck_per_hour, 3600.0),
                selfcheck.PublicMailer(ws),
            )
            app_state.public = found
        return found


class _Page:
    """Renders one public page in one language with the headers every page carries."""

    def __init__(self, request: Request, lang: str, home: str) -> None:
        self.ws = _workspace(request)
        self.lang, self.home = lang, home
        self.texts = _texts()[lang]

    def render(self, template: str, title_key: str, status: int = 200, **values: Any) -> Response:
        """The page as HTML."""
        company = self.ws.settings.company_name
        values.setdefault("error", None)
        html = _env.get_template(template).render(
            lang=self.lang,
            other="en" if self.lang == "it" else "it",
            home=self.home,
            company=company,
            T=self.texts,
            title=self.texts[title_key].format(company=company),
            **values,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def message(
        self, title_key: str, lines: list[str], *, status: int = 200, error: bool = False
    ) -> Response:
        """A page of a few sentences and a link back."""
        link = self.texts["back"] if error else self.texts["check_another"]
        return self.render(
            "message.html", title_key, status, lines=lines, error=error, link_text=link
        )


def _language(request: Request, form: dict[str, str] | None = None) -> str:
    asked = (form or {}).get("lang") or request.query_params.get("lang")
    return selfcheck.choose_page_language(request.headers.get("accept-language"), asked)


def _client(request: Request) -> str:
    """The rate-limit key: the client's IPv4 address, or its IPv6 /64 (one subscriber's net)."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


class _Refused(Exception):
    """A request body the public pages will not read: its status and the text to show."""

    def __init__(self, status: int, text_key: str) -> None:
        super().__init__(text_key)
        self.status, self.text_key = status, text_key


async def _read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of ``request``; :class:`_Refused` when too big or malformed."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise _Refused(415, "form_error")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _Refused(413, "size_error")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _Refused(413, "size_error")
    try:
        parsed = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except ValueError:
        raise _Refused(413, "size_error") from None
    return {k: v[0] for k, v in parsed.items() if v}


def _with_form_cookie(request: Request, response: Response, token: str) -> Response:
    ws = _workspace(request)
    response.set_cookie(
        FORM_COOKIE,
        token,
        max_age=int(selfcheck.FORM_TOKEN_TTL.total_seconds()),
        path="/public",
        httponly=True,
        samesite="strict",
        secure=ws.settings.public_url.lower().startswith("https://"),
    )
    return response


def _form_token(request: Request) -> str:
    """The visitor's current form token if still good, else a new one."""
    ws = _workspace(request)
    cookie = request.cookies.get(FORM_COOKIE)
    if cookie and selfcheck.check_form_token(ws, cookie, cookie):
        return cookie
    return selfcheck.issue_form_token(ws)


def _too_many(page: _Page, retry: float) -> Response:
    minutes = max(1, round(retry / 60))
    response = page.message(
        "error_title", [page.texts["rate_error"].format(minutes=minutes)], status=429, error=True
    )
    response.headers["Retry-After"] = str(int(retry) + 1)
    return response


async def _guard(request: Request, home: str) -> tuple[dict[str, str], _Page] | Response:
    """Rate limit, body limits and the form token, in that order; a refusal is a page."""
    page = _Page(request, _language(request), home)
    retry = public_state(request).limiter.hit(_client(request))
    if retry is not None:
        return _too_many(page, retry)
    try:
        form = await _read_form(request)
    except _Refused as refused:
        return page.message(
            "error_title", [page.texts[refused.text_key]], status=refused.status, error=True
        )
    page = _Page(request, _language(request, form), home)
    if not selfcheck.check_form_token(
        page.ws, request.cookies.get(FORM_COOKIE), form.get("csrf_token")
    ):
        return page.message("error_title", [page.texts["csrf_error"]], status=403, error=True)
    return form, page


# --- "Was I affected?" ---------------------------------------------------------------------


@router.get(CHECK, include_in_schema=False)
async def check_form(request: Request) -> Response:
    """The self-check form."""
    page = _Page(request, _language(request), CHECK)
    token = _form_token(request)
    return _with_form_cookie(request, page.render("check.html", "check_title", csrf=token), token)


@router.post(CHECK, include_in_schema=False)
async def check_submit(request: Request) -> Response:
    """Look the contact up, queue the answer, and say the same thing whatever it is."""
    guarded = await _guard(request, CHECK)
    if isinstance(guarded, Response):
        return guarded
    form, page = guarded
    try:
        lookup = await run_in_threadpool(selfcheck.lookup_contact, page.ws, form.get("contact", ""))
    except InvalidInput:
        return page.render(
            "check.html",
            "check_title",
            400,
            csrf=form["csrf_token"],
            error=page.texts["contact_error"],
        )
    public_state(request).mailer.submit(selfcheck.check_job(lookup, page.lang))
    return page.message("sent_title", [page.texts["sent_body"]])


@router.get(CHECK + "/open/{token}", include_in_schema=False)
async def open_link(request: Request, token: str) -> Response:
    """A button that opens the situation: mail scanners that follow links use nothing up."""
    page = _Page(request, _language(request), CHECK)
    retry = public_state(request).limiter.hit(_client(request))
    if retry is not None:
        return _too_many(page, retry)
    try:
        link = selfcheck.read_link(page.ws, token)
    except selfcheck.LinkError:
        return _link_invalid(page)
    page = _Page(
        request, _language(request) if "lang" in request.query_params else link.language, CHECK
    )
    form_token = _form_token(request)
    response = page.render("open.html", "open_title", token=token, csrf=form_token)
    return _with_form_cookie(request, response, form_token)


@router.post(CHECK + "/open/{token}", include_in_schema=False)
async def open_link_submit(request: Request, token: str) -> Response:
    """Use the link up and show the person's situation."""
    guarded = await _guard(request, CHECK)
    if isinstance(guarded, Response):
        return guarded
    _, page = guarded
    try:
        link = await run_in_threadpool(selfcheck.consume_link, page.ws, token)
    except selfcheck.LinkError:
        return _link_invalid(page)
    found = await run_in_threadpool(selfcheck.situation, page.ws, link.customer_ids, page.lang)
    return page.render("situation.html", "situation_title", situation=found)


def _link_invalid(page: _Page) -> Response:
    response = page.message("link_invalid_title", [page.texts["link_invalid_body"]], status=410)
    return response


# --- "Is this really us?" ------------------------------------------------------------------


@router.get(VERIFY, include_in_schema=False)
async def verify_form(request: Request) -> Response:
    """The caller-verification page: a code, or one's own contact."""
    page = _Page(request, _language(request), VERIFY)
    token = _form_token(request)
    return _with_form_cookie(request, page.render("verify.html", "verify_title", csrf=token), token)


@router.post(VERIFY + "/code", include_in_schema=False)
async def verify_code(request: Request) -> Response:
    """Say whether a code is one of ours; if not, what to do and how to report it."""
    guarded = await _guard(request, VERIFY)
    if isinstance(guarded, Response):
        return guarded
    form, page = guarded
    result = await run_in_threadpool(callers.check_code, page.ws, form.get("code", ""))
    if result.contact is not None:
        return page.render("verify_yes.html", "yes_title", contact=result.contact)
    return page.render(
        "verify_no.html", "no_title", lines=[page.texts["no_body"]], csrf=form["csrf_token"]
    )


@router.post(VERIFY + "/contact", include_in_schema=False)
async def verify_contact(request: Request) -> Response:
    """Queue the answer to the address we hold; on screen, the same advice for everyone."""
    guarded = await _guard(request, VERIFY)
    if isinstance(guarded, Response):
        return guarded
    form, page = guarded
    try:
        lookup = await run_in_threadpool(selfcheck.lookup_contact, page.ws, form.get("contact", ""))
    except InvalidInput:
        return page.render(
            "verify.html",
            "verify_title",
            400,
            csrf=form["csrf_token"],
            error=page.texts["contact_error"],
        )
    public_state(request).mailer.submit(callers.status_job(lookup, page.lang))
    return page.render(
        "verify_no.html",
        "contact_sent_title",
        lines=[page.texts["contact_sent_body"]],
        csrf=form["csrf_token"],
    )


@router.post(VERIFY + "/report", include_in_schema=False)
async def verify_report(request: Request) -> Response:
    """Record a report of a contact that was not us."""
    guarded = await _guard(request, VERIFY)
    if isinstance(guarded, Response):
        return guarded
    form, page = guarded
    try:
        await run_in_threadpool(
            lambda: callers.report_contact(
                page.ws,
                contact=form.get("contact", ""),
                channel=form.get("channel", ""),
                caller=form.get("caller", ""),
                text=form.get("text", ""),
            )
        )
    except InvalidInput:
        return page.render(
            "verify_no.html",
            "report_heading",
            400,
            lines=[page.texts["report_error"]],
            csrf=form["csrf_token"],
        )
    return page.message("report_thanks_title", [page.texts["report_thanks_body"]])


@router.get("/public/style.css", include_in_schema=False)
async def style() -> Response:
    """The public pages' style sheet (served here so the pages need no inline style)."""
    return Response(_css(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


# --- staff API: the outreach register ------------------------------------------------------
# Registered on the API router, like CLI modules register their commands on the base apps:
# the routes get its /api prefix, its sign-in and its problem details.

Analyst = Annotated[Principal, Depends(analyst)]


class ContactIn(BaseModel):
    """An outbound contact to register: a customer number or a contact point, not both."""

    customer_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Customer number.")
    contact: str | None = Field(
        None, max_length=selfcheck.MAX_CONTACT, description="E-mail address or phone number."
    )
    channel: Literal["phone", "sms", "email"]
    purpose: str = Field(
        min_length=1, max_length=callers.MAX_PURPOSE, description="Why, in the customer's words."
    )
    staff: str | None = Field(
        None,
        max_length=callers.MAX_STAFF,
        description="Name the customer will hear (default: your user name).",
    )
    ttl_minutes: int = Field(30, ge=1, le=10_080, description="Minutes the code stays valid.")


class ContactRegistered(BaseModel):
    """A registered contact with its code, shown only in this answer."""

    id: int
    code: str
    channel: str
    customer_id: int | None
    expires_at: AwareDatetime


class ContactOut(BaseModel):
    """A registered contact (the code is never stored, so never shown)."""

    id: int
    customer_id: int | None
    channel: str
    staff: str
    purpose: str
    created_at: AwareDatetime
    expires_at: AwareDatetime
    active: bool


@api_router.post("/callers", response_model=ContactRegistered, status_code=201, tags=["callers"])
def callers_register(request: Request, body: ContactIn, who: Analyst) -> ContactRegistered:
    """Register an outbound contact before making it (``canarino callers register``)."""
    if (body.customer_id is None) == (body.contact is None):
        raise InvalidInput("give either customer_id or contact")
    target: int | str = body.customer_id if body.customer_id is not None else str(body.contact)
    reg = callers.register_contact(
        _workspace(request),
        target,
        body.channel,
        body.purpose,
        body.staff or who.user.username,
        timedelta(minutes=body.ttl_minutes),
        actor=who.name,
    )
    return ContactRegistered(
        id=reg.id,
        code=reg.code,
        channel=reg.channel,
        customer_id=reg.customer_id,
        expires_at=reg.expires_at,
    )


@api_router.get("/callers", response_model=Page[ContactOut], tags=["callers"])
def callers_list(
    request: Request,
    who: Analyst,
    active: Annotated[bool, Query(description="Only contacts still valid.")] = False,
    limit: Annotated[int, Query(ge=1, le=500, description="Most items to return.")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
) -> Page[ContactOut]:
    """Registered outbound contacts, newest first (``canarino callers list``)."""
    ws, now = _workspace(request), datetime.now(UTC)
    rows = callers.list_contacts(ws, active_only=active, now=now, limit=limit, offset=offset)
    items = [ContactOut(**c.__dict__, active=c.active(now)) for c in rows]
    total = callers.count_contacts(ws, active_only=active, now=now)
    return Page(items=items, total=total, limit=limit, offset=offset)
