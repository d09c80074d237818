"""Server-rendered pages: the Jinja2 environment, language choice and the ``render`` call."""

from __future__ import annotations

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
templates = Jinja2Templates(directory=TEMPLATES)


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


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render template ``name`` in the request's language, with the caller and CSRF token."""
    lang = language_of(request)
    principal = getattr(request.state, "principal", None)
    ws = request.app.state.workspace
    values: dict[str, Any] = {
        "t": translator(lang),
        "lang": lang,
        "user": principal.user if principal else None,
        "csrf_token": principal.csrf_token if principal else None,
        "tz": ws.settings.timezone,
        "company": ws.settings.company_name,
        "path": request.url.path,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax", path="/"
        )
    return response
