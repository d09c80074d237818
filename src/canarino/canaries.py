"""Synthetic customers ("canaries") shaped like the real rows they hide among.

Pure generation: no storage. Randomness comes from the caller's ``random.Random``; the
service modules pass ``secrets.SystemRandom()`` so canary choices cannot be predicted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from random import Random  # noqa: TID251 - only the type; callers pass SystemRandom

import phonenumbers
from faker import Faker
from faker.config import AVAILABLE_LOCALES

_DATE_FORMATS = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
    (re.compile(r"^\d{2}/\d{2}/\d{4}$"), "%d/%m/%Y"),
    (re.compile(r"^\d{2}\.\d{2}\.\d{4}$"), "%d.%m.%Y"),
    (re.compile(r"^\d{2}-\d{2}-\d{4}$"), "%d-%m-%Y"),
)


@dataclass(frozen=True)
class CanaryIdentity:
    """A synthetic customer: every field it may be exported with."""

    locale: str
    country: str | None
    fields: dict[str, str]


@cache
def _faker(locale: str) -> Faker:
    return Faker(locale)


def locale_for(country: str | None, language: str | None) -> str:
    """The Faker locale closest to a person's country and language."""
    if country:
        for candidate in (f"{language}_{country}", f"{(language or '').lower()}_{country}"):
            if candidate in AVAILABLE_LOCALES:
                return candidate
        for loc in AVAILABLE_LOCALES:
            if loc.endswith("_" + country):
                return loc
    return "en_US"


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return re.sub(
        r"[^a-z0-9]", "", "".join(c for c in text if not unicodedata.combining(c)).lower()
    )


def mimic(value: str, rng: Random) -> str:
    """A value of the same shape: digits replaced, letters and punctuation kept."""
    return "".join(str(rng.randrange(10)) if c.isdigit() else c for c in value)


class CanaryFactory:
    """Makes canaries on the workspace's monitored mail domains and phone ranges."""

    def __init__(self, mail_domains: list[str], phone_ranges: list[str], rng: Random) -> None:
        if not mail_domains:
            raise ValueError("canaries need at least one monitored mail domain")
        self.mail_domains = mail_domains
        self.phone_ranges = phone_ranges
        self.rng = rng

    def make(
        self, template: dict[str, str], country: str | None, language: str | None
    ) -> CanaryIdentity:
        """A canary shaped like ``template`` (a real row), from the same country."""
        locale = locale_for(country, language)
        fake = _faker(locale)
        fake.seed_instance(self.rng.getrandbits(64))
        first, last = fake.first_name(), fake.last_name()
        fields: dict[str, str] = {
            "first_name": first,
            "last_name": last,
            "full_name": f"{first} {last}",
            "email": self._email(first, last),
            "address": fake.street_address(),
            "city": fake.city(),
            "postcode": fake.postcode(),
        }
        phone = self._phone(country)
        if phone:
            fields["phone"] = phone
        for name in ("country", "region", "language"):
            if template.get(name):
                fields[name] = template[name]
        for name, value in template.items():
            if name in fields or not value:
                continue
            if name == "birth_date":
                fields[name] = self._birth_date(value)
            else:
                fields[name] = mimic(value, self.rng)
        return CanaryIdentity(locale, country, fields)

    def _email(self, first: str, last: str) -> str:
        f, ln = _ascii(first) or "m", _ascii(last) or "rossi"
        pattern = self.rng.choice(
            (f"{f}.{ln}", f"{f}{ln}", f"{f[0]}.{ln}", f"{f}_{ln}", f"{ln}.{f}", f"{f}.{ln}")
        )
        if self.rng.random() < 0.35:
            pattern += str(self.rng.randrange(1, 99))
        return f"{pattern}@{self.rng.choice(self.mail_domains)}"

    def _phone(self, country: str | None) -> str | None:
        if not self.phone_ranges:
            return None
        local = [
            p for p in self.phone_ranges if _region_of_prefix(p) == country
        ] or self.phone_ranges
        prefix = self.rng.choice(local)
        region = _region_of_prefix(prefix)
        code = str(phonenumbers.country_code_for_region(region)) if region else ""
        length = _national_length(region) if region else 10
        national_prefix = prefix[1 + len(code) :]
        for _ in range(50):
            tail = "".join(
                str(self.rng.randrange(10)) for _ in range(length - len(national_prefix))
            )
            candidate = f"+{code}{national_prefix}{tail}"
            if region is None or phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
                return candidate
        return candidate

    def _birth_date(self, template: str) -> str:
        age_days = self.rng.randrange(18 * 365, 90 * 365)
        born = date.today() - timedelta(days=age_days)
        for pattern, fmt in _DATE_FORMATS:
            if pattern.match(template.strip()):
                return born.strftime(fmt)
        return mimic(template, self.rng)


@cache
def _region_of_prefix(prefix: str) -> str | None:
    digits = prefix.lstrip("+")
    for length in (1, 2, 3):
        region = phonenumbers.region_code_for_country_code(int(digits[:length]))
        if region != "ZZ":
            return region
    return None


@cache
def _national_length(region: str) -> int:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return 10
    return len(phonenumbers.national_significant_number(example))
