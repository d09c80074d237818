from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canarino.normalize import (
    IdentifierError,
    PhoneCandidates,
    Pseudonymizer,
    default_language,
    fast_email,
    fast_emails,
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


MESSY_EMAILS = [
    "Mario.Rossi@Example.IT",
    "  anna@posta.it\t",
    "<x@y.com>",
    '"quoted"@posta.it',
    "'a@b.it'",
    "mailto:Q@W.com",
    "MAILTO:q@w.com",
    "İlker@örnek.com.tr",
    "ÀB@c.it",
    "x\x1c@y.it",
    "x@y.it\x1f",
    "a b@c.it",
    "ab@@c.it",
    "@c.it",
    "a@.it",
    "a@b.",
    "a@b",
    "no-at-sign",
    "",
    "=cmd|' /C calc'!A0",
    "\x00@\x00.\x00",
    "a@b.c\nd@e.f",
    "ﬃ@x.it",
]


def _one_by_one_emails(values: list[str | None]) -> dict[int, str]:
    return {i: e for i, v in enumerate(values) if v and (e := fast_email(v))}


def test_column_email_normaliser_equals_the_one_by_one_path_on_messy_values() -> None:
    values: list[str | None] = [*MESSY_EMAILS, None]
    positions, forms = fast_emails(pa.array(values))
    assert dict(zip(positions.tolist(), forms.to_pylist(), strict=True)) == _one_by_one_emails(
        values
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30), st.emails()), max_size=40))
def test_column_email_normaliser_equals_the_one_by_one_path_on_any_text(
    values: list[str | None],
) -> None:
    positions, forms = fast_emails(pa.array(values, pa.string()))
    assert dict(zip(positions.tolist(), forms.to_pylist(), strict=True)) == _one_by_one_emails(
        values
    )


MESSY_PHONES = [
    "+39 347 123 4567",
    "0039 3471234567",
    "347 123 4567",
    "01 23 45 67 89",
    "(415) 555-0100",
    "39 347 1234567",
    " \x1c+33 1 23 45 67 89",
    "\x0b+39 347 1234567",
    "0151 12345678",
    "+0039347555123",
    "٣٤٧١٢٣٤٥٦٧",
    "+٣٩347123456",
    "2026-03-02",
    "12",
    "1" * 40,
    "tel: +39-347-123-4567 ext",
    "",
]


def _one_by_one_phones(
    candidates: PhoneCandidates, values: list[str | None]
) -> list[tuple[int, str]]:
    return sorted((i, f) for i, v in enumerate(values) if v for f in candidates(v))


@pytest.mark.parametrize("regions", [["IT"], ["IT", "FR", "DE", "ES", "US"], []])
def test_column_phone_candidates_equal_the_one_by_one_path(regions: list[str]) -> None:
    candidates = PhoneCandidates(regions)
    values: list[str | None] = [*MESSY_PHONES, None]
    positions, forms = candidates.many(pa.array(values))
    assert sorted(zip(positions.tolist(), forms.to_pylist(), strict=True)) == (
        _one_by_one_phones(candidates, values)
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=24),
            st.from_regex(r"\A[ +(]{0,2}[0-9][0-9 ().\-/]{5,20}\Z"),
        ),
        max_size=40,
    )
)
def test_column_phone_candidates_equal_the_one_by_one_path_on_any_text(
    values: list[str | None],
) -> None:
    candidates = PhoneCandidates(["IT", "FR", "US"])
    positions, forms = candidates.many(pa.array(values, pa.string()))
    assert sorted(zip(positions.tolist(), forms.to_pylist(), strict=True)) == (
        _one_by_one_phones(candidates, values)
    )


def test_column_pseudonyms_equal_single_ones_and_hash_repeats_once() -> None:
    p = Pseudonymizer(b"k" * 32)
    values = ["a@b.it", "c@d.it", "a@b.it", "", "città"]
    raw = p.digest_array("email", pa.array(values))
    assert raw.shape == (5, 32)
    assert [bytes(r) for r in raw] == [p.digest("email", v) for v in values]
    assert p.digest_array("email", pa.array([], pa.string())).shape == (0, 32)
