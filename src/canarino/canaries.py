"""Synthetic customers ("canaries") shaped like the real rows they hide among.

Pure generation: no storage. Randomness comes from the caller's ``random.Random``; the
service modules pass ``secrets.SystemRandom()`` so canary choices cannot be predicted.

A :class:`Profile` of the real rows of a share lets every canary field follow the real
distribution: countries and places, first names by birth decade, surnames, birth years,
the way e-mail local parts are built, the casing of names, missing fields and the ranges
of customer numbers, with real places from a gazetteer where no customer lives. Contact
points must be ones the company watches: a provisioned :class:`Mailbox` at the same
consumer provider as customers use when the company has one left, otherwise a monitored
look-alike domain; phone numbers in the monitored ranges, on operators drawn like the
customers'. Domains and ranges are spread so that each stays rare.
"""

from __future__ import annotations

import bisect
import os
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from random import Random  # noqa: TID251 - only the type; callers pass SystemRandom
from typing import Any

import phonenumbers
from faker import Faker
from faker.config import AVAILABLE_LOCALES

_DATE_FORMATS = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
    (re.compile(r"^\d{2}/\d{2}/\d{4}$"), "%d/%m/%Y"),
    (re.compile(r"^\d{2}\.\d{2}\.\d{4}$"), "%d.%m.%Y"),
    (re.compile(r"^\d{2}-\d{2}-\d{4}$"), "%d-%m-%Y"),
)
_SEQUENCE = re.compile(r"^(\D*?)(\d+)$")
_ALPHA = 1.0  # how many customers' worth of "any decade" a first name's decades start with
# Fields a canary draws itself; every other field of the template is mimicked.
_DRAWN = frozenset(
    {"first_name", "last_name", "full_name", "email", "phone", "address", "city", "postcode"}
)
_COPIED = ("country", "region", "language")
# Local-part recipes used when the real rows give none: f first name, l last name,
# i initial, nK that many digits.
_DEFAULT_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("f", ".", "l"),
    ("f", "l"),
    ("i", ".", "l"),
    ("f", "_", "l"),
    ("l", ".", "f"),
    ("f", ".", "l", "n2"),
)


# Well-known consumer mail providers: where a company can provision single mailboxes
# but never a whole domain. A rule-of-thumb list; ``propose_mailboxes`` takes any other.
CONSUMER_PROVIDERS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.it",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.es",
        "yahoo.co.uk",
        "hotmail.com",
        "hotmail.it",
        "hotmail.fr",
        "hotmail.de",
        "hotmail.es",
        "hotmail.co.uk",
        "outlook.com",
        "outlook.it",
        "outlook.fr",
        "outlook.de",
        "outlook.es",
        "outlook.pt",
        "live.com",
        "live.it",
        "live.fr",
        "live.nl",
        "live.com.pt",
        "msn.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "libero.it",
        "virgilio.it",
        "alice.it",
        "tin.it",
        "tiscali.it",
        "email.it",
        "fastwebnet.it",
        "orange.fr",
        "wanadoo.fr",
        "free.fr",
        "sfr.fr",
        "neuf.fr",
        "laposte.net",
        "gmx.de",
        "gmx.net",
        "gmx.at",
        "web.de",
        "t-online.de",
        "freenet.de",
        "telefonica.net",
        "ziggo.nl",
        "kpnmail.nl",
        "home.nl",
        "planet.nl",
        "xs4all.nl",
        "sapo.pt",
        "netcabo.pt",
        "wp.pl",
        "o2.pl",
        "onet.pl",
        "op.pl",
        "interia.pl",
        "comcast.net",
        "att.net",
        "sbcglobal.net",
        "verizon.net",
        "proton.me",
        "protonmail.com",
    }
)


@dataclass(frozen=True)
class CanaryIdentity:
    """A synthetic customer: every field it may be exported with."""

    locale: str
    country: str | None
    fields: dict[str, str]


