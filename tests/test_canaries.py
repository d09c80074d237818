from __future__ import annotations

import random
import statistics
from collections import Counter

import phonenumbers
import pytest
from email_validator import validate_email
from faker import Faker

from canarino.canaries import (
    CONSUMER_PROVIDERS,
    CanaryFactory,
    Mailbox,
    Place,
    Profile,
    ascii_fold,
    email_pattern,
    locale_for,
    mimic,
    propose_mailboxes,
    render_local,
)
from canarino.testing import make_customer_base


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


# --- distribution matching ---------------------------------------------------------------

LOOKALIKE = [f"posta-{i}.example.it" for i in range(40)]
RANGES = [f"+39{op}{i:03d}" for op in ("333", "347", "340", "328", "351") for i in range(8)]


@pytest.fixture(scope="module")
def base() -> list[dict[str, str]]:
    people = make_customer_base("it", 1_500, seed=21)
    # As stored after import: empty fields are absent.
    return [{k: v for k, v in p.items() if v} for p in people]


@pytest.fixture(scope="module")
def canaries(base: list[dict[str, str]]) -> list[dict[str, str]]:
    rng = random.Random(8)
    factory = CanaryFactory(LOOKALIKE, RANGES, rng, Profile.from_rows(base))
    made = []
    for _ in range(600):
        template = rng.choice(base)
        made.append(factory.make(template, template.get("country"), template.get("language")))
    return [c.fields for c in made]


@pytest.mark.parametrize(
    ("local", "first", "last", "year", "pattern"),
    [
        ("mario.rossi80", "Mario", "Rossi", 1980, ("f", ".", "l", "yy")),
        ("mrossi", "Mario", "Rossi", None, ("i", "l")),
        ("rossi_mario1980", "Mario", "Rossi", 1980, ("l", "_", "f", "yyyy")),
        ("niccolo.dangelo7", "Niccolò", "D'Angelo", 1990, ("f", ".", "l", "n1")),
        ("lupo77", "Mario", "Rossi", 1980, ("w", "n2")),
        ("m.rossi", "Mario", "Rossi", None, ("i", ".", "l")),
        ("", "Mario", "Rossi", None, ()),
        ("mario", "", "", None, ("w",)),
        ("Ω+x", "Mario", "Rossi", None, ("w", "+", "w")),
    ],
)
def test_email_pattern_reads_how_a_local_part_is_built(
    local: str, first: str, last: str, year: int | None, pattern: tuple[str, ...]
) -> None:
    assert email_pattern(local, first, last, year) == pattern


def test_email_pattern_survives_long_hostile_input() -> None:
    local = "a" * 5_000 + "." * 100
    assert email_pattern(local, "a", "aa", 1999)[:1] in (("f",), ("l",))


@pytest.mark.parametrize(
    "pattern",
    [("f", ".", "l", "yy"), (".", "f"), ("f", "."), ("f", ".", ".", "l"), (), ("n99",), ("w",)],
)
def test_rendered_local_parts_are_valid_addresses(pattern: tuple[str, ...]) -> None:
    local = render_local(pattern, "Anna Maria", "Dell'Acqua", 1975, "sole", random.Random(1))
    assert validate_email(f"{local}@example.it", check_deliverability=False)


def test_canaries_use_only_monitored_domains_and_ranges(canaries: list[dict[str, str]]) -> None:
    assert all(c["email"].rsplit("@", 1)[1] in LOOKALIKE for c in canaries if "email" in c)
    assert all(c["phone"][:9] in RANGES for c in canaries if "phone" in c)
    assert all(
        phonenumbers.is_valid_number(phonenumbers.parse(c["phone"]))
        for c in canaries
        if "phone" in c
    )


def test_canaries_are_spread_evenly_over_domains_and_ranges(
    canaries: list[dict[str, str]],
) -> None:
    domains = Counter(c["email"].rsplit("@", 1)[1] for c in canaries if "email" in c)
    assert set(domains) == set(LOOKALIKE)
    assert max(domains.values()) - min(domains.values()) <= 1
    ranges = Counter(c["phone"][:9] for c in canaries if "phone" in c)
    assert len(ranges) == len(RANGES)


