from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from markupsafe import escape

from canarino.fields import FIELD_NAMES
from canarino.fields import label as field_label
from canarino.notices import (
    CONTENT_ALIASES,
    ContentRule,
    NoticeContext,
    catalogs,
    choose_language,
    content_items,
    content_rules_from_obligations,
    content_rules_from_ruleset,
    fallback_reason,
    idempotency_key,
    label,
    meets_target,
    message_id,
    notice_reference,
    parse_catalog,
    readability,
    reference_from_token,
    reference_token,
    render_notice,
    render_sms,
    rule_for_resident,
    sms_size,
    supported_languages,
)
from canarino.obligations import IncidentFacts, evaluate, load_rules

LANGUAGES = ["it", "en", "fr", "de", "es"]
# Per language: the title, the headings in order, a marker of the formal register, and the
# "never asks for passwords" sentence.
EXPECTED = {
    "it": (
        "AVVISO DI VIOLAZIONE DEI DATI PERSONALI",
        [
            "COSA È SUCCESSO",
            "QUALI DATI SONO COINVOLTI",
            "COSA PUÒ COMPORTARE PER LEI",
            "COSA STIAMO FACENDO",
            "COSA PUÒ FARE",
            "COME VERIFICARE CHE UN MESSAGGIO VENGA DAVVERO DA NOI",
            "PER ULTERIORI INFORMAZIONI",
        ],
        "informarLa",
        "non Le chiederà mai password o dati di pagamento per telefono o per e-mail",
    ),
    "en": (
        "NOTICE OF DATA BREACH",
        [
            "WHAT HAPPENED",
            "WHAT INFORMATION WAS INVOLVED",
            "WHAT THIS COULD MEAN FOR YOU",
            "WHAT WE ARE DOING",
            "WHAT YOU CAN DO",
            "HOW TO CHECK THAT A MESSAGE IS REALLY FROM US",
            "FOR MORE INFORMATION",
        ],
        "Dear Giulia Bianchi,",
        "will never ask you for passwords or payment details by phone or email",
    ),
    "fr": (
        "NOTIFICATION DE VIOLATION DE DONNÉES",
        [
            "CE QUI S'EST PASSÉ",
            "LES INFORMATIONS CONCERNÉES",
            "CE QUE CELA PEUT SIGNIFIER POUR VOUS",
            "CE QUE NOUS FAISONS",
            "CE QUE VOUS POUVEZ FAIRE",
            "COMMENT VÉRIFIER QU'UN MESSAGE VIENT BIEN DE NOUS",
            "POUR EN SAVOIR PLUS",
        ],
        "vous",
        "ne vous demandera jamais de mot de passe ni de données de paiement",
    ),
    "de": (
        "BENACHRICHTIGUNG ÜBER EINE DATENSCHUTZVERLETZUNG",
        [
            "WAS IST PASSIERT",
            "WELCHE DATEN BETROFFEN SIND",
            "WAS DAS FÜR SIE BEDEUTEN KANN",
            "WAS WIR UNTERNEHMEN",
            "WAS SIE TUN KÖNNEN",
            "SO PRÜFEN SIE, OB EINE NACHRICHT WIRKLICH VON UNS KOMMT",
            "WEITERE INFORMATIONEN",
        ],
        "Sie",
        "wird Sie niemals per Telefon oder E-Mail nach Passwörtern oder Zahlungsdaten fragen",
    ),
    "es": (
        "AVISO DE VIOLACIÓN DE DATOS PERSONALES",
        [
            "QUÉ HA OCURRIDO",
            "QUÉ INFORMACIÓN SE HA VISTO AFECTADA",
            "QUÉ PUEDE SIGNIFICAR PARA USTED",
            "QUÉ ESTAMOS HACIENDO",
            "QUÉ PUEDE HACER USTED",
            "CÓMO COMPROBAR QUE UN MENSAJE ES REALMENTE NUESTRO",
            "MÁS INFORMACIÓN",
        ],
        "usted",
        "nunca le pedirá contraseñas ni datos de pago",
    ),
}
# Words an informal notice would use: tu/toi/du/tú forms.
INFORMAL = {
    "it": r"\b(tuo|tua|tuoi|ti)\b",
    "fr": r"\b(tu|toi|ton|ta|tes)\b",
    "de": r"\b(du|dich|dein|deine|dir)\b",
    "es": r"\b(tú|tu|tus|te)\b",
    "en": r"$^",
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
        "reference": "7KQM-4X2P-DQ3A",
    }
    base.update(changes)
    return NoticeContext(**base)  # type: ignore[arg-type]


