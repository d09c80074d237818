"""The customer fields canarino knows, their data categories, and header recognition.

A field is a canonical name (``email``, ``phone``, ``first_name``…). Files name their
columns in many ways, in Italian and English; :func:`field_for_header` maps a header to
a field so that imports, exports and traces speak one vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One canonical customer field."""

    name: str
    category: str
    label_en: str
    label_it: str
    headers: tuple[str, ...]


# Categories are those of the obligations taxonomy (rules_schema.Category), so exposed
# fields feed the law engine directly. Order here is the order notices list fields in.
FIELDS: tuple[Field, ...] = (
    Field(
        "first_name",
        "identity",
        "first name",
        "nome",
        ("first name", "firstname", "given name", "name", "nome", "forename"),
    ),
    Field(
        "last_name",
        "identity",
        "last name",
        "cognome",
        ("last name", "lastname", "surname", "family name", "cognome"),
    ),
    Field(
        "full_name",
        "identity",
        "full name",
        "nome e cognome",
        (
            "full name",
            "fullname",
            "customer name",
            "nominativo",
            "nome e cognome",
            "nome completo",
            "cliente",
            "intestatario",
        ),
    ),
    Field(
        "email",
        "contact",
        "email address",
        "indirizzo e-mail",
        (
            "email",
            "e mail",
            "mail",
            "email address",
            "indirizzo email",
            "posta elettronica",
            "indirizzo di posta elettronica",
            "pec",
        ),
    ),
    Field(
        "phone",
        "contact",
        "phone number",
        "numero di telefono",
        (
            "phone",
            "telephone",
            "phone number",
            "mobile",
            "cell",
            "cellphone",
            "mobile phone",
            "telefono",
            "cellulare",
            "numero di telefono",
            "tel",
            "cell phone",
            "recapito telefonico",
        ),
    ),
    Field(
        "address",
        "contact",
        "postal address",
        "indirizzo postale",
        (
            "address",
            "street",
            "street address",
            "address line 1",
            "indirizzo",
            "via",
            "indirizzo di residenza",
            "residenza",
        ),
    ),
    Field(
        "city",
        "contact",
        "city",
        "città",
        ("city", "town", "citta", "comune", "località", "localita"),
    ),
    Field(
        "postcode",
        "contact",
        "postcode",
        "CAP",
        ("postcode", "post code", "postal code", "zip", "zip code", "cap"),
    ),
    Field(
        "region",
        "location",
        "region or state",
        "provincia o regione",
        ("region", "state", "province", "county", "provincia", "regione", "prov"),
    ),
    Field(
        "country",
        "location",
        "country",
        "paese",
        ("country", "country code", "nation", "paese", "nazione", "stato"),
    ),
    Field("language", "preference", "language", "lingua", ("language", "lang", "locale", "lingua")),
    Field(
        "birth_date",
        "identity",
        "date of birth",
        "data di nascita",
        ("birth date", "birthdate", "date of birth", "dob", "data di nascita", "data nascita"),
    ),
    Field(
        "tax_code",
        "government_id",
        "tax code",
        "codice fiscale",
        ("tax code", "tax id", "codice fiscale", "cf", "national id", "ssn", "fiscal code"),
    ),
    Field(
        "customer_id",
        "account",
        "customer number",
        "codice cliente",
        (
            "customer id",
            "customer number",
            "client id",
            "id cliente",
            "codice cliente",
            "numero cliente",
            "account",
            "account number",
        ),
    ),
    Field(
        "ticket_id",
        "account",
        "support ticket number",
        "numero di ticket",
        (
            "ticket",
            "ticket id",
            "ticket number",
            "case",
            "case number",
            "numero ticket",
            "pratica",
            "numero pratica",
        ),
    ),
    Field(
        "password",
        "credentials",
        "password or other credential",
        "password o altra credenziale",
        (
            "password",
            "passwd",
            "pwd",
            "secret",
            "password hash",
            "hash",
            "credential",
            "token",
            "pin",
        ),
    ),
    Field(
        "iban",
        "financial_account",
        "bank account (IBAN)",
        "conto bancario (IBAN)",
        ("iban", "bank account", "conto", "conto corrente"),
    ),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# Stored traces keep exposed fields as bits in this order: add new fields at the end.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


_HEADER_INDEX: dict[str, str] = {}
for _field in FIELDS:
    for _header in (_field.name, *_field.headers):
        _HEADER_INDEX.setdefault(_fold(_header), _field.name)


def field_for_header(header: str) -> str | None:
    """Return the canonical field a column header names, or ``None`` if unknown.

    >>> field_for_header("E-mail"), field_for_header("Cellulare"), field_for_header("x")
    ('email', 'phone', None)
    """
    return _HEADER_INDEX.get(_fold(header))


def category_of(field: str) -> str:
    """Return the data category of a canonical field."""
    return BY_NAME[field].category


def label(field: str, language: str) -> str:
    """Return the human label of a field in ``language`` (Italian or English)."""
    f = BY_NAME[field]
    return f.label_it if language == "it" else f.label_en


def parse_field_list(text: str) -> list[str]:
    """Parse ``F1,F2`` into canonical field names; unknown names are an error."""
    names: list[str] = []
    for raw in text.split(","):
        raw = raw.strip()
        if not raw:
            continue
        name = raw if raw in BY_NAME else field_for_header(raw)
        if name is None:
            known = ", ".join(FIELD_NAMES)
            raise ValueError(f"unknown field {raw!r}; known fields: {known}")
        if name not in names:
            names.append(name)
    return names
