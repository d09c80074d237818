"""Who is asking, and may they: sessions and tokens, CSRF, and roles, in one dependency.

Every staff route depends on :func:`require`; it identifies the caller (a session
cookie for people, ``Authorization: Bearer`` for machines), refuses a state-changing
browser request whose CSRF token is missing or wrong, and checks the role.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from .. import users
from ..errors import PermissionDenied
from ..workspace import Workspace

SESSION_COOKIE = "canarino_session"
SIGNIN_COOKIE = "canarino_signin"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    """No valid session or token came with a request that needs one."""


@dataclass(frozen=True)
class Principal:
    """The caller of a staff request: a signed-in person or a machine with a token."""

    user: users.UserInfo
    via: Literal["session", "token"]
    csrf_token: str | None = None
    cookie: str | None = None

    @property
    def name(self) -> str:
        """How the audit log names the caller."""
        return self.user.username if self.via == "session" else f"{self.user.username} (token)"


def workspace_of(request: Request) -> Workspace:
    """The workspace the app serves."""
    ws: Workspace = request.app.state.workspace
    return ws


def client_address(request: Request) -> str | None:
    """The caller's address as the server saw it (behind a proxy: see uvicorn --proxy-headers)."""
    return request.client.host if request.client else None


def secure_cookies(ws: Workspace) -> bool:
    """Cookies get the Secure flag when the app is reached over HTTPS."""
    return ws.settings.public_url.lower().startswith("https://")


def identify(request: Request) -> Principal | None:
    """The principal of ``request``, or ``None``; looked up once per request."""
    if hasattr(request.state, "principal"):
        found: Principal | None = request.state.principal
        return found
    ws = workspace_of(request)
    principal: Principal | None = None
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if header and scheme.lower() == "bearer":
        # A bad token never falls back to a cookie: the caller meant to use the token.
        user = users.token_user(ws, secret.strip())
        principal = Principal(user, "token") if user else None
    elif cookie := request.cookies.get(SESSION_COOKIE):
        signed = users.current_session(ws, cookie)
        if signed is not None:
            principal = Principal(signed.user, "session", signed.csrf_token, cookie)
    request.state.principal = principal
    return principal


async def check_csrf(request: Request, expected: str | None) -> None:
    """Refuse a state-changing request without the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise PermissionDenied(
            "this form has expired or did not come from this site",
            hint="reload the page and try again",
        )


def require(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits callers with at least ``role`` (viewer < analyst < admin)."""
    users.check_role(role)

    async def dependency(request: Request) -> Principal:
        if hasattr(request.state, "principal"):  # the router's check ran already
            principal: Principal | None = request.state.principal
        else:
            principal = await run_in_threadpool(identify, request)
        if principal is None:
            raise SignInRequired()
        if principal.via == "session":
            await check_csrf(request, principal.csrf_token)
        if not principal.user.may(role):
            raise PermissionDenied(
                f"your role ({principal.user.role}) does not allow this; it needs {role}",
                hint="ask an administrator if you need it",
            )
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


viewer = require("viewer")
analyst = require("analyst")
admin = require("admin")
