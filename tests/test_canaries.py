from __future__ import annotations

import random

import phonenumbers
import pytest

from canarino.canaries import CanaryFactory, locale_for, mimic


def test_canary_uses_monitored_domains_and_ranges_and_template_shape() -> None:
    factory = CanaryFactory(["watch.it"], ["+39347555"], random.Random(1))
    template = {
        "customer_id": "C0012345",
        "country": "IT",
        "region": "MI",
        "birth_date": "21/03/1980",
    }
    canary = factory.make(template, "IT", "it")
    assert canary.fields["email"].endswith("@watch.it")
    number = phonenumbers.parse(canary.fields["phone"])
    assert canary.fields["phone"].startswith("+39347555") and phonenumbers.is_valid_number(number)
    assert canary.fields["customer_id"].startswith("C") and len(canary.fields["customer_id"]) == 8
    assert canary.fields["region"] == "MI" and canary.fields["country"] == "IT"
    day, month, year = canary.fields["birth_date"].split("/")
    assert 1 <= int(day) <= 31 and 1 <= int(month) <= 12 and len(year) == 4
    assert canary.locale == "it_IT"


def test_canaries_differ_from_each_other() -> None:
    factory = CanaryFactory(["watch.it"], ["+39347555"], random.Random(2))
    emails = {factory.make({}, "IT", "it").fields["email"] for _ in range(50)}
    assert len(emails) >= 48


def test_phone_range_of_the_same_country_is_preferred() -> None:
    factory = CanaryFactory(["watch.it"], ["+39347555", "+1415555"], random.Random(3))
    assert factory.make({}, "US", "en").fields["phone"].startswith("+1415555")


def test_locale_for_falls_back_sensibly() -> None:
    assert locale_for("IT", "it") == "it_IT"
    assert locale_for("DE", None).endswith("_DE")
    assert locale_for(None, None) == "en_US"


def test_mimic_keeps_letters_and_punctuation() -> None:
    out = mimic("TCK-2024/000123", random.Random(0))
    assert out[:4] == "TCK-" and out[8] == "/" and len(out) == 15 and out[4:8].isdigit()


def test_factory_needs_a_domain() -> None:
    with pytest.raises(ValueError):
        CanaryFactory([], [], random.Random(0))