def _listed_labels(text: str, language: str) -> list[str]:
    """The data labels in the plain-text list under the 'information involved' heading."""
    heading = EXPECTED[language][1][1]
    section = text.split(heading, 1)[1].split("\n\n", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def _html_list_items(page: str, heading: str) -> list[str]:
    section = page.split(f">{escape(heading)}</h2>", 1)[1].split("</ul>", 1)[0]
    return [html.unescape(chunk.split("</li>", 1)[0]) for chunk in section.split("<li>")[1:]]


HEADING_KEYS = [
    "h_what_happened",
    "h_information",
    "h_consequences",
    "h_measures",
    "h_steps",
    "h_verify",
    "h_more",
]


def _heading(language: str, index: int) -> str:
    return catalogs()[language].texts[HEADING_KEYS[index]]


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_has_every_section_in_order_in_a_formal_register(language: str) -> None:
    title, headings, formal, never_asks = EXPECTED[language]
    notice = render_notice(_ctx(language=language, occurred_on=date(2026, 2, 8)))
    assert notice.language == language and notice.fallback is False
    assert notice.fallback_reason is None
    text = notice.text
    assert text.startswith(title)
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    assert formal in text
    assert not re.search(INFORMAL[language], text.lower())
    assert never_asks in text and never_asks in html.unescape(notice.html)
    assert f'<html lang="{language}">' in notice.html
    assert "Esempio S.p.A." in notice.subject and "\n" not in notice.subject
    assert "privacy@esempio.it" in text and "dpo@esempio.it" in text
    assert "7KQM-4X2P-DQ3A" in text
    for index in range(len(headings)):
        assert f">{escape(_heading(language, index))}</h2>" in notice.html


@pytest.mark.parametrize(
    ("language", "aware", "occurred"),
    [
        ("it", "Ce ne siamo accorti il 2 marzo 2026.", "l'8 febbraio 2026"),
        ("en", "We learned of it on March 2, 2026.", "on February 8, 2026"),
        ("fr", "Nous l'avons appris le 2 mars 2026.", "le 8 février 2026"),
        ("de", "Wir haben am 2. März 2026 davon erfahren.", "am 8. Februar 2026"),
        ("es", "Lo supimos el 2 de marzo de 2026.", "el 8 de febrero de 2026"),
    ],
)
def test_dates_read_naturally_in_each_language(language: str, aware: str, occurred: str) -> None:
    notice = render_notice(_ctx(language=language, occurred_on=date(2026, 2, 8)))
    assert aware in notice.text
    assert occurred in notice.text


def test_first_of_the_month_uses_the_ordinal_where_the_language_does() -> None:
    assert "le 1er mars 2026" in render_notice(_ctx(language="fr", aware_on=date(2026, 3, 1))).text
    assert "il 1º marzo 2026" in render_notice(_ctx(language="it", aware_on=date(2026, 3, 1))).text


@pytest.mark.parametrize("language", LANGUAGES)
def test_notice_lists_exactly_the_exposed_fields_in_canonical_order(language: str) -> None:
    exposed = ["phone", "birth_date", "first_name", "email"]
    notice = render_notice(_ctx(language=language, exposed_fields=exposed))
    expected = [label(f, language) for f in ("first_name", "email", "phone", "birth_date")]
    assert _listed_labels(notice.text, language) == expected
    assert _html_list_items(notice.html, _heading(language, 1)) == expected


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("exposed", [["email"], ["phone", "last_name"], ["iban", "tax_code"]])
def test_no_other_field_label_appears_in_the_data_list(language: str, exposed: list[str]) -> None:
    notice = render_notice(_ctx(language=language, exposed_fields=exposed))
    listed = set(_listed_labels(notice.text, language))
    listed_html = set(_html_list_items(notice.html, _heading(language, 1)))
    for name in FIELD_NAMES:
        shown = label(name, language)
        if name in exposed:
            assert shown in listed and shown in listed_html
        else:
            assert shown not in listed and shown not in listed_html


@pytest.mark.parametrize("language", LANGUAGES)
def test_labels_of_unexposed_distinctive_fields_are_absent_from_the_whole_notice(
    language: str,
) -> None:
    notice = render_notice(_ctx(language=language, exposed_fields=["email"]))
    for name in ("tax_code", "iban", "birth_date", "customer_id", "ticket_id"):
        assert label(name, language) not in notice.text
        assert label(name, language) not in notice.html


def test_italian_and_english_labels_are_those_of_the_field_vocabulary() -> None:
    for name in FIELD_NAMES:
        assert label(name, "it") == field_label(name, "it")
        assert label(name, "en") == field_label(name, "en")


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_notice_says_how_to_check_that_a_message_is_really_from_us(language: str) -> None:
    with_page = render_notice(_ctx(language=language, verify_url="verifica.esempio.it"))
    without = render_notice(_ctx(language=language))
    assert "verifica.esempio.it" in with_page.text
    assert "7KQM-4X2P-DQ3A" in with_page.text and "7KQM-4X2P-DQ3A" in with_page.html
    assert "privacy@esempio.it" in without.text.split(EXPECTED[language][1][5], 1)[1]


@pytest.mark.parametrize("language", LANGUAGES)
def test_readability_meets_the_target_of_each_language(language: str) -> None:
    every_risk = ["first_name", "last_name", "email", "phone", "address", "birth_date", "iban"]
    notice = render_notice(
        _ctx(language=language, exposed_fields=every_risk, occurred_on=date(2026, 2, 8))
    )
    scores = readability(notice.text, language)
    assert len(scores) == 1 and all(isinstance(v, float) for v in scores.values())
    assert meets_target(language, scores) is True, scores


def test_english_flesch_kincaid_grade_is_at_most_eight() -> None:
    notice = render_notice(_ctx(language="en", exposed_fields=["email", "phone", "iban"]))
    assert readability(notice.text, "en")["flesch_kincaid_grade"] <= 8


def test_massachusetts_resident_gets_no_breach_nature_and_no_count() -> None:
    rule = ContentRule(
        required=frozenset(
            {
                "police_report_right",
                "security_freeze_instructions",
                "security_freeze_free",
                "mitigation_services",
                "parent_company",
            }
        ),
        forbidden=frozenset({"nature_of_breach", "number_affected"}),
    )
    ctx = _ctx(language="en", affected_count=48_213, exposed_fields=["tax_code", "first_name"])
    notice = render_notice(ctx, required=rule.required, forbidden=rule.forbidden)
    unrestricted = render_notice(ctx)
    assert "48,213" in unrestricted.text and "service provider" in unrestricted.text
    for part in (notice.text, notice.html):
        assert "48,213" not in part and "48213" not in part
        assert "Number of people affected" not in part
        assert "service provider" not in part  # the nature: a vendor's copy found outside
        assert "found a copy" not in part and "The copy contains" not in part
    assert notice.omitted == ("nature_of_breach", "number_affected")
    assert "right to get a police report" in notice.text
    assert "security freeze on your credit file" in notice.text
    assert "free of charge" in notice.text
    assert "Equifax" in notice.text and "TransUnion" in notice.html
    # Credit monitoring is required but the company offered none: reported, not invented.
    assert notice.missing == ("mitigation_services",)
    offered = render_notice(
        replace(ctx, monitoring_months=18), required=rule.required, forbidden=rule.forbidden
    )
    assert "18 months of credit monitoring" in offered.text and offered.missing == ()
    assert _listed_labels(notice.text, "en") == ["first name", "tax code"]


def test_short_content_names_are_aliases_of_the_rules_vocabulary() -> None:
    assert CONTENT_ALIASES["breach_nature"] == "nature_of_breach"
    ctx = _ctx(language="it", affected_count=12)
    short = render_notice(ctx, forbidden={"breach_nature", "affected_count"})
    long = render_notice(ctx, forbidden={"nature_of_breach", "number_affected"})
    assert short.text == long.text and "Persone coinvolte" not in short.text
    with pytest.raises(ValueError, match="unknown content items: vibes"):
        content_items(["vibes"])
    with pytest.raises(ValueError, match="both required and forbidden"):
        render_notice(ctx, required={"number_affected"}, forbidden={"affected_count"})


def test_california_items_say_whether_law_enforcement_delayed_the_notice() -> None:
    ca = {"law_enforcement_delay", "date_of_notice", "toll_free_contact"}
    plain = render_notice(_ctx(language="en"), required=ca)
    assert "We did not delay this notice because of a police investigation." in plain.text
    assert plain.missing == ("date_of_notice", "toll_free_contact")
    full = render_notice(
        _ctx(
            language="en",
            delayed_for_law_enforcement=True,
            notice_on=date(2026, 3, 9),
            company_phone="800-555-0100",
        ),
        required=ca,
    )
    assert "A law enforcement agency asked us to wait" in full.text
    assert "Date: March 9, 2026" in full.text and "800-555-0100" in full.text
    assert full.missing == ()


def test_content_rules_come_from_the_obligations_to_tell_individuals() -> None:
    facts = IncidentFacts(
        categories={"identity", "government_id"},
        affected={"US-MA": 10, "IT": 5},
        aware=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        risk="high_risk",
    )
    rules = content_rules_from_obligations(evaluate(facts, now=facts.aware))
    assert "nature_of_breach" in rules["US-MA"].forbidden
    assert "police_report_right" in rules["US-MA"].required
    rule, used = rule_for_resident(rules, "US", "ma")
    assert used == ("US-MA",) and rule == rules["US-MA"]
    none, used = rule_for_resident(rules, "US", "TX")
    assert none == ContentRule() and used == ()


def test_content_rules_of_the_packaged_law_files_bind_residents() -> None:
    rules = content_rules_from_ruleset(load_rules(), date(2026, 3, 2))
    assert rules["US-MA"].forbidden == {"nature_of_breach", "number_affected"}
    assert "police_report_right" in rules["US-MA"].required
    assert "dpo_contact" in rules["EU"].required
    assert "toll_free_contact" not in rules.get("US", ContentRule()).required  # HIPAA only
    health = content_rules_from_ruleset(
        load_rules(), date(2026, 3, 2), sectors=["hipaa_covered_entity"]
    )
    assert "toll_free_contact" in health["US"].required
    rule, used = rule_for_resident(rules, "IT", "RM")
    assert "EU" in used and "likely_consequences" in rule.required
    notice = render_notice(_ctx(language="it"), required=rule.required, forbidden=rule.forbidden)
    assert notice.missing == ()


def test_a_prohibition_wins_over_another_jurisdictions_requirement() -> None:
    rules = {
        "US-MA": ContentRule(forbidden=frozenset({"number_affected"})),
        "US": ContentRule(required=frozenset({"number_affected"})),
    }
    rule, used = rule_for_resident(rules, "US", "MA")
    assert used == ("US-MA", "US") and rule.required == frozenset()
    notice = render_notice(
        _ctx(language="en", affected_count=9),
        required=rule.required,
        forbidden=rule.forbidden,
    )
    assert "Number of people affected" not in notice.text


def test_unsupported_language_falls_back_to_english_and_says_why() -> None:
    notice = render_notice(_ctx(language="pt"))
    assert notice.language == "en" and notice.fallback is True
    assert notice.fallback_reason == "no notice texts in 'pt'"
    assert choose_language("it_IT") == ("it", False)
    assert choose_language("EN-gb") == ("en", False)
    assert choose_language("de-AT") == ("de", False)
    assert choose_language("") == ("en", True)
    assert fallback_reason("") == "no language known for this person"
    assert supported_languages() == {"it", "en", "fr", "de", "es"}


def test_a_translation_missing_a_text_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    french = catalogs()["fr"]
    broken_texts = {k: v for k, v in french.texts.items() if k != "never_asks"}
    broken_texts["verify_page"] = broken_texts["verify_page"].replace("{url}", "{lien}")
    source = "texts:\n" + "".join(
        f"  {k}: {v!r}\n".replace("\\'", "''") for k, v in broken_texts.items()
    )
    source += "fields:\n" + "".join(f"  {k}: {v!r}\n" for k, v in french.fields.items())
    broken = parse_catalog("fr", source, catalogs()["en"])
    assert broken.problems == (
        "missing never_asks",
        "placeholders differ from English in verify_page",
    )
    monkeypatch.setitem(catalogs(), "fr", broken)
    notice = render_notice(_ctx(language="fr"))
    assert notice.language == "en" and notice.fallback
    assert notice.fallback_reason is not None
    assert "'fr' notice texts are incomplete" in notice.fallback_reason
    assert "missing never_asks" in notice.fallback_reason
    assert "fr" not in supported_languages()


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


def test_placeholder_lookalikes_in_values_are_not_expanded() -> None:
    notice = render_notice(_ctx(name="{company} {0}", language="en"))
    assert "Dear {company} {0}," in notice.text


def test_phone_exposure_warns_about_fake_support_calls_only_when_exposed() -> None:
    with_phone = render_notice(_ctx(language="en", exposed_fields=["phone"]))
    without = render_notice(_ctx(language="en", exposed_fields=["email"]))
    warning = "calls and text messages from anyone who says they are our customer support"
    assert warning in with_phone.text and warning in with_phone.html
    assert warning not in without.text
    it_phone = render_notice(_ctx(language="it", exposed_fields=["phone"]))
    assert "chiamate e SMS di chi dice di essere il nostro servizio clienti" in it_phone.text


def test_empty_name_gives_a_generic_greeting() -> None:
    greetings = {"it": "Gentile cliente,", "en": "Dear customer,", "fr": "Madame, Monsieur,"}
    greetings |= {"de": "Sehr geehrte Kundin, sehr geehrter Kunde,", "es": "Estimado/a cliente:"}
    for language, greeting in greetings.items():
        assert greeting in render_notice(_ctx(name="  ", language=language)).text


def test_custom_what_happened_replaces_the_standard_text() -> None:
    notice = render_notice(_ctx(language="en", what_happened="A vendor's server was open."))
    assert "A vendor's server was open." in notice.text
    assert "A vendor&#39;s server was open." in notice.html
    assert "given to a service provider" not in notice.text


def test_unknown_or_missing_fields_are_programmer_errors() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        render_notice(_ctx(exposed_fields=["shoe_size"]))
    with pytest.raises(ValueError, match="at least one"):
        render_notice(_ctx(exposed_fields=[]))


def test_body_html_is_the_page_without_its_frame() -> None:
    notice = render_notice(_ctx(language="de"))
    assert notice.body_html.strip() in notice.html
    assert "<html" not in notice.body_html and "<h1" in notice.body_html


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


def test_reference_is_short_readable_and_round_trips_as_a_token() -> None:
    refs = {notice_reference(idempotency_key(1, i, "email")) for i in range(2000)}
    assert len(refs) == 2000
    for ref in list(refs)[:50]:
        assert re.fullmatch(
            r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", ref
        )
        assert reference_from_token(reference_token(ref)) == ref


@pytest.mark.parametrize(
    ("language", "advice"),
    [
        ("en", "Change your password"),
        ("it", "Cambi la password"),
        ("fr", "Changez votre mot de passe"),
        ("de", "Ändern Sie Ihr Passwort"),
        ("es", "Cambie su contraseña"),
    ],
)
def test_a_leaked_password_comes_with_advice_to_change_it(language: str, advice: str) -> None:
    with_password = render_notice(_ctx(language=language, exposed_fields=["email", "password"]))
    without = render_notice(_ctx(language=language, exposed_fields=["email"]))
    assert advice in with_password.text and advice not in without.text


# --- text messages -------------------------------------------------------------------------

VERIFY = "https://www.esempio.it/public/verify"


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # an extension character takes two septets
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # ... never split across two parts
        ("èéùìòàÄÖÑÜäöñüßÉ" * 10, "GSM-7", 160, 1),
        ("ê" * 70, "UCS-2", 70, 1),
        ("ê" * 71, "UCS-2", 71, 2),
        ("a" * 133 + "ó", "UCS-2", 134, 2),
        ("a" * 134 + "ó", "UCS-2", 135, 3),
        ("🙂" * 35, "UCS-2", 70, 1),  # a character outside the BMP is a surrogate pair
        ("a" * 66 + "🙂" + "a" * 66, "UCS-2", 134, 3),  # nor is a pair
    ],
)
def test_sms_segments_follow_gsm7_and_ucs2_limits(
    text: str, encoding: str, units: int, segments: int
) -> None:
    size = sms_size(text)
    assert (size.encoding, size.units, size.segments) == (encoding, units, segments)