def test_canary_phone_operators_follow_the_customers(base: list[dict[str, str]]) -> None:
    ops = {r[3:6] for r in RANGES}
    real = Counter(p["phone"][3:6] for p in base if p.get("phone", "")[3:6] in ops)
    # Shares have fewer canaries than ranges: one factory per share of 20.
    fake: Counter[str] = Counter()
    for seed in range(30):
        factory = CanaryFactory(LOOKALIKE, RANGES, random.Random(seed), Profile.from_rows(base))
        made = _make(factory, base, 20, 100 + seed)
        fake.update(c["phone"][3:6] for c in made if "phone" in c)
    assert set(fake) <= ops
    for op in ops:
        assert fake[op] / fake.total() == pytest.approx(real[op] / real.total(), abs=0.06)


def test_us_canaries_get_area_codes_of_their_state() -> None:
    people = [{k: v for k, v in p.items() if v} for p in make_customer_base("us", 1_500, seed=4)]
    ranges = sorted({p["phone"][:5] + "555" for p in people if "phone" in p})
    codes: dict[str, set[str]] = {}
    for p in people:
        if "phone" in p:
            codes.setdefault(p["region"], set()).add(p["phone"][2:5])
    made = []
    for seed in range(15):  # one factory per share of 20 canaries
        factory = CanaryFactory(LOOKALIKE, ranges, random.Random(seed), Profile.from_rows(people))
        made += _make(factory, people, 20, 200 + seed)
    local = [c["phone"][2:5] in codes.get(c["region"], set()) for c in made if "phone" in c]
    assert sum(local) / len(local) >= 0.7  # a random area code: about one in ten


def test_canaries_keep_contact_points_unique(canaries: list[dict[str, str]]) -> None:
    emails = [c["email"] for c in canaries if "email" in c]
    phones = [c["phone"] for c in canaries if "phone" in c]
    # Rare repeats are redrawn when shares store canaries; here they must stay rare.
    assert len(set(emails)) >= 0.99 * len(emails) and len(set(phones)) >= 0.99 * len(phones)


def test_canary_names_follow_the_real_frequencies(
    base: list[dict[str, str]], canaries: list[dict[str, str]]
) -> None:
    real_last = Counter(p["last_name"] for p in base)
    fake_last = Counter(c["last_name"] for c in canaries)
    top = [name for name, _ in real_last.most_common(10)]
    real_share = sum(real_last[n] for n in top) / len(base)
    fake_share = sum(fake_last[n] for n in top) / len(canaries)
    assert fake_share == pytest.approx(real_share, abs=0.05)
    seen = sum(c["first_name"].title() in {p["first_name"].title() for p in base} for c in canaries)
    assert seen / len(canaries) > 0.8


def test_canary_birth_years_follow_the_real_ones(
    base: list[dict[str, str]], canaries: list[dict[str, str]]
) -> None:
    real = [int(p["birth_date"][:4]) for p in base if "birth_date" in p]
    fake = [int(c["birth_date"][:4]) for c in canaries if "birth_date" in c]
    assert statistics.mean(fake) == pytest.approx(statistics.mean(real), abs=2.5)
    assert statistics.stdev(fake) == pytest.approx(statistics.stdev(real), abs=2.5)
    assert len(fake) / len(canaries) == pytest.approx(len(real) / len(base), abs=0.05)


def test_canary_local_parts_follow_the_real_recipes(
    base: list[dict[str, str]], canaries: list[dict[str, str]]
) -> None:
    def recipes(rows: list[dict[str, str]]) -> Counter[str]:
        return Counter(
            "".join(email_pattern(r["email"].split("@")[0], r["first_name"], r["last_name"], None))
            for r in rows
            if "email" in r
        )

    real, fake = recipes(base), recipes(canaries)
    for recipe in ("f.l", "fl", "i.l"):
        assert fake[recipe] / fake.total() == pytest.approx(real[recipe] / real.total(), abs=0.05)