@dataclass(frozen=True)
class Mailbox:
    """A real mailbox the company provisioned at a consumer provider, for one canary.

    The name and birth year are those the local part was built from (see
    :func:`propose_mailboxes`); the canary that takes the mailbox takes them too, so its
    address reads like its name. Without them the canary keeps its own name.
    """

    address: str
    first_name: str = ""
    last_name: str = ""
    birth_year: int | None = None
    country: str | None = None

    @property
    def domain(self) -> str:
        """The provider's domain, lower case."""
        return self.address.rsplit("@", 1)[-1].lower()


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


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters and digits of ``text``, accents dropped: ``Niccolò`` → ``niccolo``."""
    text = unicodedata.normalize("NFKD", text)
    return re.sub(
        r"[^a-z0-9]", "", "".join(c for c in text if not unicodedata.combining(c)).lower()
    )


def mimic(value: str, rng: Random) -> str:
    """A value of the same shape: digits replaced, letters and punctuation kept."""
    return "".join(str(rng.randrange(10)) if c.isdigit() else c for c in value)


def email_pattern(local: str, first: str, last: str, year: int | None) -> tuple[str, ...]:
    """How a local part is built from its owner's name and birth year.

    >>> email_pattern("mario.rossi80", "Mario", "Rossi", 1980)
    ('f', '.', 'l', 'yy')

    Tokens: ``f``/``l`` first/last name, ``i`` first initial, ``yy``/``yyyy`` birth year,
    ``nK`` K other digits, ``w`` a word that is not the name, separators as themselves.
    """
    local = local[:64]  # the longest a local part may be (RFC 5321)
    words = [("f", ascii_fold(first)), ("l", ascii_fold(last))]
    if year:
        words += [("yyyy", str(year)), ("yy", f"{year % 100:02d}")]
    words = [(t, w) for t, w in words if w]
    memo: dict[int, tuple[str, ...] | None] = {}

    def parse(i: int) -> tuple[str, ...] | None:
        if i == len(local):
            return ()
        if i in memo:
            return memo[i]
        found: tuple[str, ...] | None = None
        for token, text in words:
            if local.startswith(text, i) and (rest := parse(i + len(text))) is not None:
                found = (token, *rest)
                break
        if found is None:
            ch = local[i]
            if ch in "._-" and (rest := parse(i + 1)) is not None:
                found = (ch, *rest)
            elif ch.isdigit():
                end = i
                while end < len(local) and local[end].isdigit():
                    end += 1
                if (rest := parse(end)) is not None:
                    found = (f"n{end - i}", *rest)
            elif (
                words
                and words[0][0] == "f"
                and ch == words[0][1][0]
                and (rest := parse(i + 1)) is not None
                and rest[:1] in ((".",), ("l",), ("_",))
            ):
                found = ("i", *rest)
        memo[i] = found
        return found

    parsed = parse(0)
    if parsed is not None:
        return parsed
    # Not built from the name: keep its rhythm of words, digits and separators.
    return tuple(
        "w" if run[0].isalpha() else (f"n{len(run)}" if run[0].isdigit() else run)
        for run in re.findall(r"[a-z]+|\d+|[^a-z\d]", local)
    )


def render_local(
    pattern: Iterable[str], first: str, last: str, year: int, word: str, rng: Random
) -> str:
    """Build a local part from an :func:`email_pattern` recipe for another person."""
    f, ln = ascii_fold(first) or "m", ascii_fold(last) or "rossi"
    parts = []
    for token in pattern:
        if token == "f":
            parts.append(f)
        elif token == "l":
            parts.append(ln)
        elif token == "i":
            parts.append(f[0])
        elif token == "yy":
            parts.append(f"{year % 100:02d}")
        elif token == "yyyy":
            parts.append(str(year))
        elif token == "w":
            parts.append(word)
        elif token[:1] == "n" and token[1:].isdigit():
            k = min(int(token[1:]), 8)
            parts.append(str(rng.randrange(10 ** (k - 1) if k > 1 else 0, 10**k)))
        else:
            parts.append(token)
    local = "".join(parts)
    if not local or local[0] in "._-" or local[-1] in "._-" or ".." in local:
        return f"{f}.{ln}"
    return local


def _year(value: str) -> int | None:
    for pattern, fmt in _DATE_FORMATS:
        if pattern.match(value.strip()):
            try:
                return datetime.strptime(value.strip(), fmt).year
            except ValueError:
                return None
    return None


def _casing(first: str, last: str) -> str:
    text = f"{first}{last}"
    if text.isupper():
        return "upper"
    if text.islower():
        return "lower"
    return "title"


class Urn:
    """Real values to draw canary values from, so that frequencies in the file stay real.

    Copying a random real value gives it one more occurrence: a surname or place seen
    once among customers would be seen twice with the canary, and never once. Drawing a
    value seen c times with the chance that a customer's value is seen c + 1 times
    (Good-Turing, for small c) keeps the counts as they were; ``None`` means "a value not
    seen yet", drawn with the share of values seen once.
    """

    _EXACT = 5  # counts from here on are many and smooth: weight by the count itself

    def __init__(self, values: Iterable[Hashable]) -> None:
        counts = Counter(values)
        total = sum(counts.values())
        classes = Counter(counts.values())
        self.values = list(counts)
        self.known = set(counts)
        weights = []
        for value in self.values:
            c = counts[value]
            if c < self._EXACT:
                weights.append((c + 1) * classes.get(c + 1, 0) / classes[c])
            else:
                weights.append(float(c))
        self.new = classes.get(1, 0) / total if total else 1.0
        self.weights = [w / max(total, 1) for w in weights]
        running = 0.0
        self._cumulative = []
        for w in self.weights:
            running += w
            self._cumulative.append(running)

    def draw(
        self, rng: Random, *, allow_new: bool = True, tilt: list[float] | None = None
    ) -> Hashable | None:
        """A value, or ``None`` for one never seen (only with ``allow_new``).

        ``tilt`` multiplies each value's weight (aligned with :attr:`values`): a
        conditional draw, e.g. first names given a birth decade.
        """
        cumulative = self._cumulative
        if tilt is not None:
            cumulative, running = [], 0.0
            for w, t in zip(self.weights, tilt, strict=True):
                running += w * t
                cumulative.append(running)
        seen = cumulative[-1] if cumulative else 0.0
        new = self.new if allow_new else 0.0
        if seen + new <= 0:
            return None
        r = rng.random() * (seen + new)
        if r >= seen:
            return None
        return self.values[min(bisect.bisect_right(cumulative, r), len(self.values) - 1)]


class _WeightedUrn:
    """Values drawn with given weights, each at most once (a place goes to one canary)."""

    def __init__(self, weights: Mapping[Hashable, float]) -> None:
        self.values = list(weights)
        self.weights = [weights[v] or 1.0 for v in self.values]
        self.used: set[int] = set()

    def draw(self, rng: Random) -> Hashable | None:
        """A value not drawn before, or ``None`` when all are used."""
        if len(self.used) == len(self.values):
            return None
        for _ in range(20):
            (i,) = rng.choices(range(len(self.values)), weights=self.weights)
            if i not in self.used:
                self.used.add(i)
                return self.values[i]
        return None


@dataclass(frozen=True)
class Place:
    """A real place (from a gazetteer); ``weight`` is its population, or 1."""

    country: str | None
    city: str
    postcode: str
    region: str = ""
    weight: float = 1.0


@dataclass
class _Sequence:
    prefix: str
    width: int
    low: int
    high: int
    taken: set[int]


@dataclass
class Profile:
    """What canaries copy from the real rows of a share (frequencies, formats, places).

    Built once per share from the real rows; holds references to them, nothing else.
    """

    rows: dict[str | None, list[Mapping[str, str]]] = field(default_factory=dict)
    # Keyed by country.
    first_names: dict[str | None, Urn] = field(default_factory=dict)
    last_names: dict[str | None, Urn] = field(default_factory=dict)
    places: dict[str | None, Urn] = field(default_factory=dict)
    # Per country: birth decades of each first name, and of everyone.
    name_decades: dict[str | None, dict[str, Counter[int]]] = field(default_factory=dict)
    decades: dict[str | None, Counter[int]] = field(default_factory=dict)
    # Per country: the postcodes seen in each city (for postcodes no customer has yet).
    city_postcodes: dict[str | None, dict[tuple[str, str], set[str]]] = field(default_factory=dict)
    # Per country: real places no customer of the share lives in (from a gazetteer the
    # company gives), with weights (population), for the share of places seen once.
    unseen_places: dict[str | None, Urn] = field(default_factory=dict)
    # Per country: the first digits (operator, area code) of customers' phone numbers,
    # and the regions each is seen in (area codes belong to places).
    phone_prefixes: dict[str | None, Urn] = field(default_factory=dict)
    prefix_regions: dict[str | None, dict[str, Counter[str]]] = field(default_factory=dict)
    phone_regions: dict[str | None, Counter[str]] = field(default_factory=dict)
    domains: Counter[str] = field(default_factory=Counter)
    sequences: dict[str, _Sequence] = field(default_factory=dict)
    _tilts: dict[tuple[str, str | None, Hashable], list[float]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, str]], places: Iterable[Place] = ()) -> Profile:
        """Learn the distributions of ``rows`` (canonical-field dicts).

        ``places`` are real places (a gazetteer): those where no row lives are where
        canaries go for the share of places seen once, instead of a made-up town.
        """
        profile = cls()
        shapes: dict[str, Counter[tuple[str, int]]] = defaultdict(Counter)
        numbers: dict[str, dict[tuple[str, int], list[int]]] = defaultdict(
            lambda: defaultdict(list)
        )
        seen: Counter[str] = Counter()
        firsts: dict[str | None, list[str]] = defaultdict(list)
        lasts: dict[str | None, list[str]] = defaultdict(list)
        places_seen: dict[str | None, list[tuple[str, str, str]]] = defaultdict(list)
        prefixes: dict[str | None, list[str]] = defaultdict(list)
        for row in rows:
            country = row.get("country") or None
            profile.rows.setdefault(country, []).append(row)
            first, last = row.get("first_name", ""), row.get("last_name", "")
            if first and last and _casing(first, last) == "title":
                if year := _year(row.get("birth_date", "")):
                    profile.name_decades.setdefault(country, {}).setdefault(first, Counter())[
                        year // 10
                    ] += 1
                    profile.decades.setdefault(country, Counter())[year // 10] += 1
                firsts[country].append(first)
                lasts[country].append(last)
            if row.get("city") or row.get("postcode"):
                place = (row.get("city", ""), row.get("postcode", ""), row.get("region", ""))
                places_seen[country].append(place)
                if place[0] and place[1]:
                    profile.city_postcodes.setdefault(country, {}).setdefault(
                        (place[0], place[2]), set()
                    ).add(place[1])
            email = row.get("email", "")
            if "@" in email:
                profile.domains[email.rsplit("@", 1)[1].lower()] += 1
            if (prefix := _phone_prefix(row.get("phone", ""), country)) is not None:
                prefixes[country].append(prefix)
                region = row.get("region", "")
                profile.prefix_regions.setdefault(country, {}).setdefault(prefix, Counter())[
                    region
                ] += 1
                profile.phone_regions.setdefault(country, Counter())[region] += 1
            for name, value in row.items():
                if name in _DRAWN or name in _COPIED or name == "birth_date" or not value:
                    continue
                seen[name] += 1
                match = _SEQUENCE.match(value)
                if match:
                    key = (match.group(1), len(match.group(2)))
                    shapes[name][key] += 1
                    numbers[name][key].append(int(match.group(2)))
        profile.first_names = {k: Urn(v) for k, v in firsts.items()}
        profile.last_names = {k: Urn(v) for k, v in lasts.items()}
        profile.places = {k: Urn(v) for k, v in places_seen.items()}
        profile.phone_prefixes = {k: Urn(v) for k, v in prefixes.items()}
        unseen: dict[str | None, dict[tuple[str, str, str], float]] = defaultdict(dict)
        for place in places:
            key = (place.city, place.postcode, place.region)
            urn = profile.places.get(place.country)
            if urn is None or key not in urn.known:
                unseen[place.country][key] = max(place.weight, 0.0)
        profile.unseen_places = {
            country: _WeightedUrn(found) for country, found in unseen.items() if found
        }
        for name, counter in shapes.items():
            (key, count), *_ = counter.most_common(1)
            if count >= 20 and count >= 0.9 * seen[name]:
                values = numbers[name][key]
                profile.sequences[name] = _Sequence(
                    key[0], key[1], min(values), max(values), set(values)
                )
        return profile

    def name_tilt(self, country: str | None, decade: int) -> list[float] | None:
        """How much likelier each first name of ``country`` is for people born in ``decade``.

        By Bayes, P(name | decade) is P(name) times P(decade | name) / P(decade); with
        P(decade | name) smoothed towards P(decade) (weight ``_ALPHA``) for rare names.
        Averaged over decades the tilt is 1, so names keep their overall frequencies,
        which is what a count over the file sees.
        """
        return self._tilt(
            ("name", country, decade),
            self.first_names.get(country),
            self.name_decades.get(country),
            self.decades.get(country),
            decade,
        )

    def prefix_tilt(self, country: str | None, region: str) -> list[float] | None:
        """How much likelier each phone prefix of ``country`` is in ``region`` (as above)."""
        return self._tilt(
            ("phone", country, region),
            self.phone_prefixes.get(country),
            self.prefix_regions.get(country),
            self.phone_regions.get(country),
            region,
        )

    def _tilt(
        self,
        key: tuple[str, str | None, Hashable],
        urn: Urn | None,
        by_value: Mapping[str, Counter[Any]] | None,
        everyone: Counter[Any] | None,
        condition: Hashable,
    ) -> list[float] | None:
        if urn is None or not by_value or not everyone:
            return None
        if key not in self._tilts:
            share = everyone[condition] / sum(everyone.values())
            tilt = []
            for value in urn.values:
                counts = by_value.get(str(value))
                if not counts or share <= 0:
                    tilt.append(1.0)
                    continue
                known = sum(counts.values())
                tilt.append((counts[condition] / share + _ALPHA) / (known + _ALPHA))
            self._tilts[key] = tilt
        return self._tilts[key]

    def new_place(self, country: str | None, rng: Random) -> tuple[str, str, str] | None:
        """A real place of the gazetteer where no customer of the share lives, or ``None``."""
        urn = self.unseen_places.get(country)
        found = urn.draw(rng) if urn is not None else None
        return found if isinstance(found, tuple) else None

    def new_postcode(self, country: str | None, rng: Random) -> tuple[str, str, str] | None:
        """A place with a postcode no customer has yet, or ``None``.

        The city is one seen with several postcodes sharing a prefix, and the code an
        unused one between its lowest and highest.
        """
        cities = [
            (key, codes)
            for key, codes in self.city_postcodes.get(country, {}).items()
            if len(codes) >= 3
        ]
        if not cities:
            return None
        (city, region), codes = rng.choice(cities)
        width = {len(c) for c in codes}
        digits = [c for c in codes if c.isdigit()]
        if len(width) != 1 or len(digits) != len(codes):
            return None
        numbers = sorted(int(c) for c in codes)
        stem = len(os.path.commonprefix(sorted(codes)))  # noqa: RUF071 - strings, not paths
        if numbers[-1] - numbers[0] + 1 <= len(numbers) or stem < 1:
            return None
        (size,) = width
        for _ in range(20):
            code = f"{rng.randint(numbers[0], numbers[-1]):0{size}d}"
            if code not in codes and code[:stem] == next(iter(codes))[:stem]:
                return city, code, region
        return None

    def donor(self, country: str | None, rng: Random, need: str = "") -> Mapping[str, str] | None:
        """A random real row of ``country`` (any country if none), with field ``need``."""
        pool = self.rows.get(country) or [r for rows in self.rows.values() for r in rows]
        for _ in range(20 if pool else 0):
            row = rng.choice(pool)
            if not need or row.get(need):
                return row
        return None

    def sequence_value(self, name: str, rng: Random) -> str | None:
        """An unused number in the range a sequence field's real values use."""
        seq = self.sequences.get(name)
        if seq is None:
            return None
        for _ in range(100):
            number = rng.randint(seq.low, seq.high)
            if number not in seq.taken:
                break
        else:
            number = seq.high = seq.high + 1
        seq.taken.add(number)
        return f"{seq.prefix}{number:0{seq.width}d}"


