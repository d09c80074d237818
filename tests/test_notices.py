from __future__ import annotations

import html
from datetime import date

import pytest

from canarino.fields import FIELD_NAMES, label
from canarino.notices import (
    NoticeContext,
    choose_language,
    idempotency_key,
    message_id,
    render_notice,
    supported_languages,
)

NEVER_ASKS = {
    "it": "non Le chiederà mai password o dati di pagamento per telefono o per e-mail",
    "en": "will never ask you for passwords or payment details by phone or email",
}


def _ctx(**changes: object) -> NoticeContext:
    base: dict[str, object] = {
        "name": "Giulia Bianchi",
        "language": "it",
        "exposed_fields": ["email", "first_name", "phone"],
        "company_name": "Esempio S.p.A.",
        "company_email": "privacy@esempio.it",
        "dpo_contact": "dpo@esempio.it",
        "aware_on": date(2026, 3, 2),
        "occurred_on": None,
    }
    base.update(changes)
    return NoticeContext(**base)  # type: ignore[arg-type]


def _listed_labels(text: str, language: str) -> list[str]:
    """The data labels in the plain-text list under the 'information involved' heading."""
    heading = "QUALI DATI SONO COINVOLTI" if language == "it" else "WHAT INFORMATION WAS INVOLVED"
    section = text.split(heading, 1)[1].split("\n\n", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def _html_list_items(page: str, heading: str) -> list[str]:
    section = page.split(heading, 1)[1].split("</ul>", 1)[0]
    return [html.unescape(chunk.split("</li>", 1)[0]) for chunk in section.split("<li>")[1:]]


@pytest.mark.parametrize("language", ["it", "en"])
def test_notice_lists_exactly_the_exposed_fields_in_canonical_order(language: str) -> None:
    exposed = ["phone", "birth_date", "first_name", "email"]
    notice = render_notice(_ctx(language=language, exposed_fields=exposed))
    expected = [label(f, language) for f in FIELD_NAMES if f in exposed]
    assert expected == [label(f, language) for f in ("first_name", "email", "phone", "birth_date")]
    assert _listed_labels(notice.text, language) == expected
    heading = "Quali dati sono coinvolti" if language == "it" else "What information was involved"
    assert _html_list_items(notice.html, heading) == expected


@pytest.mark.parametrize("language", ["it", "en"])
@pytest.mark.parametrize("exposed", [["email"], ["phone", "last_name"], ["iban", "tax_code"]])
def test_no_other_field_label_appears_in_the_data_list(language: str, exposed: list[str]) -> None:
    notice = render_notice(_ctx(language=language, exposed_fields=exposed))
    listed = set(_listed_labels(notice.text, language))
    heading = "Quali dati sono coinvolti" if language == "it" else "What information was involved"
    listed_html = set(_html_list_items(notice.html, heading))
    for name in FIELD_NAMES:
        shown = label(name, language)
        if name in exposed:
            assert shown in listed and shown in listed_html
        else:
            assert shown not in listed and shown not in listed_html


def test_labels_of_unexposed_distinctive_fields_are_absent_from_the_whole_notice() -> None:
    notice = render_notice(_ctx(language="en", exposed_fields=["email"]))
    for name in ("tax_code", "iban", "birth_date", "customer_id", "ticket_id", "postcode"):
        assert label(name, "en") not in notice.text
        assert label(name, "en") not in notice.html
    it_notice = render_notice(_ctx(language="it", exposed_fields=["email"]))
    for name in ("tax_code", "iban", "birth_date", "customer_id", "ticket_id", "postcode"):
        assert label(name, "it") not in it_notice.text
        assert label(name, "it") not in it_notice.html


def test_italian_notice_is_formal_and_has_every_section() -> None:
    notice = render_notice(_ctx(language="it", occurred_on=date(2026, 2, 8)))
    assert notice.language == "it" and notice.fallback is False
    assert "violazione" in notice.subject and "Esempio S.p.A." in notice.subject
    text = notice.text
    assert text.startswith("AVVISO DI VIOLAZIONE DEI DATI PERSONALI")
    assert "Gentile Giulia Bianchi," in text
    headings = [
        "COSA È SUCCESSO",
        "QUALI DATI SONO COINVOLTI",
        "COSA PUÒ COMPORTARE PER LEI",
        "COSA STIAMO FACENDO",
        "COSA PUÒ FARE",
        "PER ULTERIORI INFORMAZIONI",
    ]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "Ce ne siamo accorti il 2 marzo 2026." in text
    assert "l'8 febbraio 2026" in text
    assert "informarLa" in text and "Diffidi" in text  # formal "Lei"
    assert "privacy@esempio.it" in text
    assert "(DPO): dpo@esempio.it" in text
    assert '<html lang="it">' in notice.html


def test_english_notice_uses_the_california_headings() -> None:
    notice = render_notice(_ctx(language="en"))
    assert notice.language == "en" and notice.fallback is False
    assert notice.subject.startswith("Esempio S.p.A.: notice of data breach")
    headings = [
        "NOTICE OF DATA BREACH",
        "WHAT HAPPENED",
        "WHAT INFORMATION WAS INVOLVED",
        "WHAT THIS COULD MEAN FOR YOU",
        "WHAT WE ARE DOING",
        "WHAT YOU CAN DO",
        "FOR MORE INFORMATION",
    ]
    positions = [notice.text.index(h) for h in headings]
    assert positions == sorted(positions)
    for h in ("What happened", "What information was involved", "What we are doing"):
        assert f">{h}</h2>" in notice.html
    assert "We learned of it on March 2, 2026." in notice.text
    assert "We are still establishing when the data left our control." in notice.text
    assert "Data Protection Officer: dpo@esempio.it" in notice.text


@pytest.mark.parametrize("language", ["it", "en"])
def test_never_asks_for_passwords_sentence_is_in_text_and_html(language: str) -> None:
    notice = render_notice(_ctx(language=language))
    assert NEVER_ASKS[language] in notice.text
    assert NEVER_ASKS[language] in html.unescape(notice.html)


def test_unsupported_language_falls_back_to_english_and_says_so() -> None:
    notice = render_notice(_ctx(language="de"))
    assert notice.language == "en"
    assert notice.fallback is True
    assert "WHAT HAPPENED" in notice.text
    assert choose_language("it_IT") == ("it", False)
    assert choose_language("EN-gb") == ("en", False)
    assert choose_language("") == ("en", True)
    assert supported_languages() == {"it", "en"}


def test_hostile_name_is_escaped_in_html_and_kept_on_one_line() -> None:
    hostile = '<script>alert("x")</script>\nBcc: a@b.c'
    notice = render_notice(_ctx(name=hostile, language="en"))
    assert "<script>" not in notice.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in notice.html
    assert '<script>alert("x")</script> Bcc: a@b.c' in notice.text
    assert "\nBcc:" not in notice.text


def test_hostile_company_name_cannot_break_the_subject_or_html() -> None:
    notice = render_notice(_ctx(company_name="Evil <b>Co</b>\r\nBcc: x@y.z", language="it"))
    assert "\n" not in notice.subject and "\r" not in notice.subject
    assert "<b>Co</b>" not in notice.html


def test_phone_exposure_warns_about_fake_support_calls_only_when_exposed() -> None:
    with_phone = render_notice(_ctx(language="en", exposed_fields=["phone"]))
    without = render_notice(_ctx(language="en", exposed_fields=["email"]))
    warning = "calls and text messages from anyone who says they are our customer support"
    assert warning in with_phone.text and warning in with_phone.html
    assert warning not in without.text
    it_phone = render_notice(_ctx(language="it", exposed_fields=["phone"]))
    assert "chiamate e SMS di chi dice di essere il nostro servizio clienti" in it_phone.text


def test_empty_name_gives_a_generic_greeting_and_no_other_personal_data() -> None:
    it_notice = render_notice(_ctx(name="", language="it"))
    en_notice = render_notice(_ctx(name="  ", language="en"))
    assert "Gentile cliente," in it_notice.text
    assert "Dear customer," in en_notice.text


def test_custom_what_happened_replaces_the_standard_text() -> None:
    notice = render_notice(_ctx(language="en", what_happened="A vendor's server was open."))
    assert "A vendor's server was open." in notice.text
    assert "A vendor&#39;s server was open." in notice.html
    assert "entrusted to a service provider" not in notice.text


def test_unknown_or_missing_fields_are_programmer_errors() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        render_notice(_ctx(exposed_fields=["password"]))
    with pytest.raises(ValueError, match="at least one"):
        render_notice(_ctx(exposed_fields=[]))


def test_idempotency_key_is_stable_and_distinct() -> None:
    key = idempotency_key(7, 42, "email")
    assert key == idempotency_key(7, 42, "email")
    assert len(key) == 64 and int(key, 16) >= 0
    others = {idempotency_key(7, 42, "letter"), idempotency_key(8, 42, "email")}
    others.add(idempotency_key(7, 43, "email"))
    assert key not in others and len(others) == 3


def test_message_id_wraps_the_key_in_the_sender_domain() -> None:
    key = idempotency_key(1, 2, "email")
    assert message_id(key, "Esempio.IT") == f"<{key}@esempio.it>"
    with pytest.raises(ValueError):
        message_id(key, "")
    with pytest.raises(ValueError):
        message_id("a@b", "esempio.it")
