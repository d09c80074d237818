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
    count_noise,
    email_canaries,
    is_canary_email,
    noise_counts,
    read_raw_message,
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
    path.write_text(
        '{"channel": "sms", "contact": "x", "seen_at": "2026-01-01", "evidence": [1]}\n'
    )
    with pytest.raises(InvalidInput, match="evidence must be an object"):
        read_sightings(path)


# --- raw messages, noise counts, canary look-up ----------------------------------------


def _control_emails(ws: Workspace, n: int) -> list[str]:
    from sqlalchemy import select

    from canarino import models as m
    from canarino.shares import CANARY_CONTEXT

    with ws.db.session() as s:
        sealed = s.scalars(select(m.Canary.sealed).where(m.Canary.layer == "control").limit(n))
        return [ws.vault.open(x, context=CANARY_CONTEXT)["email"] for x in sealed]


def test_a_raw_message_is_kept_compressed_capped_and_linked_to_its_sightings(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    from canarino import models as m

    emails = _canary_emails(shared["Vendor A"])[:2]
    raw = b"Subject: hello\r\n\r\n" + b"x" * (loaded.settings.raw_message_cap + 500)
    items = [_mail(e, 1, evidence={"subject": "hello"}, message_id="abc") for e in emails]
    report = record_sightings(loaded, items, raw=raw)
    assert report.evidence == 2 and len(report.ids) == 2 and report.evidence_ids == report.ids
    assert report.raw_message_id is not None
    kept, truncated = read_raw_message(loaded, report.raw_message_id)
    assert truncated and kept == raw[: loaded.settings.raw_message_cap]
    with loaded.db.session() as s:
        message = s.get(m.InboundMessage, report.raw_message_id)
        assert message is not None and message.size == len(raw)
        assert len(message.raw) < 10_000  # compressed
        assert message.sighting_id == report.ids[0]
        for sid in report.ids:
            sighting = s.get(m.Sighting, sid)
            assert sighting is not None
            assert sighting.evidence["raw_message_id"] == report.raw_message_id
            assert sighting.evidence["subject"] == "hello"


def test_a_retried_message_is_a_duplicate_whatever_its_time(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    from sqlalchemy import func, select

    from canarino import models as m

    email = _canary_emails(shared["Vendor A"])[0]
    first = record_sightings(loaded, [_mail(email, 1, message_id="m1")], raw=b"data")
    again = record_sightings(loaded, [_mail(email, 30, message_id="m1")], raw=b"data")
    assert (first.recorded, again.recorded, again.duplicates) == (1, 0, 1)
    assert again.raw_message_id is None
    with loaded.db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.InboundMessage)) == 1


def test_messages_to_non_canaries_keep_no_content_and_are_counted_as_noise(
    ws: Workspace,
) -> None:
    loaded = ws
    from sqlalchemy import func, select

    from canarino import models as m

    item = _mail("nobody@canary-mail.it", 1, evidence={"subject": "secret offer"})
    report = record_sightings(loaded, [item], raw=b"Subject: secret offer\r\n\r\nbody")
    assert (report.not_canary, report.raw_message_id, report.evidence_ids) == (1, None, [])
    with loaded.db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.InboundMessage)) == 0
        (evidence,) = s.scalars(select(m.Sighting.evidence))
        assert "subject" not in evidence
    assert noise_counts(loaded) == {"unknown": 1, "control": 0}


def test_control_canaries_count_as_noise_per_channel(
    shared: dict[str, ShareResult], loaded: Workspace
) -> None:
    controls = _control_emails(loaded, 3)
    report = record_sightings(loaded, [_mail(e, i) for i, e in enumerate(controls)])
    assert report.control == 3
    assert noise_counts(loaded, channel="email")["control"] == 3
    assert noise_counts(loaded, channel="sms")["control"] == 0
    # No share holds a control canary: nobody is accused.
    assert attribute_sightings(loaded).suspects == []


def test_count_noise_adds_up_per_day_and_refuses_unknown_kinds(ws: Workspace) -> None:
    loaded = ws
    count_noise(loaded, "email", "unknown")
    count_noise(loaded, "email", "unknown", 4)
    count_noise(loaded, "sms", "unknown", 2, when=T)
    assert noise_counts(loaded, channel="email") == {"unknown": 5, "control": 0}
    assert noise_counts(loaded) == {"unknown": 7, "control": 0}
    with pytest.raises(ValueError, match="unknown noise"):
        count_noise(loaded, "email", "spam")


def test_email_canaries_finds_canaries_with_their_details_and_nothing_else(
    shared: dict[str, ShareResult], loaded: Workspace, people: list[dict[str, str]]
) -> None:
    canary = _canary_emails(shared["Vendor B"])[0]
    control = _control_emails(loaded, 1)[0]
    shouted = canary.upper()
    found = email_canaries(
        loaded, [shouted, control, people[0]["email"], "stranger@canary-mail.it", "not an address"]
    )
    assert set(found) == {shouted, control}
    assert found[shouted]["email"] == canary and found[shouted]["last_name"]
    assert is_canary_email(loaded, canary) and is_canary_email(loaded, control)
    assert not is_canary_email(loaded, people[0]["email"])
    assert not is_canary_email(loaded, "<<garbage>>")
    before = noise_counts(loaded)["unknown"]
    assert not is_canary_email(loaded, "nobody@canary-mail.it", count_unknown=True)
    assert is_canary_email(loaded, canary, count_unknown=True)
    assert noise_counts(loaded)["unknown"] == before + 1


def test_read_raw_message_of_an_unknown_id_is_a_clear_error(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="no raw message 42"):
        read_raw_message(ws, 42)
