"""Server-rendered pages: the Jinja2 environment, language choice and the ``render`` call."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..obligations import format_remaining
from .i18n import LANG_COOKIE, LANGUAGES, negotiate, translator

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
templates = Jinja2Templates(directory=TEMPLATES)  # autoescapes .html templates
# Templates ship with the package: compile each once, never look at its file again.
templates.env.auto_reload = False
# Stands for the session's CSRF token in kept pages; replaced on every response.
CSRF_HOLE = "csrf-" + secrets.token_hex(16)
# Kept pages are rendered again when the minute turns (countdowns show minutes).
PAGE_SECONDS = 60


def _local(value: datetime | None, tz: str = "Europe/Rome") -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _number(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


templates.env.filters["local"] = _local
templates.env.filters["number"] = _number
templates.env.globals["format_remaining"] = format_remaining


def language_of(request: Request) -> str:
    """The interface language of this request (``?lang=`` switch, cookie, browser)."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return str(asked)
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _values(request: Request, lang: str, csrf_token: str | None) -> dict[str, Any]:
    principal = getattr(request.state, "principal", None)
    ws = request.app.state.workspace
    return {
        "request": request,
        "t": translator(lang),
        "lang": lang,
        "user": principal.user if principal else None,
        "csrf_token": csrf_token,
        "tz": ws.settings.timezone,
        "company": ws.settings.company_name,
        "path": request.url.path,
    }


def _remember_language(request: Request, response: HTMLResponse, lang: str) -> HTMLResponse:
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax", path="/"
        )
    return response


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render template ``name`` in the request's language, with the caller and CSRF token."""
    lang = language_of(request)
    principal = getattr(request.state, "principal", None)
    values = _values(request, lang, principal.csrf_token if principal else None)
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    return _remember_language(request, response, lang)


def render_kept(
    request: Request, name: str, key: Hashable, context: Callable[[], dict[str, Any]]
) -> HTMLResponse:
    """:func:`render` for a signed-in caller, the HTML kept until the data or the minute changes.

    The page is kept per user, language, address and query, and ``key`` (what else the
    page shows, e.g. background job states); ``context`` is only called to render it
    again. The session's CSRF token is filled in per response, so one user's sessions
    share the page and no token outlives its session in the HTML served.
    """
    lang = language_of(request)
    principal = request.state.principal
    ws = request.app.state.workspace
    token = principal.csrf_token
    settings = ws.settings
    page_key = (
        "page",
        name,
        request.url.path,
        request.url.query,
        lang,
        principal.user,
        principal.via,
        settings.timezone,
        settings.company_name,
        int(time.time() // PAGE_SECONDS),
        key,
    )

    def draw() -> str:
        values = _values(request, lang, CSRF_HOLE if token else None)
        values.update(context())
        return templates.get_template(name).render(values)

    html = ws.db.cached(page_key, draw)
    response = HTMLResponse(html.replace(CSRF_HOLE, token) if token else html)
    return _remember_language(request, response, lang)
