"""Errors at the web door: RFC 9457 problem details for the API, an HTML page for people.

One handler per kind of failure, installed once by :func:`install`; library errors map
by class (``InvalidInput`` → 422, ``NotFound`` → 404, ``PermissionDenied`` → 403).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import (
    CanarinoError,
    DeliveryError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    WorkspaceError,
)
from .auth import SignInRequired
from .render import render

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger("canarino.web")

STATUS_OF: list[tuple[type[CanarinoError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (PermissionDenied, 403),
    (DeliveryError, 502),
    (WorkspaceError, 500),
    (CanarinoError, 400),
]


def wants_json(request: Request) -> bool:
    """API paths answer in JSON; everything else in HTML."""
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def problem(
    status: int, detail: str | None = None, *, title: str | None = None, **extra: Any
) -> JSONResponse:
    """An ``application/problem+json`` response."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"https://canarino.dev/problems/{phrase.lower().replace(' ', '-')}",
        "title": title or phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="canarino"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def _respond(request: Request, status: int, detail: str, **extra: Any) -> Response:
    if wants_json(request):
        return problem(status, detail, **extra)
    return render(request, "error.html", {"status": status, "detail": detail}, status_code=status)


async def _canarino(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CanarinoError)
    status = next(code for cls, code in STATUS_OF if isinstance(exc, cls))
    if status >= 500:
        log.error("request failed: %s", exc)
    return _respond(request, status, str(exc))


async def _sign_in(request: Request, exc: Exception) -> Response:
    if wants_json(request):
        return problem(401, "sign in, or send an API token as 'Authorization: Bearer <token>'")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route of an app, included routers flattened."""
    for route in routes:
        nested = getattr(route, "effective_candidates", None)
        if nested is not None:
            yield from flat_routes(nested())
        else:
            yield route


def allowed_methods(request: Request) -> list[str]:
    """The methods the requested path answers to, for a 405's ``Allow`` header."""
    methods: set[str] = set()
    for route in flat_routes(request.app.routes):
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        found, _ = matches(request.scope)
        if found != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"})


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    response = _respond(request, exc.status_code, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        # One route per method: the router only knows the first route's methods.
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only where and why: the offending input is not echoed back.
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return _respond(request, 422, detail, errors=errors)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _respond(request, 500, "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    """Install every handler on ``app``."""
    app.add_exception_handler(CanarinoError, _canarino)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _crash)
