"""Signing in and out, and the health check: the only staff routes open to everyone."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import audit, users
from ..errors import PermissionDenied
from .auth import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Principal,
    client_address,
    secure_cookies,
    viewer,
    workspace_of,
)
from .render import render

router = APIRouter(include_in_schema=False)
WINDOW = 900.0
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20


class SignInGuard:
    """Slows password guessing: too many recent failures for a name or an address wait.

    Only failures count, in a sliding window, in memory; a success clears the name.
    """

    def __init__(
        self,
        per_user: int = MAX_FAILURES_PER_USER,
        per_address: int = MAX_FAILURES_PER_ADDRESS,
        window: float = WINDOW,
    ) -> None:
        self.per_user, self.per_address, self.window = per_user, per_address, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def wait(self, username: str, address: str, now: float | None = None) -> float | None:
        """Seconds to wait before another attempt, or ``None`` if one may be made now."""
        at = time.monotonic() if now is None else now
        with self._lock:
            waits = [
                times[0] + self.window - at
                for key, limit in (
                    (f"u:{username.lower()}", self.per_user),
                    (f"a:{address}", self.per_address),
                )
                if len(times := self._recent(key, at)) >= limit
            ]
        return max(1.0, *waits) if waits else None

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        """Count a failed attempt."""
        at = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures = {
                    k: v for k, v in self._failures.items() if v and v[-1] > at - self.window
                }
            for key in (f"u:{username.lower()}", f"a:{address}"):
                self._recent(key, at).append(at)

    def succeeded(self, username: str) -> None:
        """Forget a name's failures once its owner got in."""
        with self._lock:
            self._failures.pop(f"u:{username.lower()}", None)


def guard_of(request: Request) -> SignInGuard:
    """The app's guard, made on first use."""
    state = request.app.state
    if not hasattr(state, "signin_guard"):
        state.signin_guard = SignInGuard()
    guard: SignInGuard = state.signin_guard
    return guard


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Browsers drop tabs and newlines from URLs, so "/\t/evil.example" would become "//evil…".
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return target


def _form(request: Request, error: str | None = None, status: int = 200) -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "signin.html",
        {
            "signin_token": token,
            "next": safe_next(request.query_params.get("next")),
            "error": error,
        },
        status_code=status,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(workspace_of(request)),
        path="/signin",
    )
    return response


@router.get("/signin")
def signin_page(request: Request) -> Response:
    """The sign-in form."""
    return _form(request)


@router.post("/signin")
def signin(
    request: Request,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password; on success a brand-new session replaces any cookie sent."""
    ws = workspace_of(request)
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        raise PermissionDenied(
            "this form has expired or did not come from this site",
            hint="reload the sign-in page and try again",
        )
    guard, address = guard_of(request), client_address(request) or "unknown"
    retry = guard.wait(username, address)
    if retry is not None:
        audit.record(
            ws,
            username[:100],
            "sign_in_failed",
            "session",
            detail={"throttled": True},
            address=address,
        )
        response = _form(
            request, "too many failed sign-ins; wait a few minutes and try again", status=429
        )
        response.headers["Retry-After"] = str(int(retry) + 1)
        return response
    try:
        user = users.authenticate(ws, username, password)
    except PermissionDenied as exc:
        guard.failed(username, address)
        audit.record(ws, username[:100], "sign_in_failed", "session", address=address)
        return _form(request, str(exc), status=401)
    guard.succeeded(username)
    cookie, _ = users.start_session(ws, user, replaces=request.cookies.get(SESSION_COOKIE))
    audit.record(ws, user.username, "sign_in", "session", address=client_address(request))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(users.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure_cookies(ws),
        path="/",
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request, who: Annotated[Principal, Depends(viewer)]) -> Response:
    """End the session; its cookie stops working everywhere."""
    ws = workspace_of(request)
    if who.cookie:
        await run_in_threadpool(users.end_session, ws, who.cookie)
    await run_in_threadpool(
        audit.record, ws, who.name, "sign_out", "session", address=client_address(request)
    )
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness for load balancers; says nothing about the data."""
    return {"status": "ok"}
