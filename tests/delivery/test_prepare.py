from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select, update

from canarino import models as m
from canarino.customers import CUSTOMER_CONTEXT, load_customers
from canarino.delivery import NO_CHANNEL, notice_problems, notice_states, prepare_notices
from canarino.fields import FIELD_NAMES
from canarino.notices import ContentRule, label
from canarino.obligations import load_rules

from .support import (
    FIELDS,
    PEOPLE,
    Case,
    address_of,
    assert_no_personal_data_stored_in_clear,
    notices_of,
    plain,
    stored_mime,
)


def test_prepare_makes_one_notice_per_person_and_channel_and_counts_the_rest(case: Case) -> None:
    report = prepare_notices(case.ws, case.incident_id)
    assert report.prepared == case.emails
    assert report.letters == case.letters and report.unreachable == case.unreachable
    assert report.skipped == {"no email address": case.letters + case.unreachable}
    assert report.already_prepared == 0
    assert sum(report.by_language.values()) == case.people
    assert set(report.readability) == set(report.by_language)
    for language, scores in report.readability.items():
        assert len(scores) == 1 and all(isinstance(v, float) for v in scores.values()), language
    rows = notices_of(case.ws, case.incident_id)
    assert len(rows) == case.people
    assert Counter(r.channel for r in rows) == {
        "email": case.emails,
        "letter": case.letters,
        "none": case.unreachable,
    }
    assert len({r.customer_id for r in rows}) == case.people
    emails = [r for r in rows if r.channel == "email"]
    assert all(r.state == "queued" and r.attempts == 0 for r in emails)
    assert all(r.message_id == f"<{r.idempotency_key}@canary-mail.it>" for r in emails)
    assert all(r.route and r.content_sha256 and r.reference for r in emails)
    nobody = [r for r in rows if r.channel == "none"]
    assert all(r.state == "failed" and r.last_error == NO_CHANNEL for r in nobody)
    assert notice_states(case.ws, case.incident_id) == {
        "failed": case.unreachable,
        "queued": case.emails + case.letters,
    }
    reasons = {p.reason for p in notice_problems(case.ws, case.incident_id)}
    assert NO_CHANNEL in reasons and "instead of e-mail: no email address" in reasons
    assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_prepared_email_is_sealed_and_lists_the_persons_exposed_fields(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    rows = notices_of(case.ws, case.incident_id, "email")
    records = load_customers(case.ws, [r.customer_id for r in rows])
    for row in rows:
        record = records[row.customer_id]
        assert record["email"].encode() not in row.sealed
        assert address_of(case.ws, row) == record["email"]
        msg = stored_mime(case.ws, row)
        assert msg["Message-ID"] == row.message_id and msg["To"] == record["email"]
        assert msg["Date"] is None  # set when it is sent
        text = msg.get_body(("plain",))
        assert text is not None
        body = text.get_content().replace("\r\n", "\n")
        listed = [ln[2:] for ln in body.split("\n\n")[4].splitlines() if ln.startswith("- ")]
        assert listed == [label(f, row.language) for f in FIELDS.split(",")]
        assert record["last_name"] in body.split("\n\n")[1]
        for name in set(FIELD_NAMES) - set(FIELDS.split(",")):
            assert f"- {label(name, row.language)}\n" not in body


def test_language_follows_the_customer_and_a_missing_translation_is_noted(case: Case) -> None:
    with case.ws.db.session() as s:
        first = s.scalar(select(m.Notice.id).limit(1))  # none yet
        assert first is None
        s.execute(update(m.Customer).where(m.Customer.id.in_([2, 3])).values(language="pt"))
        languages = dict(s.execute(select(m.Customer.id, m.Customer.language)).all())
    report = prepare_notices(case.ws, case.incident_id)
    rows = {r.customer_id: r for r in notices_of(case.ws, case.incident_id) if r.channel != "none"}
    for cid, row in rows.items():
        expected = "en" if languages[cid] == "pt" else languages[cid]
        assert row.language == expected
    assert report.fallback == 2
    assert report.fallback_reasons == {"no notice texts in 'pt'": 2}
    assert rows[2].note == "written in en: no notice texts in 'pt'"
    assert len(report.by_language) >= 3  # Italian plus other languages of the customer mix


def test_preparing_twice_creates_no_duplicates(case: Case) -> None:
    first = prepare_notices(case.ws, case.incident_id)
    second = prepare_notices(case.ws, case.incident_id)
    assert second.prepared == second.letters == second.unreachable == 0
    assert second.already_prepared == case.people
    assert len(notices_of(case.ws, case.incident_id)) == first.prepared + first.letters + 3


def test_invalid_address_fails_with_its_reason_and_gets_a_letter(case: Case) -> None:
    with case.ws.db.session() as s:
        sealed = s.scalar(select(m.Customer.sealed).where(m.Customer.id == 2))
        assert sealed is not None
        record = case.ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
        record["email"] = "mario.rossi@@example..com"
        s.execute(
            update(m.Customer)
            .where(m.Customer.id == 2)
            .values(sealed=case.ws.vault.seal(record, context=CUSTOMER_CONTEXT))
        )
    report = prepare_notices(case.ws, case.incident_id)
    assert report.skipped["invalid e-mail address"] == 1
    rows = [r for r in notices_of(case.ws, case.incident_id) if r.customer_id == 2]
    assert {(r.channel, r.state) for r in rows} == {("email", "failed"), ("letter", "queued")}
    failed = next(r for r in rows if r.channel == "email")
    assert failed.last_error is not None and failed.last_error.startswith("invalid e-mail address")
    assert "mario.rossi" not in failed.last_error and "example" not in failed.last_error
    assert "@" not in failed.last_error
    assert_no_personal_data_stored_in_clear(case.ws, case.incident_id)


def test_massachusetts_resident_is_told_without_nature_or_count(case: Case) -> None:
    with case.ws.db.session() as s:
        s.execute(
            update(m.Customer)
            .where(m.Customer.id == 2)
            .values(country="US", region="MA", language="en")
        )
    rule = next(r.rule for r in load_rules().rules if r.rule.id == "us-ma.individuals")
    rules = {
        "US-MA": ContentRule(frozenset(rule.required_content), frozenset(rule.forbidden_content))
    }
    report = prepare_notices(case.ws, case.incident_id, content_rules=rules, monitoring_months=18)
    assert report.omitted == {"nature_of_breach": 1, "number_affected": 1}
    assert report.missing == {}
    rows = {r.customer_id: r for r in notices_of(case.ws, case.incident_id, "email")}
    ma, other = rows[2], rows[3]
    ma_text, other_text = (plain(case.ws, row) for row in (ma, other))
    assert f": {PEOPLE}." in other_text  # the count, in the reader's language
    assert f": {PEOPLE}." not in ma_text and "Number of people affected" not in ma_text
    assert "found a copy" not in ma_text and "The copy contains" not in ma_text
    assert "right to get a police report" in ma_text and "security freeze" in ma_text
    assert "18 months of credit monitoring" in ma_text
    assert ma.note is not None and "US-MA" in ma.note and "nature_of_breach" in ma.note


def _listed_fields(text: str) -> list[str]:
    body = text.replace("\r\n", "\n")
    return [ln[2:] for ln in body.split("\n\n")[4].splitlines() if ln.startswith("- ")]


def test_each_notice_lists_the_fields_exposed_for_that_person_only(case: Case) -> None:
    exposed = {2: "email", 3: "first_name,phone,birth_date", 5: "iban,tax_code,email"}
    with case.ws.db.session() as s:
        for cid, names in exposed.items():
            s.execute(
                update(m.IncidentPerson)
                .where(m.IncidentPerson.customer_id == cid)
                .values(fields=names)
            )
    prepare_notices(case.ws, case.incident_id)
    rows = {r.customer_id: r for r in notices_of(case.ws, case.incident_id, "email")}
    assert set(exposed) <= set(rows)
    for cid, names in exposed.items():
        row = rows[cid]
        wanted = {label(name, row.language) for name in names.split(",")}
        assert set(_listed_fields(plain(case.ws, row))) == wanted, cid
    others = [r for cid, r in rows.items() if cid not in exposed]
    assert others and all(
        _listed_fields(plain(case.ws, r)) == [label(f, r.language) for f in FIELDS.split(",")]
        for r in others
    )


def test_run_summary_names_everyone_not_reached_by_email_and_why(case: Case) -> None:
    with case.ws.db.session() as s:
        sealed = s.scalar(select(m.Customer.sealed).where(m.Customer.id == 2))
        assert sealed is not None
        record = case.ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
        record["email"] = "not-an-address@"
        s.execute(
            update(m.Customer)
            .where(m.Customer.id == 2)
            .values(sealed=case.ws.vault.seal(record, context=CUSTOMER_CONTEXT))
        )
        s.execute(update(m.Customer).where(m.Customer.id == 3).values(language="pt"))
    report = prepare_notices(case.ws, case.incident_id)
    summary = "\n".join(report.summary())
    assert f"{case.emails - 1} e-mails prepared, {case.letters + 1} letters" in summary
    assert f"{case.unreachable} people nobody can reach" in summary
    assert (
        f"{case.letters + case.unreachable} people not notified by e-mail: no email address"
        in summary
    )
    assert "1 people not notified by e-mail: invalid e-mail address" in summary
    assert f"{case.unreachable} people: {NO_CHANNEL}" in summary
    assert "1 notices in a fallback language: no notice texts in 'pt'" in summary
    assert "Readability (en): flesch kincaid grade" in summary and "meets the target" in summary
    assert "@" not in summary and "not-an-address" not in summary
    # The same reasons are kept on the notices themselves.
    reasons = [p.reason for p in notice_problems(case.ws, case.incident_id)]
    assert sum(r.startswith("invalid e-mail address") for r in reasons) == 1
    assert sum(r == NO_CHANNEL for r in reasons) == case.unreachable
    assert sum("no notice texts in 'pt'" in r for r in reasons) == 1


@pytest.mark.parametrize("language", ["it", "en", "fr", "de", "es"])
def test_an_email_is_prepared_in_each_supported_language(case: Case, language: str) -> None:
    with case.ws.db.session() as s:
        s.execute(update(m.Customer).where(m.Customer.id == 2).values(language=language))
    report = prepare_notices(case.ws, case.incident_id)
    row = next(r for r in notices_of(case.ws, case.incident_id, "email") if r.customer_id == 2)
    msg = stored_mime(case.ws, row)
    assert row.language == language and msg["Content-Language"] == language
    assert row.note is None or "written in" not in row.note
    assert report.by_language[language] >= 1 and language in report.readability
    other = next(
        r for r in notices_of(case.ws, case.incident_id, "email") if r.language != language
    )
    assert msg["Subject"] and msg["Subject"] != stored_mime(case.ws, other)["Subject"]
