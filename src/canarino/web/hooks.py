"""Signed SMS and voice webhooks from telephony providers.

``POST /hooks/sms`` and ``POST /hooks/voice`` take the generic JSON form (signed with
``webhook_secret``) or Twilio's form posts (signed with ``twilio_auth_token``). A request
that is unsigned, mis-signed, stale, replayed, too large or malformed is refused with an
``application/problem+json`` body and logged without its content. An accepted one becomes
a sighting, and alerts are raised once the answer is sent.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from .. import alerts
from ..inbound import webhooks as wh
from ..inbound.phone import record_phone_contact
from ..workspace import Workspace

router = APIRouter()
log = logging.getLogger("canarino.hooks")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    409: "Conflict",
    413: "Content Too Large",
    503: "Service Unavailable",
}


def _problem(status: int, detail: str, channel: str, provider: str) -> JSONResponse:
    # The reason is logged; the numbers and text of the message never are.
    log.warning("refused %s webhook (%s): %s", channel, provider, detail)
    return JSONResponse(
        {"type": "about:blank", "title": _TITLES[status], "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


async def _body(request: Request) -> bytes | None:
    """The raw body, or ``None`` once it passes :data:`webhooks.MAX_BODY`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > wh.MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > wh.MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _guard(request: Request) -> wh.ReplayGuard:
    guard: wh.ReplayGuard | None = getattr(request.app.state, "hook_replays", None)
    if guard is None:
        guard = request.app.state.hook_replays = wh.ReplayGuard()
    return guard


class _AlertTrigger:
    """Raises alerts after webhooks; a burst of webhooks makes one run, then one more."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._running = threading.Lock()
        self._again = False

    def __call__(self) -> None:
        self._again = True
        if not self._running.acquire(blocking=False):
            return  # the run in progress goes round once more
        try:
            while self._again:
                self._again = False
                alerts.raise_alerts(self.ws)
        except Exception as exc:
            # The sighting is stored; the periodic run delivers what this one could not.
            log.error("raising alerts after a webhook failed: %s", type(exc).__name__)
        finally:
            self._running.release()


def _trigger(request: Request, ws: Workspace) -> _AlertTrigger:
    trigger: _AlertTrigger | None = getattr(request.app.state, "hook_alerts", None)
    if trigger is None or trigger.ws is not ws:
        trigger = request.app.state.hook_alerts = _AlertTrigger(ws)
    return trigger


def _candidate_urls(request: Request, public_url: str) -> list[str]:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return [public_url.rstrip("/") + path, str(request.url)]


async def _receive(request: Request, channel: str) -> Response:
    ws: Workspace = request.app.state.workspace
    twilio = wh.TWILIO_HEADER in request.headers
    provider = "twilio" if twilio else "generic"
    body = await _body(request)
    if body is None:
        return _problem(413, f"the body is larger than {wh.MAX_BODY} bytes", channel, provider)
    now = datetime.now(UTC)
    guard = _guard(request)
    secret, token = ws.settings.webhook_secret, ws.settings.twilio_auth_token
    try:
        inbound = wh.read_webhook(
            channel,
            body,
            request.headers,
            urls=_candidate_urls(request, ws.settings.public_url),
            webhook_secret=secret.get_secret_value().encode() if secret else None,
            twilio_token=token.get_secret_value().encode() if token else None,
            now=now,
        )
    except wh.SignatureError as exc:
        return _problem(401, str(exc), channel, provider)
    except wh.PayloadTooLarge as exc:
        return _problem(413, str(exc), channel, provider)
    except wh.PayloadError as exc:
        return _problem(400, str(exc), channel, provider)
    replay_key = inbound.replay_key
    if guard.seen(replay_key, now):
        return _problem(409, "this request was already received", channel, provider)
    # Held while it is stored, so a copy arriving meanwhile is refused, not stored twice.
    guard.remember(replay_key, now)
    try:
        await run_in_threadpool(record_phone_contact, ws, inbound)
    except Exception as exc:
        guard.forget(replay_key)
        # The type only: a database error can quote the values it was given.
        log.error("storing a %s webhook failed: %s", channel, type(exc).__name__)
        reply = _problem(503, "the message could not be stored; send it again", channel, provider)
        reply.headers["Retry-After"] = "30"
        return reply
    task = BackgroundTask(_trigger(request, ws))
    if twilio:
        return Response(wh.TWIML_EMPTY, media_type="application/xml", background=task)
    # The answer is the same for every number: it must not tell canaries apart.
    return JSONResponse({"status": "accepted"}, status_code=202, background=task)


@router.post("/hooks/sms", include_in_schema=False)
async def sms_hook(request: Request) -> Response:
    """Receive an SMS that reached a monitored number."""
    return await _receive(request, "sms")


@router.post("/hooks/voice", include_in_schema=False)
async def voice_hook(request: Request) -> Response:
    """Receive a call that reached a monitored number."""
    return await _receive(request, "voice")
