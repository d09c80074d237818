from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import phonenumbers
import pytest

from canarino.customers import import_customers
from canarino.testing import (
    BASES,
    MOBILE_PREFIXES,
    PROVIDERS,
    US_AREA_CODES,
    iter_customer_base,
    make_customer_base,
    make_customers,
    write_customers_csv,
)
from canarino.workspace import Workspace

FIELDS = [
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "address",
    "city",
    "postcode",
    "region",
    "country",
    "language",
    "birth_date",
]


@pytest.fixture(scope="module")
def italians() -> list[dict[str, str]]:
    return make_customer_base("it", 1_500, seed=3)


@pytest.fixture(scope="module")
def americans() -> list[dict[str, str]]:
    return make_customer_base("us", 600, seed=3)


def _domain(person: dict[str, str]) -> str:
    return person["email"].rsplit("@", 1)[1]


def test_make_customers_keeps_its_fields_and_is_reproducible_in_a_process() -> None:
    first, again = make_customers(20, seed=4), make_customers(20, seed=4)
    assert [list(p) for p in first] == [FIELDS] * 20
    assert [(p["email"], p["phone"]) for p in first] == [(p["email"], p["phone"]) for p in again]


def test_customer_bases_have_the_same_fields_as_make_customers() -> None:
    for kind in BASES:
        people = make_customer_base(kind, 30, seed=1)
        assert [list(p) for p in people] == [FIELDS] * 30
        assert len({p["customer_id"] for p in people}) == 30


def test_unknown_customer_base_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown customer base 'mars'"):
        next(iter_customer_base("mars", 1))


def test_email_providers_follow_the_country_mix(italians: list[dict[str, str]]) -> None:
    base = BASES["it"]
    weights = PROVIDERS["IT"]
    share = 1 - base.corporate - base.personal
    counts = Counter(_domain(p) for p in italians)
    for provider in ("gmail.com", "libero.it", "hotmail.it"):
        expected = weights[provider] / sum(weights.values()) * share
        assert counts[provider] / len(italians) == pytest.approx(expected, abs=0.03)
    on_providers = sum(counts[d] for d in weights) / len(italians)
    assert on_providers == pytest.approx(share, abs=0.03)
    # The rest is a long tail: many domains, most of them seen once or twice.
    tail = [c for d, c in counts.items() if d not in weights]
    assert len(tail) > 100 and statistics.median(tail) <= 2


def test_local_parts_are_built_from_the_name_mostly(italians: list[dict[str, str]]) -> None:
    from canarino.canaries import ascii_fold

    with_name = sum(
        ascii_fold(p["last_name"]) in p["email"].split("@")[0]
        or ascii_fold(p["first_name"]) in p["email"].split("@")[0]
        for p in italians
    )
    assert 0.75 < with_name / len(italians) < 0.98


def test_names_have_skewed_frequencies_and_follow_birth_years(
    italians: list[dict[str, str]],
) -> None:
    last = Counter(p["last_name"].title() for p in italians)
    top10 = sum(c for _, c in last.most_common(10)) / len(italians)
    assert top10 > 0.08  # uniform over ~1,000 surnames would give about 1 %
    years: dict[str, list[int]] = defaultdict(list)
    for p in italians:
        if p["birth_date"]:
            years[p["first_name"].title()].append(int(p["birth_date"][:4]))
    means = [statistics.mean(v) for v in years.values() if len(v) >= 15]
    assert max(means) - min(means) > 10  # names have eras


def test_ages_are_adult_and_uneven(italians: list[dict[str, str]]) -> None:
    today = date.today()
    ages = [today.year - int(p["birth_date"][:4]) for p in italians if p["birth_date"]]
    assert min(ages) >= 17 and max(ages) <= 96
    assert 35 <= statistics.median(ages) <= 50
    missing = sum(not p["birth_date"] for p in italians) / len(italians)
    assert missing == pytest.approx(0.12, abs=0.03)


def test_phones_are_valid_mobiles_with_operator_prefixes(italians: list[dict[str, str]]) -> None:
    phones = [p["phone"] for p in italians if p["phone"]]
    assert len(phones) / len(italians) == pytest.approx(0.93, abs=0.03)
    for phone in phones[:300]:
        number = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(number)
        assert phone[3:6] in MOBILE_PREFIXES["IT"]
    operators = Counter(p[3:6] for p in phones)
    assert len(operators) > 25


def test_places_are_consistent(italians: list[dict[str, str]]) -> None:
    regions: dict[str, set[str]] = defaultdict(set)
    for p in italians:
        regions[p["city"]].add(p["region"])
    assert all(len(r) == 1 for r in regions.values())
    cities = Counter(p["city"] for p in italians)
    assert cities.most_common(1)[0][1] > 10 * statistics.median(cities.values())


def test_us_phones_mostly_use_their_state_area_codes(americans: list[dict[str, str]]) -> None:
    mapped = [p for p in americans if p["phone"] and p["region"] in US_AREA_CODES]
    local = sum(p["phone"][2:5] in US_AREA_CODES[p["region"]] for p in mapped)
    assert local / len(mapped) > 0.75
    assert Counter(_domain(p) for p in americans).most_common(1)[0][0] == "gmail.com"


def test_mixed_eu_base_covers_its_countries_and_languages() -> None:
    people = make_customer_base("eu", 500, seed=5)
    countries = Counter(p["country"] for p in people)
    assert set(countries) == set(BASES["eu"].countries)
    assert countries["IT"] > countries["DE"] > countries["PT"]
    assert {p["language"] for p in people if p["country"] == "DE"} == {"de"}


def test_customer_base_imports_without_refusals(ws: Workspace, tmp_path: Path) -> None:
    people = make_customer_base("eu", 300, seed=9)
    report = import_customers(ws, write_customers_csv(tmp_path / "base.csv", people))
    assert report.problems == [] and report.imported == 300
