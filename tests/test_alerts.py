from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event, select, update

from canarino import models as m
from canarino.alerts import list_alerts, raise_alerts, summary
from canarino.inbound.webhooks import sign_generic
from canarino.shares import CANARY_CONTEXT
from canarino.sightings import SightingIn, allow_sender, record_sightings
from canarino.testing import SmtpSink
from canarino.workspace import Workspace

from .tripwire_world import Receiver, World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("alerts"))
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
def ws(world: World, sink: SmtpSink, receiver: Receiver) -> Workspace:
    world.reset()
    world.ws.settings = world.settings.model_copy(  # type: ignore[attr-defined]
        update={
            "security_contacts": ["soc@example.it", "dpo@example.it"],
            "smtp_relay": f"127.0.0.1:{sink.port}",
            "alert_webhooks": [f"{receiver.url}/alert?token=secret-token"],
            "slack_webhooks": [f"{receiver.url}/slack/T000/B000/XXXX"],
            "webhook_secret": SecretStr("alert-signing-key"),
            "public_url": "https://canarino.example.it/",
        }
    )
    return world.ws


def _phish(world: World, recipient: str, n: int = 3, *, later: int = 0) -> list[str]:
    emails = [r["email"] for r in world.canaries(recipient)[:n]]
    seen = datetime.now(UTC) + timedelta(seconds=5, minutes=later)
    items = [
        SightingIn("email", e, seen + timedelta(seconds=i), dkim_domain="phish.example")
        for i, e in enumerate(emails)
    ]
    report = record_sightings(world.ws, items)
    assert report.recorded == n
    return emails


def _all_text(sink: SmtpSink, receiver: Receiver) -> str:
    mails = " ".join(msg.data.decode("utf-8", "replace") for msg in sink.messages)
    return mails + " ".join(body.decode() for _, _, body in receiver.posts)


def test_the_first_evidence_sighting_alerts_every_target_once(
    world: World, ws: Workspace, sink: SmtpSink, receiver: Receiver
) -> None:
    emails = _phish(world, "Vendor B")
    (view,) = raise_alerts(ws)
    share = world.shares["Vendor B"]
    assert (view.recipient, view.share_id, view.sightings) == ("Vendor B", share.share_id, 3)
    assert view.accused and view.p_value is not None and view.p_value < 1e-6
    assert view.link == f"https://canarino.example.it/shares/{share.share_id}"
    assert view.delivered and len(view.deliveries) == 4
    assert sorted(r for msg in sink.messages for r in msg.recipients) == [
        "dpo@example.it",
        "soc@example.it",
    ]
    (payload,) = receiver.bodies("/alert?token=secret-token")
    assert payload["type"] == "canarino.alert" and payload["recipient"] == "Vendor B"
    assert payload["shared_at"] == share.created_at.isoformat(timespec="seconds")
    assert payload["p_value"] == view.p_value and payload["link"] == view.link
    (slack,) = receiver.bodies("/slack/T000/B000/XXXX")
    assert set(slack) == {"text"} and "Vendor B" in slack["text"] and view.link in slack["text"]
    mail = sink.messages[0].data.decode()
    assert "Vendor B" in mail and f"share #{share.share_id}" in mail and "1 in 10^" in mail
    # No canary's contact details anywhere, and no token of a webhook URL in the record.
    text = _all_text(sink, receiver)
    assert not any(e in text or e.split("@")[0] in text for e in emails)
    assert "secret-token" not in json.dumps(view.deliveries)
    # A second run, and a third, find nothing new.
    assert raise_alerts(ws) == [] and raise_alerts(ws) == []
    assert len(sink.messages) == 2 and len(receiver.posts) == 2


def test_the_json_alert_is_signed_for_the_receiver_to_check(
    world: World, ws: Workspace, receiver: Receiver
) -> None:
    _phish(world, "Vendor A", 2)
    raise_alerts(ws)
    ((_, headers, body),) = [p for p in receiver.posts if p[0].startswith("/alert")]
    stamp = headers["X-Canarino-Timestamp"]
    assert headers["X-Canarino-Signature"] == sign_generic(b"alert-signing-key", stamp, body)