def _unaccented(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_names_the_leaked_fields_and_how_to_check_it_is_us(language: str) -> None:
    sms = render_sms(_ctx(language=language, verify_url=VERIFY))
    labels = [catalogs()[language].fields[f] for f in ("first_name", "email", "phone")]
    assert sms.language == language and sms.fits and sms.fallback_reason is None
    # Spanish letters outside GSM-7 lose their accents (see below); the words stay.
    assert _unaccented(", ".join(labels)) in _unaccented(sms.text) and sms.fields_named == 3
    assert VERIFY in sms.text and "7KQM-4X2P-DQ3A" in sms.text
    assert sms.text.startswith("Esempio S.p.A.")
    assert "Giulia" not in sms.text and "Bianchi" not in sms.text
    assert sms.size.encoding == "GSM-7" and sms.size.segments <= 3
    assert sms.size == sms_size(sms.text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_of_every_field_stays_within_three_segments(language: str) -> None:
    sms = render_sms(_ctx(language=language, exposed_fields=list(FIELD_NAMES), verify_url=VERIFY))
    assert sms.fits and sms.size.segments <= 3
    more = catalogs()[language].texts["sms_more"]
    assert sms.fields_named == len(FIELD_NAMES) or more.split("{count}")[-1].strip() in sms.text


def test_sms_without_a_verification_page_says_to_write_to_the_company() -> None:
    sms = render_sms(_ctx(language="en", verify_url=None))
    assert "write to privacy@esempio.it yourself and quote ref 7KQM-4X2P-DQ3A" in sms.text


def test_spanish_accents_outside_gsm7_are_dropped_rather_than_fields() -> None:
    sms = render_sms(_ctx(language="es", exposed_fields=["email"], verify_url=VERIFY))
    assert "direccion de correo electronico" in sms.text
    assert sms.size.encoding == "GSM-7" and sms.fields_named == 1


def test_massachusetts_sms_does_not_describe_the_breach() -> None:
    forbidden = {"nature_of_breach", "number_affected"}
    sms = render_sms(_ctx(language="en", verify_url=VERIFY), forbidden=forbidden)
    assert "security incident" in sms.text and "breach" not in sms.text


def test_sms_too_long_even_in_short_form_says_it_does_not_fit() -> None:
    sms = render_sms(_ctx(language="en", company_name="X" * 500, verify_url=VERIFY))
    assert not sms.fits and sms.size.segments > 3 and sms.fields_named == 1


def test_sms_of_an_unsupported_language_is_english_and_says_why() -> None:
    sms = render_sms(_ctx(language="pt", verify_url=VERIFY))
    assert sms.language == "en" and sms.fallback_reason == "no notice texts in 'pt'"


def test_hostile_company_name_stays_on_one_line_in_the_sms() -> None:
    sms = render_sms(_ctx(language="en", company_name="Evil\r\nCo {url}", verify_url=VERIFY))
    assert "\n" not in sms.text and "\r" not in sms.text and sms.text.startswith("Evil Co {url}:")
