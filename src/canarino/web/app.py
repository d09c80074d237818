"""The web app: staff pages, the JSON API, and the public and webhook routers.

``create_app(ws)`` builds everything around one workspace. Staff routes sit behind the
session/token dependency of :mod:`.auth`; ``/public`` and ``/hooks`` protect themselves
(rate limits, signatures) and are outside staff sign-in and CSRF.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..settings import load_settings
from ..workspace import Workspace, resolve_workspace
from . import api, hooks, pages, problems, public, signin
from .jobs import Jobs
from .render import STATIC

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the security headers to every response; pages that show data are not cached."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap ``send`` to add the headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _include(app: FastAPI, router: APIRouter, prefix: str) -> None:
    """Mount a colleague router under ``prefix`` unless its paths already carry it."""
    paths = [getattr(r, "path", "") for r in router.routes]
    carries = bool(paths) and all(p.startswith(prefix) for p in paths)
    app.include_router(router, prefix="" if carries else prefix)


def create_app(ws: Workspace) -> FastAPI:
    """The whole web app for workspace ``ws``."""
    app = FastAPI(
        title="canarino",
        version=__version__,
        description=api.DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.workspace = ws
    app.state.jobs = Jobs()
    app.state.view_log = api.ViewLog()
    app.add_middleware(SecurityHeaders, hsts=ws.settings.public_url.lower().startswith("https://"))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _include(app, hooks.router, "/hooks")
    _include(app, public.router, "/public")
    app.include_router(signin.router)
    # Pages before the API: routes are tried in order and people ask for pages most.
    app.include_router(pages.router)
    app.include_router(api.router)
    problems.install(app)
    return app


def app_from_environment() -> FastAPI:
    """The app for the workspace ``CANARINO_WORKSPACE`` names (or found from here).

    Each worker process of ``canarino serve --workers N`` builds its app with this. A
    worker keeps in memory, for itself only: background jobs and their progress pages,
    the public pages' rate limits, the webhook replay guard and the read models (which
    follow the database).
    """
    return create_app(Workspace.open(load_settings(resolve_workspace(None))))
