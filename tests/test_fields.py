from __future__ import annotations

import pytest

from canarino.fields import FIELDS, category_of, field_for_header, label, parse_field_list


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("E-mail", "email"),
        ("Indirizzo Email", "email"),
        ("Cellulare", "phone"),
        ("Telefono", "phone"),
        ("NOME", "first_name"),
        ("Cognome", "last_name"),
        ("Città", "city"),
        ("CAP", "postcode"),
        ("Provincia", "region"),
        ("Paese", "country"),
        ("Lingua", "language"),
        ("Codice Fiscale", "tax_code"),
        ("Data di nascita", "birth_date"),
        ("Given Name", "first_name"),
        ("shoe size", None),
        ("", None),
    ],
)
def test_headers_in_italian_and_english(header: str, field: str | None) -> None:
    assert field_for_header(header) == field


def test_every_field_has_labels_and_a_category() -> None:
    for f in FIELDS:
        assert label(f.name, "it") and label(f.name, "en") and category_of(f.name)


def test_parse_field_list_accepts_names_and_headers_and_drops_duplicates() -> None:
    assert parse_field_list("email, Cellulare,email,,nome") == ["email", "phone", "first_name"]
    with pytest.raises(ValueError, match="unknown field"):
        parse_field_list("email,nope")
