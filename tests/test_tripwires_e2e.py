"""Acceptance of the live trip-wires: mail, SMS and a call reach canaries, an alert follows.

Everything is real and on loopback: the inbound SMTP listener, the webhook routes served
by uvicorn, the alert relay (an aiosmtpd sink) and the alert webhook receiver.
"""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from canarino.alerts import list_alerts, raise_alerts
from canarino.campaigns import build_campaigns, list_campaigns
from canarino.inbound.smtp import start_listener
from canarino.inbound.webhooks import sign_generic, twilio_signature
from canarino.sightings import attribute_sightings, sighting_counts
from canarino.testing import SmtpSink
from canarino.web.hooks import router

from .tripwire_world import Receiver, World, build_world

SECRET = "e2e-webhook-secret"
TOKEN = "e2e-twilio-token"
PUBLIC = "https://canarino.example.it"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("e2e"))
    yield w
    w.ws.close()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def doors(world: World, sink: SmtpSink, receiver: Receiver) -> Iterator[tuple[int, str]]:
    """The SMTP listener and the webhook routes, both raising alerts as sightings arrive."""
    world.reset()
    ws = world.ws
    ws.settings = world.settings.model_copy(  # type: ignore[attr-defined]
        update={
            "security_contacts": ["soc@example.it"],
            "smtp_relay": f"127.0.0.1:{sink.port}",
            "alert_webhooks": [f"{receiver.url}/alert"],
            "slack_webhooks": [f"{receiver.url}/slack"],
            "webhook_secret": SecretStr(SECRET),
            "twilio_auth_token": SecretStr(TOKEN),
            "public_url": PUBLIC,
        }
    )
    listener = start_listener(
        ws,
        "127.0.0.1",
        0,
        on_sightings=lambda: raise_alerts(ws),
        dnsfunc=lambda name, timeout=5: None,
    )
    app = FastAPI()
    app.include_router(router)
    app.state.workspace = ws
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield listener.port, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.stop()


def _wait(condition: object, seconds: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if callable(condition) and condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError("not within a minute")


def test_mail_sms_and_a_call_to_canaries_raise_one_attributed_alert_within_a_minute(
    world: World, doors: tuple[int, str], sink: SmtpSink, receiver: Receiver
) -> None:
    smtp_port, web = doors
    leaked = world.canaries("Vendor B")
    share = world.shares["Vendor B"]
    started = time.monotonic()

    # 1. Phishing mail to three of the vendor's canaries, over real SMTP.
    msg = EmailMessage()
    msg["From"] = "Servizio Clienti <assistenza@pacchi-fermi.example>"
    msg["To"] = ", ".join(r["email"] for r in leaked[:3])
    msg["Subject"] = "Il suo pacco è in giacenza"
    msg.set_content(
        "Gentile cliente, paghi 1,99 EUR su https://pacchi-fermi.example/p/81 entro oggi."
    )
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        refused = client.send_message(
            msg, "bounce@pacchi-fermi.example", [r["email"] for r in leaked[:3]]
        )
    assert refused == {}

    # 2. A signed SMS to a fourth canary, in the generic JSON form.
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = json.dumps(
        {
            "from": "+447946000123",
            "to": leaked[3]["phone"],
            "text": f"{leaked[3]['first_name']}, il pacco è fermo: https://pacchi-fermi.example/s",
            "at": at,
        }
    ).encode()
    stamp = str(int(time.time()))
    reply = httpx.post(
        f"{web}/hooks/sms",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Canarino-Timestamp": stamp,
            "X-Canarino-Signature": sign_generic(SECRET.encode(), stamp, body),
        },
    )
    assert reply.status_code == 202

    # 3. A scam call to a fifth canary, as Twilio posts it.
    call = {
        "CallSid": "CAe2e",
        "From": "+447946000123",
        "To": leaked[4]["phone"],
        "CallStatus": "ringing",
    }
    signature = twilio_signature(TOKEN.encode(), f"{PUBLIC}/hooks/voice", sorted(call.items()))
    reply = httpx.post(
        f"{web}/hooks/voice",
        content=urlencode(call).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert reply.status_code == 200 and "<Response/>" in reply.text

    # 4. A forged webhook is refused and changes nothing.
    forged = httpx.post(
        f"{web}/hooks/sms",
        content=body,
        headers={"X-Canarino-Timestamp": stamp, "X-Canarino-Signature": "sha256=00"},
    )
    assert forged.status_code == 401

    # The alert reaches the relay and the webhook receiver within a minute.
    _wait(lambda: sink.messages and receiver.bodies("/alert") and receiver.bodies("/slack"))
    elapsed = time.monotonic() - started
    assert elapsed < 60

    # Sightings: five evidence, one per canary, each with its door's evidence.
    _wait(lambda: sighting_counts(world.ws)["evidence"] == 5, 30)
    assert sighting_counts(world.ws) == {"evidence": 5, "expected_use": 0, "not_canary": 0}

    # The attribution names the vendor that received those canaries.
    decision = attribute_sightings(world.ws)
    top = decision.suspects[0]
    assert (top.recipient, top.accused, top.canaries_seen) == ("Vendor B", True, 5)

    # One alert for the share today, whichever door saw the canaries first.
    raise_alerts(world.ws)
    (alert,) = list_alerts(world.ws)
    assert (alert.recipient, alert.share_id) == ("Vendor B", share.share_id)
    assert alert.delivered and alert.p_value is not None
    (payload,) = receiver.bodies("/alert")
    assert payload["recipient"] == "Vendor B" and payload["share_id"] == share.share_id
    assert payload["link"] == f"{PUBLIC}/shares/{share.share_id}"
    mail = sink.messages[0]
    assert mail.recipients == ["soc@example.it"]
    text = mail.data.decode("utf-8", "replace")
    assert "Vendor B" in text and f"share #{share.share_id}" in text
    everything = (
        text + json.dumps(receiver.bodies("/alert")) + json.dumps(receiver.bodies("/slack"))
    )
    for row in leaked[:5]:
        assert row["email"] not in everything and row["phone"] not in everything
        assert row["last_name"] not in everything

    # The mail and the SMS link to the same site: one campaign.
    build_campaigns(world.ws)
    biggest = list_campaigns(world.ws)[0]
    assert "pacchi-fermi.example" in biggest.features["url_domains"]
    assert set(biggest.channels) >= {"email", "sms"}
    print(f"\nfirst contact to alert delivered: {elapsed:.2f} s")
