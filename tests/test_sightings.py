from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canarino.errors import InvalidInput
from canarino.shares import ShareResult
from canarino.sightings import (
    SightingIn,
    allow_sender,
    attribute_sightings,
    read_sightings,
    record_sightings,
    sighting_counts,
)
from canarino.workspace import Workspace

from .conftest import MAIL_DOMAINS

T = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _canary_emails(share: ShareResult) -> list[str]:
    with share.path.open(encoding="utf-8", newline="") as fp:
        rows = list(csv.DictReader(fp))
    return [r["email"] for r in rows if r["email"].split("@")[1] in MAIL_DOMAINS]


def _mail(contact: str, minutes: int, **extra: object) -> SightingIn:
    # Seen after the shares were made: a leak can only come from earlier shares.
    seen = datetime.now(UTC) + timedelta(minutes=minutes)
    return SightingIn("email", contact, seen, **extra)  # type: ignore[arg-type]


def test_sightings_before_a_share_do_not_implicate_it(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    emails = _canary_emails(shared["Vendor B"])[:5]
    record_sightings(loaded, [SightingIn("email", e, T) for e in emails])
    assert attribute_sightings(loaded).suspects == []


def test_phishing_on_a_vendors_canaries_accuses_that_vendor(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    emails = _canary_emails(shared["Vendor B"])[:5]
    report = record_sightings(
        loaded, [_mail(e, i, dkim_domain="phish.example") for i, e in enumerate(emails)]
    )
    assert (report.recorded, report.evidence, report.expected_use) == (5, 5, 0)
    result = attribute_sightings(loaded)
    top = result.suspects[0]
    assert (top.recipient, top.canaries_seen, top.accused) == ("Vendor B", 5, True)
    assert result.noise == pytest.approx(1e-3)


def test_a_recipients_own_campaign_is_expected_use_not_evidence(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    allow_sender(loaded, "Vendor B", "dkim", "News.VendorB.example.")
    emails = _canary_emails(shared["Vendor B"])[:5]
    report = record_sightings(
        loaded, [_mail(e, i, dkim_domain="news.vendorb.example") for i, e in enumerate(emails)]
    )
    assert (report.evidence, report.expected_use) == (0, 5)
    assert attribute_sightings(loaded).suspects == []
    # The same infrastructure writing to canaries it never received is evidence.
    other = _canary_emails(shared["Vendor A"])[:1]
    assert (
        record_sightings(loaded, [_mail(other[0], 99, dkim_domain="news.vendorb.example")]).evidence
        == 1
    )


def test_non_canary_contacts_are_noise_statistics_and_duplicates_are_ignored(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    stranger = _mail("unknown.person@canary-mail.it", 1)
    report = record_sightings(loaded, [stranger, stranger])
    assert (report.recorded, report.not_canary, report.duplicates) == (1, 1, 1)
    assert sighting_counts(loaded) == {"evidence": 0, "expected_use": 0, "not_canary": 1}


def test_bad_sightings_are_reported_not_stored(loaded: Workspace) -> None:
    report = record_sightings(
        loaded,
        [
            SightingIn("fax", "x@y.it", T),
            SightingIn("email", "not-an-address", T),
            SightingIn("email", "a@b.it", datetime(2026, 1, 1)),
        ],
    )
    assert report.recorded == 0 and len(report.problems) == 3
    assert all("not-an-address" not in p for p in report.problems)


def test_allow_sender_validates_its_values(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    allow_sender(loaded, "Vendor A", "ip", "192.0.2.10")
    allow_sender(loaded, "Vendor A", "caller_id", "+39 02 1234 5678")
    with pytest.raises(InvalidInput, match="already allowed"):
        allow_sender(loaded, "Vendor A", "ip", "192.0.2.10")
    with pytest.raises(InvalidInput, match="not an IP"):
        allow_sender(loaded, "Vendor A", "ip", "999.1.1.1")
    with pytest.raises(InvalidInput, match="unknown sender kind"):
        allow_sender(loaded, "Vendor A", "carrier-pigeon", "x")


def test_read_sightings_from_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps(
            {
                "channel": "sms",
                "contact": "+39 347 555 0001",
                "seen_at": "2026-11-20T10:00+01:00",
                "caller_id": "+44 20 7946 0000",
                "uses_name": True,
            }
        )
        + "\n\n",
        encoding="utf-8",
    )
    (item,) = read_sightings(path)
    assert item.channel == "sms" and item.uses_name and item.seen_at.tzinfo is not None
    path.write_text('{"channel": "sms"}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="line 1 needs"):
        read_sightings(path)
    path.write_text('{"channel": "sms", "contact": "x", "seen_at": "2026-01-01", "x": 1}\n')
    with pytest.raises(InvalidInput, match="unknown key"):
        read_sightings(path)