def test_one_alert_per_share_and_day(world: World, ws: Workspace, sink: SmtpSink) -> None:
    _phish(world, "Vendor B", 2)
    assert len(raise_alerts(ws)) == 1
    _phish(world, "Vendor B", 4, later=1)  # more the same day: no second alert
    assert raise_alerts(ws) == []
    # Sightings recorded on a later day alert again.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with ws.db.session() as s:
        last = s.scalar(select(m.Sighting.id).order_by(m.Sighting.id.desc()))
        s.execute(update(m.Sighting).where(m.Sighting.id == last).values(created_at=tomorrow))
    (again,) = raise_alerts(ws, now=tomorrow + timedelta(minutes=1))
    assert again.day == tomorrow.date().isoformat()
    assert [a.day for a in list_alerts(ws)] == [again.day, datetime.now(UTC).date().isoformat()]


def test_a_failing_target_is_retried_later_and_blocks_no_other(
    world: World, ws: Workspace, sink: SmtpSink, receiver: Receiver
) -> None:
    receiver.fail = 2  # the JSON webhook and the Slack message both get a 500 first
    ws.settings = ws.settings.model_copy(
        update={"alert_webhooks": [*ws.settings.alert_webhooks, "http://127.0.0.1:9/closed"]}
    )
    _phish(world, "Vendor B", 2)
    started = time.monotonic()
    (view,) = raise_alerts(ws)
    assert time.monotonic() - started < 15
    states = {k.split(":")[0] + ":" + k.split("#")[0][-6:]: v for k, v in view.deliveries.items()}
    assert len(sink.messages) == 2
    assert sorted(v["state"] for v in view.deliveries.values()) == [
        "failed",
        "failed",
        "failed",
        "sent",
        "sent",
    ]
    errors = sorted(v.get("error", "") for v in view.deliveries.values() if v["state"] == "failed")
    assert errors == ["ConnectError", "HTTP 500", "HTTP 500"], states
    # Not yet due: a call seconds later leaves the failed targets alone.
    assert raise_alerts(ws) == []
    (retry,) = raise_alerts(ws, now=datetime.now(UTC) + timedelta(seconds=45))
    assert sorted(v["state"] for v in retry.deliveries.values()) == [
        "failed",
        "sent",
        "sent",
        "sent",
        "sent",
    ]
    assert len(sink.messages) == 2  # mail already sent is not sent again
    assert len(receiver.bodies("/alert?token=secret-token")) == 1
    assert len(receiver.bodies("/slack/T000/B000/XXXX")) == 1
    closed = next(v for v in retry.deliveries.values() if v["state"] == "failed")
    assert closed["attempts"] == 2


def test_contacts_without_a_relay_wait_for_one(world: World, ws: Workspace) -> None:
    ws.settings = ws.settings.model_copy(
        update={"smtp_relay": None, "alert_webhooks": [], "slack_webhooks": []}
    )
    _phish(world, "Vendor A", 2)
    (view,) = raise_alerts(ws)
    assert {v["error"] for v in view.deliveries.values()} == {
        "no smtp_relay is set (set smtp_relay = 'HOST:PORT')"
    }
    with SmtpSink() as relay:
        ws.settings = ws.settings.model_copy(update={"smtp_relay": f"127.0.0.1:{relay.port}"})
        (retry,) = raise_alerts(ws, now=datetime.now(UTC) + timedelta(minutes=2))
        assert retry.delivered and len(relay.messages) == 2


def test_an_unreachable_relay_loses_nothing(world: World, ws: Workspace) -> None:
    ws.settings = ws.settings.model_copy(
        update={"smtp_relay": "127.0.0.1:9", "alert_webhooks": [], "slack_webhooks": []}
    )
    _phish(world, "Vendor A", 2)
    (view,) = raise_alerts(ws)
    assert {v["state"] for v in view.deliveries.values()} == {"failed"}
    with SmtpSink() as late:
        ws.settings = ws.settings.model_copy(update={"smtp_relay": f"127.0.0.1:{late.port}"})
        (retry,) = raise_alerts(ws, now=datetime.now(UTC) + timedelta(minutes=2))
        assert retry.delivered and len(late.messages) == 2


