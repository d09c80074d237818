from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from canarino.alerts import list_alerts
from canarino.inbound.webhooks import MAX_BODY, sign_generic, twilio_signature
from canarino.sightings import sighting_counts
from canarino.store import Database, make_engine
from canarino.web.hooks import router
from canarino.workspace import Workspace

from ..tripwire_world import World, build_world

SECRET = "webhook-test-secret"
TOKEN = "twilio-test-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("hooks"))
    w.settings = w.ws.settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "twilio_auth_token": SecretStr(TOKEN),
            "public_url": "https://canarino.example.it",
        }
    )
    yield w
    w.ws.close()


@pytest.fixture(scope="module")
def app(world: World) -> FastAPI:
    """A small app with only the hooks router."""
    app = FastAPI()
    app.include_router(router)
    app.state.workspace = world.ws
    return app


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on loopback."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def fresh(world: World, app: FastAPI) -> World:
    world.reset()
    app.state.hook_replays = None
    return world


def _phones(world: World, recipient: str) -> list[str]:
    return [r["phone"] for r in world.canaries(recipient) if r["phone"]]


def _signed(body: bytes, *, stamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(stamp if stamp is not None else int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Canarino-Timestamp": ts,
        "X-Canarino-Signature": sign_generic(secret.encode(), ts, body),
    }


def _sms_body(
    to: str, *, text: str = "Il suo pacco è fermo: https://pacchi-fermi.example/t"
) -> bytes:
    at = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    return json.dumps({"from": "+447946000001", "to": to, "text": text, "at": at}).encode()


def _problem(reply: httpx.Response, status: int) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    data = reply.json()
    assert data["status"] == status and data["title"] and data["detail"]
    return data


def test_a_signed_sms_to_a_canary_is_recorded_and_raises_an_alert(
    server: str, fresh: World
) -> None:
    phone = _phones(fresh, "Vendor B")[0]
    reply = httpx.post(f"{server}/hooks/sms", content=(b := _sms_body(phone)), headers=_signed(b))
    assert reply.status_code == 202 and reply.json() == {"status": "accepted"}
    assert sighting_counts(fresh.ws)["evidence"] == 1
    deadline = time.monotonic() + 10
    while not list_alerts(fresh.ws) and time.monotonic() < deadline:
        time.sleep(0.05)
    (alert,) = list_alerts(fresh.ws)
    assert alert.recipient == "Vendor B" and alert.channels == ["sms"]


def test_the_answer_does_not_tell_a_canary_from_another_number(server: str, fresh: World) -> None:
    canary = _phones(fresh, "Vendor A")[0]
    other = "+390612345678"  # outside the monitored ranges: surely not a canary
    replies = [
        httpx.post(f"{server}/hooks/sms", content=(b := _sms_body(n)), headers=_signed(b))
        for n in (canary, other)
    ]
    assert [r.status_code for r in replies] == [202, 202]
    assert replies[0].content == replies[1].content
    assert sighting_counts(fresh.ws)["not_canary"] == 1


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Content-Type": "application/json"}, "unsigned"),
        ({"X-Canarino-Timestamp": "1"}, "unsigned"),
        ("wrong-key", "does not match"),
        ("stale", "stale"),
    ],
)
def test_unsigned_forged_and_stale_requests_get_401_and_change_nothing(
    server: str,
    fresh: World,
    headers: object,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone = _phones(fresh, "Vendor B")[0]
    body = _sms_body(phone)
    if headers == "wrong-key":
        sent = _signed(body, secret="guessed")
    elif headers == "stale":
        sent = _signed(body, stamp=int(time.time()) - 3600)
    else:
        assert isinstance(headers, dict)
        sent = headers
    with caplog.at_level(logging.WARNING, logger="canarino.hooks"):
        reply = httpx.post(f"{server}/hooks/sms", content=body, headers=sent)
    assert message in str(_problem(reply, 401)["detail"])
    assert sighting_counts(fresh.ws) == {"evidence": 0, "expected_use": 0, "not_canary": 0}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "refused sms webhook" in logged
    assert phone not in logged and phone[-7:] not in logged and "pacco" not in logged


def test_a_replayed_request_is_refused_and_recorded_once(server: str, fresh: World) -> None:
    phone = _phones(fresh, "Vendor B")[0]
    body = _sms_body(phone)
    headers = _signed(body)
    first = httpx.post(
        f"{server}/hooks/voice",
        content=body.replace(b'"text"', b'"transcript"'),
        headers=_signed(body.replace(b'"text"', b'"transcript"')),
    )
    assert first.status_code == 202
    assert httpx.post(f"{server}/hooks/sms", content=body, headers=headers).status_code == 202
    _problem(httpx.post(f"{server}/hooks/sms", content=body, headers=headers), 409)
    assert sighting_counts(fresh.ws)["evidence"] == 2


def test_oversized_bodies_are_refused_with_413(server: str, fresh: World) -> None:
    phone = _phones(fresh, "Vendor B")[0]
    body = _sms_body(phone, text="x" * (MAX_BODY + 1))
    _problem(httpx.post(f"{server}/hooks/sms", content=body, headers=_signed(body)), 413)

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit holds while streaming too.
        for _ in range(20):
            yield b"y" * 8192

    _problem(httpx.post(f"{server}/hooks/sms", content=chunks(), headers=_signed(b"")), 413)
    assert sighting_counts(fresh.ws)["evidence"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"to": "+393475550001"}',
        b'{"to": "nobody", "at": "2026-11-25T10:00Z"}',
    ],
)
def test_signed_but_malformed_bodies_get_400(server: str, body: bytes) -> None:
    data = _problem(httpx.post(f"{server}/hooks/sms", content=body, headers=_signed(body)), 400)
    assert "3475550001" not in str(data["detail"])


