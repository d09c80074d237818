from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from canarino import models as m
from canarino.campaigns import attach_campaign, build_campaigns, group, links, list_campaigns
from canarino.errors import NotFound
from canarino.inbound.evidence import fold, simhash
from canarino.sightings import SightingIn, allow_sender, record_sightings

from .tripwire_world import World, build_world

PARCEL = "Gentile {}, il suo pacco {} è in giacenza presso il centro di smistamento: paghi {} EUR"
BANK = "{}: la sua carta è stata bloccata per motivi di sicurezza, chiami subito il numero {}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("campaigns"), customers=80)
    yield w
    w.ws.close()


@pytest.fixture(autouse=True)
def fresh(world: World) -> World:
    world.reset()
    return world


_minutes = count(1)


def _record(world: World, recipient: str, index: int, evidence: dict[str, Any], **kw: Any) -> None:
    row = world.canaries(recipient)[index]
    seen = datetime.now(UTC) + timedelta(minutes=next(_minutes))
    item = SightingIn("email", row["email"], seen, evidence=evidence, **kw)
    assert record_sightings(world.ws, [item]).recorded == 1


def _text(template: str, *values: object) -> str:
    return simhash(fold(template.format(*values)))


def _members(world: World) -> list[int]:
    return sorted(c.sightings for c in list_campaigns(world.ws))


def test_shared_sender_infrastructure_links_sightings(world: World) -> None:
    _record(world, "Vendor A", 0, {"dkim_domain": "Phish.Example."})
    _record(world, "Vendor B", 0, {"dkim_domain": "phish.example"})
    _record(world, "Vendor A", 1, {"sender_ip": "203.0.113.5"})
    _record(world, "Vendor B", 1, {"sender_ip": "203.0.113.77"})
    _record(world, "Vendor A", 2, {"return_path_domain": "bounce.scam.example"})
    _record(world, "Vendor B", 2, {"return_path_domain": "bounce.scam.example"})
    _record(world, "Vendor A", 3, {"caller": "+44 20 7946 0001"})
    _record(world, "Vendor B", 3, {"caller": "+442079460001"})
    _record(world, "Agent A1", 0, {"sender_ip": "198.51.100.1"})
    report = build_campaigns(world.ws)
    assert (report.campaigns, report.sightings, report.created) == (5, 9, 5)
    assert _members(world) == [1, 2, 2, 2, 2]
    labels = " | ".join(c.label for c in list_campaigns(world.ws))
    assert "signed by phish.example" in labels and "sent from 203.0.113.0/24" in labels


def test_links_and_templates_link_sightings_common_domains_do_not(world: World) -> None:
    _record(world, "Vendor A", 0, {"url_domains": ["pacchi-fermi.example", "bit.ly"]})
    _record(world, "Vendor B", 0, {"url_domains": ["pacchi-fermi.example"]})
    _record(world, "Vendor A", 1, {"url_domains": ["bit.ly"], "dkim_domain": "gmail.com"})
    _record(world, "Vendor B", 1, {"url_domains": ["bit.ly"], "dkim_domain": "gmail.com"})
    _record(world, "Vendor A", 2, {"simhash": _text(PARCEL, "Mario Rossi", 123, "1,99")})
    _record(world, "Vendor B", 2, {"simhash": _text(PARCEL, "Anna Verdi", 98765, "2,50")})
    _record(world, "Agent A1", 0, {"simhash": _text(BANK, "Luca Neri", "800 123 456")})
    build_campaigns(world.ws)
    assert _members(world) == [1, 1, 1, 2, 2]


