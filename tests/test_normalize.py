from __future__ import annotations

import pytest

from canarino.normalize import (
    IdentifierError,
    PhoneCandidates,
    Pseudonymizer,
    default_language,
    fast_email,
    normalize_country,
    normalize_email,
    normalize_language,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mario.Rossi@Example.IT", "mario.rossi@example.it"),
        ("  anna@posta.it\t", "anna@posta.it"),
        ("JOHN+tag@Mail.COM", "john+tag@mail.com"),
    ],
)
def test_normalize_email_trims_and_lowercases(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a@b", "two@@signs.it", "spaces in@x.it"])
def test_normalize_email_refuses_malformed_without_quoting_it(raw: str) -> None:
    with pytest.raises(IdentifierError) as info:
        normalize_email(raw)
    if raw.strip():
        assert raw not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("347 123 4567", "IT", "+393471234567"),
        ("+39 347-123-4567", None, "+393471234567"),
        ("0039 347 1234567", "FR", "+393471234567"),
        ("06 6789 1234", "IT", "+390667891234"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("(415) 555-0100", "US", "+14155550100"),
    ],
)
def test_normalize_phone_gives_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["hello", "12", "+39 1", "≈≈≈"])
def test_normalize_phone_refuses_non_numbers(raw: str) -> None:
    with pytest.raises(IdentifierError):
        normalize_phone(raw, "IT")


def test_phone_candidates_cover_national_international_and_bare_country_code() -> None:
    candidates = PhoneCandidates(["IT", "FR"])
    assert candidates("+39 347 123 4567") == ["+393471234567"]
    assert candidates("0039 3471234567") == ["+393471234567"]
    assert "+393471234567" in candidates("347 123 4567")
    assert "+393471234567" in candidates("39 347 123 4567")
    # The French trunk prefix is dropped, the Italian leading zero is kept.
    assert "+33123456789" in candidates("01 23 45 67 89")
    assert "+390612345678" in candidates("06 1234 5678")
    assert candidates("12") == []
    assert candidates("not a phone") == []


def test_fast_email_agrees_with_strict_normaliser_on_plain_addresses() -> None:
    for raw in ["Mario.Rossi@Example.IT", " <anna@posta.it> ", "mailto:x@y.com"]:
        assert fast_email(raw) == normalize_email(raw.strip().strip("<>").removeprefix("mailto:"))
    assert fast_email("not an email") is None


def test_pseudonyms_depend_on_key_kind_and_value() -> None:
    a, b = Pseudonymizer(b"a" * 32), Pseudonymizer(b"b" * 32)
    assert a.digest("email", "x@y.it") == a.digest("email", "x@y.it")
    assert a.digest("email", "x@y.it") != b.digest("email", "x@y.it")
    assert a.digest("email", "123") != a.digest("phone", "123")
    assert len(a.digest("phone", "+391")) == 32
    assert a.digests("email", ["x@y.it"]) == [a.digest("email", "x@y.it")]
    assert "a" * 32 not in repr(a)


def test_pseudonymizer_refuses_short_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymizer(b"short")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("IT", "IT"),
        ("Italia", "IT"),
        ("italy", "IT"),
        ("Deutschland", "DE"),
        ("Stati Uniti", "US"),
        ("USA", "US"),
        ("España", "ES"),
        ("Atlantis", None),
        ("", None),
    ],
)
def test_normalize_country_reads_codes_and_names_in_five_languages(
    raw: str, code: str | None
) -> None:
    assert normalize_country(raw) == code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("it", "it"),
        ("it_IT", "it"),
        ("Italiano", "it"),
        ("English", "en"),
        ("de-DE", "de"),
        ("zz", None),
    ],
)
def test_normalize_language(raw: str, code: str | None) -> None:
    assert normalize_language(raw) == code


def test_default_language_follows_country_and_falls_back_to_english() -> None:
    assert default_language("IT") == "it"
    assert default_language("DE") == "de"
    assert default_language("US") == "en"
    assert default_language(None) == "en"


def test_batch_pseudonyms_equal_single_ones_for_any_key_length() -> None:
    import hashlib
    import hmac

    for key in (b"k" * 32, b"long" * 30):
        p = Pseudonymizer(key)
        values = ["a@b.it", "+39347", "", "città"]
        expected = [hmac.digest(key, f"email\x1f{v}".encode(), hashlib.sha256) for v in values]
        assert p.digests("email", values) == expected == [p.digest("email", v) for v in values]


def test_phone_candidates_skip_impossible_lengths() -> None:
    candidates = PhoneCandidates(["IT", "US"])
    # Ten digits: a US number or an Italian mobile, both possible.
    assert set(candidates("347 123 4567")) == {"+393471234567", "+13471234567"}
    # Twelve national digits are too long for the US plan.
    assert "+1347123456789" not in candidates("347 123 456789")