def _twilio(
    server: str, path: str, params: dict[str, str], *, token: str = TOKEN
) -> httpx.Response:
    # Twilio signs the URL it was configured with: the public address.
    url = f"https://canarino.example.it{path}"
    signature = twilio_signature(token.encode(), url, sorted(params.items()))
    return httpx.post(
        f"{server}{path}",
        content=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def test_twilio_sms_and_calls_are_verified_and_answered_with_twiml(
    server: str, fresh: World
) -> None:
    phone = _phones(fresh, "Vendor B")[0]
    sms = {"MessageSid": "SM1", "From": "+447946000002", "To": phone, "Body": "Verifica ora"}
    reply = _twilio(server, "/hooks/sms", sms)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/xml")
    call = {"CallSid": "CA1", "From": "+447946000002", "To": phone, "CallStatus": "ringing"}
    reply = _twilio(server, "/hooks/voice", call)
    assert reply.status_code == 200 and "<Response/>" in reply.text
    assert sighting_counts(fresh.ws)["evidence"] == 2
    # Twilio retries with the same MessageSid: stored once.
    _problem(_twilio(server, "/hooks/sms", sms), 409)


def test_forged_twilio_posts_are_refused(server: str, fresh: World) -> None:
    phone = _phones(fresh, "Vendor B")[0]
    sms = {"MessageSid": "SM2", "From": "+447946000003", "To": phone, "Body": "x"}
    _problem(_twilio(server, "/hooks/sms", sms, token="guessed"), 401)
    reply = httpx.post(
        f"{server}/hooks/sms",
        content=urlencode(sms).encode(),
        headers={"X-Twilio-Signature": "", "Content-Type": "application/x-www-form-urlencoded"},
    )
    _problem(reply, 401)
    assert sighting_counts(fresh.ws)["evidence"] == 0


def test_hooks_refuse_everything_when_no_key_is_configured(server: str, fresh: World) -> None:
    fresh.ws.settings = fresh.ws.settings.model_copy(
        update={"webhook_secret": None, "twilio_auth_token": None}
    )
    body = _sms_body(_phones(fresh, "Vendor B")[0])
    assert "not enabled" in str(
        _problem(httpx.post(f"{server}/hooks/sms", content=body, headers=_signed(body)), 401)[
            "detail"
        ]
    )
    sms = {"MessageSid": "SM3", "From": "+447946000003", "To": "+393475550001", "Body": "x"}
    _problem(_twilio(server, "/hooks/sms", sms), 401)


def test_a_storage_failure_answers_503_and_the_retry_is_stored(
    server: str, fresh: World, app: FastAPI, tmp_path: Path
) -> None:
    # A database that cannot be opened: a real failure, not a stand-in.
    broken = Workspace(
        fresh.ws.settings,
        Database(make_engine(f"sqlite:///{tmp_path}/missing/folder/db.sqlite")),
        fresh.ws.vault,
    )
    body = _sms_body(_phones(fresh, "Vendor B")[0])
    headers = _signed(body)
    app.state.workspace = broken
    try:
        reply = httpx.post(f"{server}/hooks/sms", content=body, headers=headers)
    finally:
        app.state.workspace = fresh.ws
        broken.close()
    _problem(reply, 503)
    assert reply.headers["retry-after"] == "30"
    assert httpx.post(f"{server}/hooks/sms", content=body, headers=headers).status_code == 202
    assert sighting_counts(fresh.ws)["evidence"] == 1


def test_a_burst_of_webhooks_raises_one_alert(server: str, fresh: World) -> None:
    phones = _phones(fresh, "Vendor A")[:4]
    bodies = [
        _sms_body(p, text=f"Offerta {i}: https://burst.example/{i}") for i, p in enumerate(phones)
    ]
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(
            pool.map(
                lambda b: httpx.post(f"{server}/hooks/sms", content=b, headers=_signed(b)), bodies
            )
        )
    assert [r.status_code for r in replies] == [202] * len(bodies)
    deadline = time.monotonic() + 20
    while not list_alerts(fresh.ws) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let any other run finish
    (alert,) = list_alerts(fresh.ws)
    assert alert.recipient == "Vendor A" and alert.sightings == len(bodies)