def test_rebuilds_keep_keys_and_a_merge_keeps_the_older_key_and_its_incident(
    world: World,
) -> None:
    _record(world, "Vendor A", 0, {"dkim_domain": "one.example"})
    _record(world, "Vendor B", 0, {"dkim_domain": "two.example"})
    build_campaigns(world.ws)
    first = {c.key: c.campaign_id for c in list_campaigns(world.ws)}
    assert build_campaigns(world.ws).created == 0
    assert {c.key: c.campaign_id for c in list_campaigns(world.ws)} == first
    with world.ws.db.session() as s:
        incident = m.Incident(title="Phishing wave", aware_at=datetime.now(UTC))
        s.add(incident)
        s.flush()
        incident_id = incident.id
    newer = max(list_campaigns(world.ws), key=lambda c: c.campaign_id)
    attach_campaign(world.ws, newer.campaign_id, incident_id)
    # A later mail signed by both domains bridges the two campaigns.
    _record(world, "Agent A1", 0, {"dkim_domain": "one.example", "url_domains": ["x.example"]})
    _record(world, "Agent A1", 1, {"dkim_domain": "two.example", "url_domains": ["x.example"]})
    report = build_campaigns(world.ws)
    assert (report.campaigns, report.merged) == (1, 1)
    (merged,) = list_campaigns(world.ws)
    older = min(first.items(), key=lambda kv: kv[1])
    assert (merged.key, merged.sightings, merged.incident_id) == (older[0], 4, incident_id)


def test_expected_use_non_canaries_and_controls_form_no_campaign(world: World) -> None:
    allow_sender(world.ws, "Vendor A", "dkim", "news.vendor-a.example")
    _record(world, "Vendor A", 0, {}, dkim_domain="news.vendor-a.example")
    seen = datetime.now(UTC) + timedelta(minutes=next(_minutes))
    record_sightings(
        world.ws,
        [
            SightingIn(
                "email", "someone@canary-mail.it", seen, evidence={"dkim_domain": "a.example"}
            )
        ],
    )
    assert build_campaigns(world.ws).campaigns == 0 and list_campaigns(world.ws) == []


@pytest.mark.parametrize(
    "evidence",
    [
        {"simhash": "zzzzzzzzzzzzzzzz", "sender_ip": "999.1.1.1"},
        {"simhash": 42, "url_domains": "not-a-list", "caller": ["+39"]},
        {"dkim_domain": {"d": 1}, "return_path_domain": "", "url_domains": [None, 3, "ok.example"]},
    ],
)
def test_malformed_evidence_is_skipped_not_a_crash(world: World, evidence: dict[str, Any]) -> None:
    _record(world, "Vendor A", 0, evidence)
    assert build_campaigns(world.ws).campaigns == 1


def test_attach_refuses_unknown_campaigns_and_incidents(world: World) -> None:
    _record(world, "Vendor A", 0, {"dkim_domain": "z.example"})
    build_campaigns(world.ws)
    (campaign,) = list_campaigns(world.ws)
    with pytest.raises(NotFound, match="no campaign 9999"):
        attach_campaign(world.ws, 9999, 1)
    with pytest.raises(NotFound, match="no incident 9999"):
        attach_campaign(world.ws, campaign.campaign_id, 9999)


def test_group_is_exact_for_near_templates_and_chains() -> None:
    base = int("f0f0f0f0f0f0f0f0", 16)
    items = {
        1: {"simhash": f"{base:016x}"},
        2: {"simhash": f"{base ^ 0x7FF:016x}"},  # 11 bits from 1
        3: {"simhash": f"{base ^ 0x7FF ^ (0x7FF << 20):016x}"},  # 11 from 2, 22 from 1
        5: {"simhash": f"{base ^ 0xFFF:016x}"},  # 12 from 1, 1 from 2: joins through 2
        4: {"simhash": f"{base ^ ((1 << 64) - 1):016x}"},  # the opposite
    }
    assert group(items) == {1: [1, 2, 3, 5], 4: [4]}
    assert group({1: items[1], 5: items[5]}) == {1: [1], 5: [5]}
    assert links({"caller_id": "+39 347 0000000", "sender_ip": "2001:db8::1"}) == {
        "caller:+393470000000",
        "net:2001:db8::/48",
    }