def test_expected_use_non_canaries_and_controls_raise_no_alert(
    world: World, ws: Workspace, sink: SmtpSink
) -> None:
    allow_sender(ws, "Vendor B", "dkim", "news.vendor-b.example")
    emails = [r["email"] for r in world.canaries("Vendor B")[:3]]
    seen = datetime.now(UTC) + timedelta(seconds=5)
    with ws.db.session() as s:
        sealed = s.scalars(select(m.Canary.sealed).where(m.Canary.layer == "control")).first()
    assert sealed is not None
    control = ws.vault.open(sealed, context=CANARY_CONTEXT)["email"]
    report = record_sightings(
        ws,
        [
            *(SightingIn("email", e, seen, dkim_domain="news.vendor-b.example") for e in emails),
            SightingIn("email", "nobody.here@canary-mail.it", seen),
            SightingIn("email", control, seen, dkim_domain="phish.example"),
        ],
    )
    assert (report.expected_use, report.not_canary) == (3, 1)
    assert raise_alerts(ws) == [] and sink.messages == []


def test_a_contact_before_the_share_was_made_raises_no_alert(
    world: World, ws: Workspace, sink: SmtpSink
) -> None:
    email = world.canaries("Vendor B")[0]["email"]
    before = world.shares["Vendor B"].created_at - timedelta(days=3)
    record_sightings(ws, [SightingIn("email", email, before, dkim_domain="phish.example")])
    assert raise_alerts(ws) == [] and sink.messages == []


def test_two_processes_raise_one_alert(world: World, ws: Workspace, sink: SmtpSink) -> None:
    _phish(world, "Vendor B", 2)
    other = Workspace.open(ws.settings)
    barrier = threading.Barrier(2)
    results: list[int] = []

    def run(w: Workspace) -> None:
        barrier.wait()
        results.append(len(raise_alerts(w)))

    threads = [threading.Thread(target=run, args=(w,)) for w in (ws, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sorted(results) == [0, 1]
    assert len(list_alerts(ws)) == 1 and len(sink.messages) == 2


def test_calling_with_nothing_new_is_cheap(world: World, ws: Workspace) -> None:
    _phish(world, "Vendor A", 2)
    raise_alerts(ws)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    # Counted, not timed: the number of queries does not depend on how busy the machine is.
    event.listen(ws.db.engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        for _ in range(20):
            assert raise_alerts(ws) == []
        elapsed = (time.perf_counter() - started) / 20
    finally:
        event.remove(ws.db.engine, "before_cursor_execute", count)
    queries = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 2 * 20  # new (share, day) pairs, then recent alerts: no decoder run
    assert elapsed < 1


def test_summary_names_recipient_share_date_p_value_and_link(world: World, ws: Workspace) -> None:
    _phish(world, "Agent A1", 2)
    (view,) = raise_alerts(ws)
    text = summary(view)
    share = world.shares["Agent A1"]
    assert "Agent A1 (employee)" in text and f"share #{share.share_id}" in text
    assert share.created_at.strftime("%Y-%m-%d %H:%M") in text and "p = " in text
    assert text.endswith(f"/shares/{share.share_id}")


def test_the_portable_grouping_finds_what_the_database_grouping_finds(
    world: World, ws: Workspace
) -> None:
    from canarino.alerts import LOOKBACK, _candidates, _candidates_portable

    _phish(world, "Vendor A", 2)
    _phish(world, "Vendor B", 3)
    since = datetime.now(UTC) - LOOKBACK
    with ws.db.session() as s:
        portable = _candidates_portable(s, since)
    assert portable == _candidates(ws, since) and len(portable) == 2
    raise_alerts(ws)
    with ws.db.session() as s:
        assert _candidates_portable(s, since) == {} == _candidates(ws, since)