def _fresh(make: Callable[[], str], known: Urn | None) -> str:
    """A value from ``make`` that the real rows do not have, if one comes in a few tries."""
    value = make()
    for _ in range(10):
        if known is None or value not in known.known:
            break
        value = make()
    return value


class CanaryFactory:
    """Makes canaries on the workspace's monitored mail domains and phone ranges.

    With a :class:`Profile` every canary follows the real rows' distribution; each
    domain and range is used as little as possible, so none becomes frequent.
    """

    def __init__(
        self,
        mail_domains: list[str],
        phone_ranges: list[str],
        rng: Random,
        profile: Profile | None = None,
        mailboxes: Iterable[Mailbox] = (),
        pool_domains: Iterable[str] = (),
    ) -> None:
        if not mail_domains:
            raise ValueError("canaries need at least one monitored mail domain")
        self.mail_domains = mail_domains
        self.phone_ranges = phone_ranges
        self.rng = rng
        self.profile = profile or Profile()
        # Provisioned mailboxes by provider: each is given to one canary only.
        self.mailboxes: dict[str, list[Mailbox]] = defaultdict(list)
        for box in mailboxes:
            self.mailboxes[box.domain].append(box)
        # Providers the pool has (or had) mailboxes at: running out there is reported.
        self._pool_domains = set(self.mailboxes) | {d.lower() for d in pool_domains}
        self.mailboxes_used = 0
        self.mailboxes_missing = 0
        # Monitored domains real customers also use (a company's own consumer domain) are
        # given to canaries whose donor uses them; the others spread the rest.
        self._lookalike = [d for d in mail_domains if d not in self.profile.domains] or list(
            mail_domains
        )
        self._uses: Counter[str] = Counter()

    def make(
        self, template: dict[str, str], country: str | None, language: str | None
    ) -> CanaryIdentity:
        """A canary shaped like ``template`` (a real row), from the same country."""
        locale = locale_for(country, language)
        fake = _faker(locale)
        fake.seed_instance(self.rng.getrandbits(64))
        profile, rng = self.profile, self.rng
        wants_phone = bool(self.phone_ranges and (template.get("phone") or not profile.rows))
        wants_email = bool(template.get("email") or not wants_phone or not profile.rows)
        email_donor = profile.donor(country, rng, need="email") if wants_email else None
        box = self._mailbox(email_donor, country) if email_donor is not None else None
        birth_donor = profile.donor(country, rng, need="birth_date")
        year = _year(birth_donor["birth_date"]) if birth_donor else None
        year = (box.birth_year if box else None) or year
        year = year or date.today().year - rng.randrange(18, 90)
        if box is not None and box.first_name and box.last_name:
            first, last = box.first_name, box.last_name
        else:
            first, last = self._name(country, year, fake)
        casing = (
            _casing(template["first_name"], template.get("last_name", ""))
            if template.get("first_name")
            else "title"
        )
        if casing == "upper":
            first, last = first.upper(), last.upper()
        elif casing == "lower":
            first, last = first.lower(), last.lower()
        fields: dict[str, str] = {
            "first_name": first,
            "last_name": last,
            "full_name": f"{first} {last}",
            "address": fake.street_address(),
            "city": template.get("city") or fake.city(),
            "postcode": template.get("postcode") or fake.postcode(),
        }
        # Only real places: an invented town is easy to check. The share of places seen
        # once goes to a real place no customer of the share lives in (from the gazetteer)
        # or else to a postcode no customer has yet in a city known to span several.
        place_urn = profile.places.get(country)
        place: Hashable | None = None
        if place_urn is not None:
            place = place_urn.draw(rng)
            if place is None:
                place = (
                    profile.new_place(country, rng)
                    or profile.new_postcode(country, rng)
                    or place_urn.draw(rng, allow_new=False)
                )
        if isinstance(place, tuple):
            fields["city"], fields["postcode"], region = place
            if region:
                fields["region"] = region
        if wants_phone and (
            phone := self._phone(country, template.get("phone", ""), fields.get("region", ""))
        ):
            fields["phone"] = phone
        if box is not None:
            fields["email"] = box.address
        elif wants_email:
            fields["email"] = self._email(email_donor, first, last, year, fake)
        for name in _COPIED:
            if template.get(name) and name not in fields:
                fields[name] = template[name]
        for name, value in template.items():
            if name in fields or name in _DRAWN or not value:
                continue
            if name == "birth_date":
                fields[name] = self._birth_date(value, year)
            else:
                fields[name] = profile.sequence_value(name, rng) or mimic(value, rng)
        return CanaryIdentity(locale, country, fields)

    def _name(self, country: str | None, year: int, fake: Faker) -> tuple[str, str]:
        profile, rng = self.profile, self.rng
        # First names of the country, tilted towards those of the birth decade (names
        # have eras); None is a name no customer of the country has.
        first_urn = profile.first_names.get(country)
        first = (
            first_urn.draw(rng, tilt=profile.name_tilt(country, year // 10)) if first_urn else None
        )
        if first is None:
            first = _fresh(fake.first_name, first_urn)
        last_urn = profile.last_names.get(country)
        last = last_urn.draw(rng) if last_urn else None
        if last is None:
            last = _fresh(fake.last_name, last_urn)
        return str(first), str(last)

    def _least_used(self, candidates: list[str]) -> str:
        low = min(self._uses[c] for c in candidates)
        choice = self.rng.choice([c for c in candidates if self._uses[c] == low])
        self._uses[choice] += 1
        return choice

    def mailbox_for(
        self,
        row: Mapping[str, str],
        at_provider: Mapping[tuple[str | None, str], list[Mapping[str, str]]],
    ) -> Mailbox:
        """A mailbox proposal at the provider of ``row``'s address, for its country."""
        country = row.get("country") or None
        domain = row.get("email", "").rpartition("@")[2].lower()
        fake = _faker(locale_for(country, row.get("language")))
        fake.seed_instance(self.rng.getrandbits(64))
        birth_donor = self.profile.donor(country, self.rng, need="birth_date")
        year = _year(birth_donor["birth_date"]) if birth_donor else None
        year = year or date.today().year - self.rng.randrange(18, 90)
        first, last = self._name(country, year, fake)
        recipe_donor = self.rng.choice(at_provider.get((country, domain)) or [row])
        local = recipe_donor.get("email", "").lower().rpartition("@")[0]
        pattern = email_pattern(
            local,
            recipe_donor.get("first_name", ""),
            recipe_donor.get("last_name", ""),
            _year(recipe_donor.get("birth_date", "")),
        )
        word = ascii_fold(fake.user_name()).rstrip("0123456789") or "info"
        local = render_local(pattern, first, last, year, word, self.rng)
        return Mailbox(f"{local}@{domain}", first, last, year, country)

    def _mailbox(self, donor: Mapping[str, str], country: str | None) -> Mailbox | None:
        """An unused provisioned mailbox for a canary whose ``donor`` has this address.

        At the donor's provider if one is left for the country; otherwise, when the donor
        is at a consumer provider, at another provider of the pool (a mailbox at a
        provider is far more like a customer than one on a look-alike domain). ``None``
        for donors on other domains, and when the pool has nothing left for the country.
        """
        domain = donor["email"].rpartition("@")[2].lower()
        if domain in self.mail_domains or not self._pool_domains:
            return None
        if domain not in self._pool_domains and domain not in CONSUMER_PROVIDERS:
            return None
        fits = [
            (domain, i)
            for i, b in enumerate(self.mailboxes.get(domain, ()))
            if b.country in (None, country)
        ] or [
            (d, i)
            for d, boxes in self.mailboxes.items()
            for i, b in enumerate(boxes)
            if b.country in (None, country)
        ]
        if not fits:
            self.mailboxes_missing += 1  # the pool has run out for this country
            return None
        self.mailboxes_used += 1
        d, i = self.rng.choice(fits)
        return self.mailboxes[d].pop(i)

    def _email(
        self, donor: Mapping[str, str] | None, first: str, last: str, year: int, fake: Faker
    ) -> str:
        domain = None
        if donor is not None:
            local, _, donor_domain = donor["email"].lower().rpartition("@")
            pattern = email_pattern(
                local,
                donor.get("first_name", ""),
                donor.get("last_name", ""),
                _year(donor.get("birth_date", "")),
            )
            if donor_domain in self.mail_domains:
                domain = donor_domain
        else:
            pattern = self.rng.choice(_DEFAULT_PATTERNS)
        word = ascii_fold(fake.user_name()).rstrip("0123456789") or "info"
        local = render_local(pattern, first, last, year, word, self.rng)
        return f"{local}@{domain or self._least_used(self._lookalike)}"

    def _phone(self, country: str | None, like: str, region: str = "") -> str | None:
        if not self.phone_ranges:
            return None
        local = [
            p for p in self.phone_ranges if _region_of_prefix(p) == country
        ] or self.phone_ranges
        drawn = self._range_like_customers(country, local, region)
        if drawn:
            local = drawn
        elif like:
            # Prefer ranges of the same operator or area code as the real number.
            try:
                nsn = phonenumbers.national_significant_number(phonenumbers.parse(like))
            except phonenumbers.NumberParseException:
                nsn = ""
            same = [p for p in local if nsn and _national(p)[:3] == nsn[: len(_national(p)[:3])]]
            local = same or local
        prefix = self._least_used(local)
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

    def _range_like_customers(
        self, country: str | None, ranges: list[str], region: str
    ) -> list[str]:
        """Ranges of a phone prefix drawn like customers' (Good-Turing, region-tilted).

        A prefix seen c times is drawn with the chance that a customer's is seen c + 1
        times, so the canary's prefix is as common in the file as a customer's; the
        share of prefixes seen once goes to ranges on prefixes no customer has. Only
        prefixes with a least used range can be drawn, so have many ranges spread over
        operators and area codes. Empty without customers' phones.
        """
        urn = self.profile.phone_prefixes.get(country)
        if urn is None:
            return []
        # Only the least used ranges, so that no block holds two canaries of a share
        # while another is empty (a block's prefix would become frequent).
        low = min(self._uses[p] for p in ranges)
        by_prefix: dict[str, list[str]] = defaultdict(list)
        for p in ranges:
            if self._uses[p] == low:
                by_prefix[_national(p)[:3]].append(p)
        tilt = self.profile.prefix_tilt(country, region) or [1.0] * len(urn.values)
        usable = [t if v in by_prefix else 0.0 for v, t in zip(urn.values, tilt, strict=True)]
        unseen = [p for k, ps in by_prefix.items() if k not in urn.known for p in ps]
        prefix = urn.draw(self.rng, allow_new=bool(unseen), tilt=usable)
        if prefix is None:
            return unseen
        return by_prefix[str(prefix)]

    def _birth_date(self, template: str, year: int) -> str:
        born = date(year, 1, 1) + timedelta(days=self.rng.randrange(365))
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
def _national(prefix: str) -> str:
    region = _region_of_prefix(prefix)
    code = str(phonenumbers.country_code_for_region(region)) if region else ""
    return prefix.lstrip("+")[len(code) :]


@cache
def _national_length(region: str) -> int:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return 10
    return len(phonenumbers.national_significant_number(example))


def propose_mailboxes(
    profile: Profile,
    count: int,
    rng: Random,
    providers: Iterable[str] = CONSUMER_PROVIDERS,
    taken: Iterable[str] = (),
) -> list[Mailbox]:
    """Mailboxes worth provisioning so that canaries look like these customers.

    Each proposal copies a random customer at one of ``providers`` (so providers and
    countries come in the customers' proportions), gets a name and birth year drawn like
    a canary's, and a local part built with the recipe of another customer of the same
    country at the same provider. Addresses in ``taken`` (lower case) and customers'
    addresses are never proposed. Empty when no customer uses one of ``providers``.
    """
    wanted = {p.lower() for p in providers}
    at_provider: dict[tuple[str | None, str], list[Mapping[str, str]]] = defaultdict(list)
    seen = {t.lower() for t in taken}
    for country, rows in profile.rows.items():
        for row in rows:
            email = row.get("email", "").lower()
            seen.add(email)
            domain = email.rpartition("@")[2]
            if domain in wanted:
                at_provider[(country, domain)].append(row)
    donors = [row for rows in at_provider.values() for row in rows]
    if not donors:
        return []
    factory = CanaryFactory(sorted(wanted), [], rng, profile)
    out: list[Mailbox] = []
    for _ in range(count):
        for _ in range(20):
            box = factory.mailbox_for(rng.choice(donors), at_provider)
            if box.address not in seen:
                seen.add(box.address)
                out.append(box)
                break
    return out


def _phone_prefix(phone: str, country: str | None) -> str | None:
    """The first three national digits of an E.164 number of ``country``, cheaply."""
    if not phone.startswith("+") or not country:
        return None
    code = _country_code(country)
    digits = re.sub(r"\D", "", phone)
    if not code or not digits.startswith(code) or len(digits) < len(code) + 3:
        return None
    return digits[len(code) : len(code) + 3]


@cache
def _country_code(country: str) -> str:
    code = phonenumbers.country_code_for_region(country)
    return str(code) if code else ""