def test_canary_places_numbers_and_casing_come_from_the_real_rows(
    base: list[dict[str, str]], canaries: list[dict[str, str]]
) -> None:
    places = {(p["city"], p["postcode"], p["region"]) for p in base}
    codes: dict[tuple[str, str], set[str]] = {}
    for p in base:
        codes.setdefault((p["city"], p["region"]), set()).add(p["postcode"])
    new = [c for c in canaries if (c["city"], c["postcode"], c["region"]) not in places]
    # Only the share of places seen once goes to postcodes no customer has, and only in
    # real cities seen with several postcodes, inside their range.
    assert 0 < len(new) < 0.1 * len(canaries)
    for c in new:
        known = codes[(c["city"], c["region"])]
        assert len(known) >= 3 and min(known) < c["postcode"] < max(known)
    real_ids = {p["customer_id"] for p in base}
    low, high = min(real_ids), max(real_ids)
    ids = [c["customer_id"] for c in canaries]
    assert all(low <= i <= high and i not in real_ids for i in ids)
    assert len(set(ids)) == len(ids)
    upper = sum(c["first_name"].isupper() for c in canaries) / len(canaries)
    assert upper == pytest.approx(
        sum(p["first_name"].isupper() for p in base) / len(base), abs=0.02
    )


def test_monitored_provider_domains_are_used_as_often_as_by_customers(
    base: list[dict[str, str]],
) -> None:
    # A company that owns a consumer domain (an ISP) can give it to canaries.
    factory = CanaryFactory(
        [*LOOKALIKE, "libero.it"], RANGES, random.Random(3), Profile.from_rows(base)
    )
    made = [factory.make(p, "IT", "it").fields for p in random.Random(5).choices(base, k=600)]
    real = sum(p["email"].endswith("@libero.it") for p in base) / len(base)
    share = sum(c.get("email", "").endswith("@libero.it") for c in made) / len(made)
    assert share == pytest.approx(real, abs=0.04)
    assert all(
        c["email"].rsplit("@", 1)[1] in {*LOOKALIKE, "libero.it"} for c in made if "email" in c
    )


@pytest.mark.parametrize(
    "row",
    [
        {"email": "no-at-sign", "birth_date": "not a date", "first_name": "李", "last_name": "王"},
        {"email": "@", "phone": "+39", "customer_id": "", "region": "MI"},
        {"phone": "not a number", "birth_date": "31/02/1990", "customer_id": "X" * 500},
        {"first_name": "=cmd|' /C calc'!A0", "last_name": "\x00", "email": "a@b@c"},
    ],
)
def test_malformed_real_rows_still_give_monitored_canaries(row: dict[str, str]) -> None:
    rows = [dict(row) for _ in range(30)]
    factory = CanaryFactory(LOOKALIKE, RANGES, random.Random(2), Profile.from_rows(rows))
    for _ in range(20):
        fields = factory.make(dict(row), "IT", "it").fields
        assert "email" in fields or "phone" in fields
        assert fields.get("email", "@posta-0.example.it").rsplit("@", 1)[1] in LOOKALIKE
        assert fields.get("phone", "+39333000")[:9] in RANGES
        assert fields["first_name"] and ascii_fold(fields["first_name"]) is not None


def _make(
    factory: CanaryFactory, base: list[dict[str, str]], n: int, seed: int
) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        template = rng.choice(base)
        out.append(factory.make(template, template.get("country"), template.get("language")).fields)
    return out


def test_pool_mailboxes_give_canaries_the_customers_provider_mix(
    base: list[dict[str, str]],
) -> None:
    boxes = propose_mailboxes(Profile.from_rows(base), 700, random.Random(5))
    pool = {b.address: b for b in boxes}
    factory = CanaryFactory(LOOKALIKE, RANGES, random.Random(6), Profile.from_rows(base), boxes)
    made = _make(factory, base, 500, 7)
    emails = [c["email"] for c in made]
    assert len(set(emails)) == len(emails)
    on_pool = [e for e in emails if e in pool]
    assert factory.mailboxes_used == len(on_pool) and factory.mailboxes_missing == 0
    real = Counter(p["email"].rsplit("@", 1)[1] for p in base)
    fake = Counter(e.rsplit("@", 1)[1] for e in emails)
    consumer = sum(c for d, c in real.items() if d in CONSUMER_PROVIDERS) / len(base)
    assert len(on_pool) / len(made) == pytest.approx(consumer, abs=0.05)
    for provider in ("gmail.com", "libero.it"):
        assert fake[provider] / len(made) == pytest.approx(real[provider] / len(base), abs=0.05)
    # The canary carries the name its mailbox was made for.
    for c in made:
        if c["email"] in pool:
            box = pool[c["email"]]
            assert c["last_name"].lower() == box.last_name.lower()
    rest = [e for e in emails if e not in pool]
    assert all(e.rsplit("@", 1)[1] in LOOKALIKE for e in rest)


