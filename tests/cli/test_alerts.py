from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from canarino.cli import app
from canarino.sightings import SightingIn, record_sightings

from ..tripwire_world import World, build_world

runner = CliRunner()


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("cli-alerts"), customers=60)
    yield w
    w.ws.close()


def test_alerts_and_campaigns_from_the_command_line(world: World) -> None:
    w = ("-w", str(world.ws.settings.workspace))
    assert "Nothing to alert" in run("alerts", "run", *w)
    assert "No alerts yet" in run("alerts", "list", *w)
    seen = datetime.now(UTC) + timedelta(seconds=5)
    emails = [r["email"] for r in world.canaries("Vendor B")[:3]]
    record_sightings(
        world.ws,
        [
            SightingIn(
                "email", e, seen + timedelta(seconds=i), evidence={"dkim_domain": "p.example"}
            )
            for i, e in enumerate(emails)
        ],
    )
    table = run("alerts", "run", *w)
    assert "Vendor B" in table and "1 in 10^" in table
    (alert,) = json.loads(run("alerts", "list", "--json", *w))
    assert alert["recipient"] == "Vendor B" and alert["deliveries"] == {}
    assert not any(e in table for e in emails)
    assert "1 campaigns over 3 sightings" in run("campaigns", "build", *w)
    (campaign,) = json.loads(run("campaigns", "list", "--json", *w))
    assert campaign["features"]["dkim_domains"] == ["p.example"]
    assert "p.example" in run("campaigns", "list", *w)
    failed = run(
        "campaigns", "attach", str(campaign["campaign_id"]), "--incident", "77", *w, ok=False
    )
    assert "no incident 77" in failed
    assert "no campaign 999" in run("campaigns", "attach", "999", "--incident", "1", *w, ok=False)
