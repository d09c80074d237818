from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from canarino import models as m
from canarino.inbound.phone import phone_canaries, record_phone_contact
from canarino.inbound.webhooks import parse_generic, parse_twilio

from ..tripwire_world import World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("phone"), customers=60)
    yield w
    w.ws.close()


@pytest.fixture(autouse=True)
def fresh(world: World) -> World:
    world.reset()
    return world


def _sms(to: str, text: str, minutes: int = 1) -> bytes:
    at = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
    return json.dumps({"from": "+447946000009", "to": to, "text": text, "at": at}).encode()


def _evidence(world: World) -> list[dict[str, object]]:
    with world.ws.db.session() as s:
        return [dict(e) for e in s.scalars(select(m.Sighting.evidence).order_by(m.Sighting.id))]


def test_an_sms_quoting_the_canarys_name_is_strong_evidence(world: World) -> None:
    row = world.canaries("Vendor B")[0]
    text = f"Gentile {row['first_name']} {row['last_name']}, verifichi su https://x.example/a"
    report = record_phone_contact(world.ws, parse_generic("sms", _sms(row["phone"], text)))
    assert report.evidence == 1
    (evidence,) = _evidence(world)
    assert evidence["uses"] == ["name"] and evidence["provider"] == "generic"
    assert evidence["url_domains"] == ["x.example"] and evidence["caller"] == "+447946000009"
    with world.ws.db.session() as s:
        assert s.scalar(select(m.Sighting.strong)) is True
    # What the text said is never stored, only what it gives as evidence.
    assert row["last_name"] not in json.dumps(evidence)


def test_an_sms_that_quotes_nothing_is_plain_evidence(world: World) -> None:
    row = world.canaries("Vendor A")[0]
    record_phone_contact(world.ws, parse_generic("sms", _sms(row["phone"], "Hai vinto! bit.ly/z")))
    (evidence,) = _evidence(world)
    assert "uses" not in evidence and evidence["url_domains"] == ["bit.ly"]


def test_a_text_to_a_number_that_is_no_canary_keeps_no_content(world: World) -> None:
    report = record_phone_contact(
        world.ws, parse_generic("sms", _sms("+390212345678", "Ciao https://y.example"))
    )
    assert (report.recorded, report.not_canary) == (1, 1)
    (evidence,) = _evidence(world)
    assert "urls" not in evidence and "simhash" not in evidence


def test_a_twilio_retry_is_stored_once(world: World) -> None:
    row = world.canaries("Vendor A")[1]
    params = [("MessageSid", "SM9"), ("From", "+447946000009"), ("To", row["phone"])]
    first = record_phone_contact(world.ws, parse_twilio("sms", params))
    later = datetime.now(UTC) + timedelta(minutes=3)
    again = record_phone_contact(world.ws, parse_twilio("sms", params, now=later))
    assert (first.recorded, again.recorded, again.duplicates) == (1, 0, 1)


def test_phone_canaries_finds_only_canaries_and_skips_garbage(world: World) -> None:
    row = world.canaries("Agent A1")[0]
    found = phone_canaries(world.ws, [row["phone"], "+390212345679", "not a number", ""])
    assert list(found) == [row["phone"]] and found[row["phone"]]["last_name"] == row["last_name"]