def test_an_exhausted_pool_falls_back_to_lookalike_domains(base: list[dict[str, str]]) -> None:
    boxes = propose_mailboxes(Profile.from_rows(base), 5, random.Random(8))
    factory = CanaryFactory(LOOKALIKE, RANGES, random.Random(9), Profile.from_rows(base), boxes)
    emails = [c["email"] for c in _make(factory, base, 200, 10)]
    assert sorted(e for e in emails if e in {b.address for b in boxes}) == sorted(
        b.address for b in boxes
    )
    assert factory.mailboxes_used == 5 and factory.mailboxes_missing > 0
    assert sum(e.rsplit("@", 1)[1] in LOOKALIKE for e in emails) == 195


def test_mailboxes_of_another_country_are_not_given(base: list[dict[str, str]]) -> None:
    boxes = [Mailbox(f"someone{i}@gmail.com", "Anna", "Smith", 1980, "US") for i in range(20)]
    factory = CanaryFactory(LOOKALIKE, RANGES, random.Random(11), Profile.from_rows(base), boxes)
    emails = [c["email"] for c in _make(factory, base, 100, 12)]
    assert not any(e.endswith("@gmail.com") for e in emails)


def test_proposals_are_empty_without_customers_at_the_providers(
    base: list[dict[str, str]],
) -> None:
    assert propose_mailboxes(Profile.from_rows(base), 5, random.Random(0), ["nobody.example"]) == []


def test_first_names_keep_their_era_and_overall_frequency(base: list[dict[str, str]]) -> None:
    profile = Profile.from_rows(base)
    factory = CanaryFactory(LOOKALIKE, RANGES, random.Random(13), profile)
    fake = Faker("it_IT")
    young = Counter(factory._name("IT", 2000, fake)[0] for _ in range(400))
    old = Counter(factory._name("IT", 1950, fake)[0] for _ in range(400))
    real_young = Counter(p["first_name"] for p in base if p.get("birth_date", "")[:3] == "200")
    real_old = Counter(p["first_name"] for p in base if p.get("birth_date", "")[:3] == "195")
    # Names of the 2000s are drawn more often for the 2000s than for the 1950s.
    top = [n for n, _ in real_young.most_common(5) if n not in dict(real_old.most_common(20))]
    assert top and sum(young[n] for n in top) > sum(old[n] for n in top)


def test_gazetteer_places_fill_the_share_of_places_seen_once(base: list[dict[str, str]]) -> None:
    gazetteer = [Place("IT", f"Borgo {i}", f"{10000 + i}", "AO", 1.0 + i % 3) for i in range(400)]
    factory = CanaryFactory(
        LOOKALIKE, RANGES, random.Random(14), Profile.from_rows(base, gazetteer)
    )
    made = _make(factory, base, 600, 15)
    known = {(p["city"], p["postcode"], p["region"]) for p in base}
    listed = {(g.city, g.postcode, g.region) for g in gazetteer}
    places = [(c["city"], c["postcode"], c["region"]) for c in made]
    assert all(p in known or p in listed for p in places)
    new = [p for p in places if p in listed]
    singles = sum(
        1
        for c in Counter(
            known_place for known_place in ((p["city"], p["postcode"], p["region"]) for p in base)
        ).values()
        if c == 1
    )
    # About as many canaries in a place of their own as customers alone in theirs.
    assert len(new) / len(made) == pytest.approx(singles / len(base), abs=0.04)
    assert len(set(new)) == len(new)
