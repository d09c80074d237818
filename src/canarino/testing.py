"""Factories for tests, demos and benchmarks: synthetic customers, exports and leaks.

Everything here is generated (Faker and seeded randomness); no real person's data.
"""

from __future__ import annotations

import csv
import functools
import random  # noqa: TID251 - reproducible synthetic data, not canary choices
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import phonenumbers
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from faker import Faker

from .canaries import ascii_fold, locale_for

# Country mix of the demo customer base: Italy first, other EU countries, the US.
DEFAULT_MIX: dict[str, float] = {"IT": 0.70, "FR": 0.06, "DE": 0.06, "ES": 0.06, "US": 0.12}

HEADERS_IT: dict[str, str] = {
    "customer_id": "codice cliente",
    "first_name": "nome",
    "last_name": "cognome",
    "email": "e-mail",
    "phone": "cellulare",
    "address": "indirizzo",
    "city": "città",
    "postcode": "cap",
    "region": "provincia",
    "country": "paese",
    "language": "lingua",
    "birth_date": "data di nascita",
}
HEADERS_EN_ALT: dict[str, str] = {
    "customer_id": "Customer Number",
    "first_name": "Given Name",
    "last_name": "Surname",
    "email": "Email Address",
    "phone": "Mobile",
    "address": "Street",
    "city": "Town",
    "postcode": "ZIP",
    "region": "State",
    "country": "Country",
    "language": "Lang",
    "birth_date": "DOB",
}
_LANG = {"IT": "it", "FR": "fr", "DE": "de", "ES": "es", "US": "en"}
_BASE_LANG = {**_LANG, "NL": "nl", "PL": "pl", "PT": "pt"}


def _phone(rng: random.Random, country: str) -> str:
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    nsn = phonenumbers.national_significant_number(example)
    code = example.country_code
    for _ in range(100):
        digits = nsn[:2] + "".join(str(rng.randrange(10)) for _ in range(len(nsn) - 2))
        number = phonenumbers.parse(f"+{code}{digits}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"+{code}{digits}"


def iter_customers(
    n: int, seed: int = 0, mix: dict[str, float] | None = None
) -> Iterator[dict[str, str]]:
    """Yield ``n`` synthetic customers as canonical-field dicts, reproducibly."""
    rng = random.Random(seed)
    mix = mix or DEFAULT_MIX
    countries, weights = list(mix), list(mix.values())
    fakers: dict[str, Faker] = {}
    for i in range(n):
        country = rng.choices(countries, weights)[0]
        language = _LANG.get(country, "en")
        fake = fakers.get(country)
        if fake is None:
            fake = fakers[country] = Faker(locale_for(country, language))
            fake.seed_instance(seed * 1_000 + len(fakers))
        first, last = fake.first_name(), fake.last_name()
        local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
        local = "".join(c for c in local if c.isascii() and (c.isalnum() or c == "."))
        region = fake.state_abbr() if country == "US" else fake.administrative_unit()
        if country == "IT":
            region = fake.state_abbr()
        yield {
            "customer_id": f"C{seed % 97:02d}{i:07d}",
            "first_name": first,
            "last_name": last,
            "email": f"{local}{rng.randrange(100)}@{fake.free_email_domain()}",
            "phone": _phone(rng, country),
            "address": fake.street_address(),
            "city": fake.city(),
            "postcode": fake.postcode(),
            "region": region,
            "country": country,
            "language": language,
            "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=90).isoformat(),
        }


def make_customers(
    n: int, seed: int = 0, mix: dict[str, float] | None = None
) -> list[dict[str, str]]:
    """Return ``n`` synthetic customers (see :func:`iter_customers`)."""
    return list(iter_customers(n, seed, mix))


def write_customers_csv(
    path: Path,
    customers: Sequence[dict[str, str]] | Iterator[dict[str, str]],
    headers: dict[str, str] = HEADERS_IT,
    delimiter: str = ",",
) -> Path:
    """Write customers with the given header names (Italian by default)."""
    names = list(headers)
    with path.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp, delimiter=delimiter)
        writer.writerow([headers[n] for n in names])
        for c in customers:
            writer.writerow([c.get(n, "") for n in names])
    return path


def _reformat_phone(value: str, rng: random.Random) -> str:
    if not value:
        return value
    try:
        number = phonenumbers.parse(value)
    except phonenumbers.NumberParseException:
        return value
    style = rng.randrange(4)
    if style == 0:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if style == 1:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if style == 2:
        return "00" + value[1:]
    return phonenumbers.national_significant_number(number)


def make_dump(
    export: Path,
    out: Path,
    *,
    fraction: float,
    seed: int = 0,
    reformat: bool = True,
    noise_rows: int = 0,
) -> int:
    """Write a leak made from ``fraction`` of an export's rows; return the rows leaked.

    With ``reformat`` the leak looks like a thief's copy: English headers, columns in
    another order, phones in other formats, some e-mails upper-cased, some addresses
    truncated, semicolons as delimiter. ``noise_rows`` unrelated people are mixed in.
    """
    rng = random.Random(seed)
    with export.open(encoding="utf-8", newline="") as fp:
        reader = csv.reader(fp)
        header = next(reader)
        rows = [row for row in reader]
    k = max(1, round(len(rows) * fraction))
    leaked = rng.sample(rows, k)
    noise = [
        [c.get(name, "") for name in header] for c in iter_customers(noise_rows, seed=seed + 7_919)
    ]
    for c in noise:
        if "customer_id" in header:
            c[header.index("customer_id")] = f"X{rng.randrange(10**8):08d}"
    body = leaked + noise
    rng.shuffle(body)
    order = list(range(len(header)))
    delimiter = ","
    out_header = list(header)
    if reformat:
        rng.shuffle(order)
        delimiter = ";"
        out_header = [HEADERS_EN_ALT.get(h, h) for h in header]
        for row in body:
            for i, name in enumerate(header):
                if name == "phone":
                    row[i] = _reformat_phone(row[i], rng)
                elif name == "email" and rng.random() < 0.3:
                    row[i] = row[i].upper()
                elif name == "address" and rng.random() < 0.3:
                    row[i] = row[i][: max(3, len(row[i]) // 2)]
    with out.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp, delimiter=delimiter)
        writer.writerow([out_header[i] for i in order])
        for row in body:
            writer.writerow([row[i] for i in order])
    return k


@dataclass
class ReceivedMessage:
    """One message an :class:`SmtpSink` accepted."""

    mail_from: str
    recipients: list[str]
    data: bytes


@dataclass
class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives (aiosmtpd).

    Use as a context manager; ``reject`` maps recipient addresses to SMTP replies
    (e.g. ``"550 5.1.1 no such user"``) to simulate refusals.
    """

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[ReceivedMessage] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    _controller: Controller | None = None

    async def handle_RCPT(
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept a recipient unless ``reject`` names it."""
        if address.lower() in self.reject:
            return self.reject[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        """Keep the message."""
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(
            ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos), data)
        )
        return "250 Message accepted"

    def __enter__(self) -> SmtpSink:
        if not self.port:
            with socket.socket() as probe:
                probe.bind((self.host, 0))
                self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# --- realistic customer bases ------------------------------------------------------------
#
# make_customers above is the small, stable fixture most tests use. The bases below are
# closer to a real company's: names follow skewed frequencies that drift with birth year,
# ages are uneven, e-mail addresses sit on the consumer providers people actually use (plus
# employers' domains and a long tail of personal ones), local parts follow the habits of
# real addresses, phones carry each country's operator prefixes, and places are consistent
# (a city always comes with its own postcodes and province). The mixes are rules of thumb
# for synthetic data, not market statistics.


@dataclass(frozen=True)
class CustomerBase:
    """The shape of one kind of customer base: who, where, on which mail providers."""

    countries: dict[str, float]
    # Per country of residence: the locales names come from (people born elsewhere).
    name_locales: dict[str, dict[str, float]]
    corporate: float = 0.11
    personal: float = 0.06


PROVIDERS: dict[str, dict[str, float]] = {
    "IT": {
        "gmail.com": 34,
        "libero.it": 12,
        "hotmail.it": 7,
        "yahoo.it": 5,
        "virgilio.it": 4,
        "outlook.it": 4,
        "alice.it": 3.5,
        "icloud.com": 3,
        "hotmail.com": 3,
        "live.it": 2,
        "tiscali.it": 1.5,
        "tin.it": 1,
        "fastwebnet.it": 1,
        "email.it": 1,
        "yahoo.com": 1,
    },
    "FR": {
        "gmail.com": 30,
        "orange.fr": 10,
        "hotmail.fr": 8,
        "yahoo.fr": 5,
        "free.fr": 5,
        "laposte.net": 4,
        "sfr.fr": 4,
        "wanadoo.fr": 3,
        "outlook.fr": 3,
        "icloud.com": 2,
        "live.fr": 2,
        "neuf.fr": 1,
    },
    "DE": {
        "gmail.com": 22,
        "gmx.de": 16,
        "web.de": 16,
        "t-online.de": 8,
        "gmx.net": 3,
        "yahoo.de": 3,
        "hotmail.de": 3,
        "outlook.de": 3,
        "freenet.de": 2,
        "icloud.com": 2,
    },
    "ES": {
        "gmail.com": 45,
        "hotmail.com": 15,
        "hotmail.es": 5,
        "yahoo.es": 5,
        "outlook.es": 4,
        "icloud.com": 2,
        "telefonica.net": 1,
    },
    "NL": {
        "gmail.com": 30,
        "hotmail.com": 12,
        "ziggo.nl": 6,
        "kpnmail.nl": 5,
        "outlook.com": 5,
        "live.nl": 4,
        "planet.nl": 2,
        "xs4all.nl": 2,
        "home.nl": 2,
    },
    "PL": {"gmail.com": 35, "wp.pl": 15, "onet.pl": 12, "o2.pl": 7, "interia.pl": 7, "op.pl": 3},
    "PT": {
        "gmail.com": 45,
        "hotmail.com": 15,
        "sapo.pt": 8,
        "outlook.pt": 3,
        "live.com.pt": 3,
        "netcabo.pt": 1,
    },
    "US": {
        "gmail.com": 42,
        "yahoo.com": 14,
        "hotmail.com": 7,
        "outlook.com": 5,
        "icloud.com": 5,
        "aol.com": 4,
        "comcast.net": 2,
        "msn.com": 1,
        "att.net": 1,
        "verizon.net": 1,
        "live.com": 1,
        "sbcglobal.net": 1,
    },
}

# Mobile prefixes (start of the national number) and their rough weights per country.
MOBILE_PREFIXES: dict[str, dict[str, float]] = {
    "IT": {
        **dict.fromkeys(("320", "327", "328", "329", "366", "380", "388", "389"), 3.0),
        **dict.fromkeys(("330", "331", "333", "334", "335", "336", "338", "339"), 4.0),
        **dict.fromkeys(("340", "342", "345", "346", "347", "348", "349"), 4.5),
        **dict.fromkeys(("350", "351", "352", "370", "371", "377", "391", "392", "393"), 1.5),
    },
    "FR": dict.fromkeys(
        ("60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "75", "76", "77", "78"), 1.0
    ),
    "DE": dict.fromkeys(
        (
            "151",
            "152",
            "157",
            "159",
            "160",
            "162",
            "163",
            "170",
            "171",
            "172",
            "173",
            "174",
            "175",
            "176",
            "177",
            "178",
            "179",
        ),
        1.0,
    ),
    "ES": dict.fromkeys(
        ("60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "71", "72", "73", "74"), 1.0
    ),
    "NL": dict.fromkeys(("61", "62", "63", "64", "65", "68"), 1.0),
    "PL": dict.fromkeys(
        ("50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88"), 1.0
    ),
    "PT": {"91": 4.0, "92": 2.0, "93": 3.0, "96": 4.0},
}
# US phones follow the place: a few area codes per state, others from this pool.
US_AREA_CODES: dict[str, tuple[str, ...]] = {
    "CA": ("213", "310", "415", "510", "619", "714", "818", "909"),
    "TX": ("214", "281", "512", "713", "817", "915"),
    "FL": ("305", "407", "561", "727", "813", "904"),
    "NY": ("212", "315", "516", "518", "716", "917"),
    "IL": ("217", "312", "630", "773", "847"),
    "PA": ("215", "267", "412", "610", "717"),
    "OH": ("216", "330", "513", "614", "937"),
    "GA": ("404", "470", "678", "706", "912"),
}
_US_OTHER_AREA_CODES = ("201", "202", "206", "303", "480", "503", "602", "617", "702", "804")

BASES: dict[str, CustomerBase] = {
    "it": CustomerBase(
        {"IT": 1.0},
        {"IT": {"it_IT": 0.94, "ro_RO": 0.03, "es_ES": 0.01, "fr_FR": 0.01, "de_DE": 0.01}},
    ),
    "eu": CustomerBase(
        {"IT": 0.35, "DE": 0.2, "FR": 0.18, "ES": 0.12, "NL": 0.06, "PL": 0.05, "PT": 0.04},
        {
            "IT": {"it_IT": 0.95, "ro_RO": 0.05},
            "DE": {"de_DE": 0.92, "pl_PL": 0.04, "it_IT": 0.04},
            "FR": {"fr_FR": 0.93, "pt_PT": 0.04, "es_ES": 0.03},
            "ES": {"es_ES": 0.95, "ro_RO": 0.05},
            "NL": {"nl_NL": 0.95, "de_DE": 0.05},
            "PL": {"pl_PL": 1.0},
            "PT": {"pt_PT": 0.95, "es_ES": 0.05},
        },
    ),
    "us": CustomerBase({"US": 1.0}, {"US": {"en_US": 0.84, "es_MX": 0.16}}),
}

# How local parts are built, with rough shares: f first name, l last name, i initial,
# yy/yyyy the birth year, n1..n3 that many digits, w a word.
LOCAL_PATTERNS: dict[tuple[str, ...], float] = {
    ("f", ".", "l"): 24,
    ("f", "l"): 11,
    ("f", ".", "l", "yy"): 8,
    ("f", "l", "yy"): 6,
    ("f", ".", "l", "n2"): 6,
    ("f", ".", "l", "n1"): 3,
    ("f", "l", "n3"): 4,
    ("f", "_", "l"): 4,
    ("i", ".", "l"): 4,
    ("i", "l"): 5,
    ("l", ".", "f"): 4,
    ("l", "f"): 2,
    ("f", "yyyy"): 3,
    ("f", "n2"): 4,
    ("l", "n3"): 3,
    ("w", "n2"): 6,
    ("w",): 3,
}
_CORPORATE_PATTERNS: dict[tuple[str, ...], float] = {
    ("f", ".", "l"): 70,
    ("i", "l"): 12,
    ("i", ".", "l"): 10,
    ("f",): 4,
    ("l",): 4,
}


_CUMULATIVE: dict[int, tuple[list[Any], np.ndarray]] = {}


def _weighted(rng: np.random.Generator, table: dict[Any, float]) -> Any:
    # The tables are module constants, so their cumulative weights are computed once.
    if id(table) not in _CUMULATIVE:
        weights = np.cumsum(np.array(list(table.values()), dtype=float))
        _CUMULATIVE[id(table)] = (list(table), weights / weights[-1])
    keys, cumulative = _CUMULATIVE[id(table)]
    return keys[min(int(np.searchsorted(cumulative, rng.random())), len(keys) - 1)]


def _pick(rng: np.random.Generator, cumulative: np.ndarray) -> int:
    return min(int(np.searchsorted(cumulative, rng.random())), len(cumulative) - 1)


def _zipf(n: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return weights / weights.sum()


class _Names:
    """First and last names of one locale with skewed frequencies; first names by era."""

    YEARS = np.arange(1925, 2011)

    def __init__(self, fake: Faker, locale: str, rng: np.random.Generator) -> None:
        person = next(p for p in fake.providers if type(p).__module__.endswith("person." + locale))
        self.first: dict[str, tuple[list[str], np.ndarray]] = {}
        for gender in ("male", "female"):
            pool = getattr(person, f"first_names_{gender}", None) or person.first_names
            names, base = self._weights(pool, rng, 1.0)
            # Each first name has a decade of fashion: weight by closeness to its peak.
            peaks = rng.uniform(1930, 2008, len(names))
            era = np.exp(-(((self.YEARS[:, None] - peaks[None, :]) / 16.0) ** 2) / 2)
            table = base[None, :] * (0.15 + era)
            self.first[gender] = (
                names,
                np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1),
            )
        self.last, last_p = self._weights(person.last_names, rng, 0.9)
        self.last_cum = np.cumsum(last_p)

    @staticmethod
    def _weights(pool: Any, rng: np.random.Generator, s: float) -> tuple[list[str], np.ndarray]:
        if isinstance(pool, dict):  # en_US ships real frequencies
            names = list(pool)
            weights = np.array(list(pool.values()), dtype=float)
            return names, weights / weights.sum()
        names = list(dict.fromkeys(pool))
        order = rng.permutation(len(names))
        return [names[i] for i in order], _zipf(len(names), s)

    def draw(self, rng: np.random.Generator, gender: str, year: int) -> tuple[str, str]:
        names, table = self.first[gender]
        row = table[int(np.clip(year - self.YEARS[0], 0, len(self.YEARS) - 1))]
        return names[_pick(rng, row)], self.last[_pick(rng, self.last_cum)]


@dataclass(frozen=True)
class _Place:
    city: str
    postcodes: tuple[str, ...]
    region: str
    area_codes: tuple[str, ...] = ()


def _places(country: str, fake: Faker, rng: np.random.Generator, count: int = 400) -> list[_Place]:
    places = []
    seen: set[str] = set()
    # Some locales know only a few dozen cities: stop looking after a bounded number of tries.
    for _ in range(count * 10):
        city = fake.city()
        if len(places) == count:
            break
        if city in seen:
            continue
        seen.add(city)
        big = len(places) < 25  # the first places get the largest weights below
        if country == "US":
            region = fake.state_abbr(include_territories=False)
            first = fake.zipcode_in_state(region)
            codes = US_AREA_CODES.get(region, _US_OTHER_AREA_CODES)
            area = tuple(str(c) for c in rng.choice(codes, size=min(2, len(codes)), replace=False))
        else:
            region = fake.state_abbr() if country == "IT" else fake.administrative_unit()
            first, area = fake.postcode(), ()
        postcodes = [first]
        if big and first[-2:].isdigit():
            postcodes += [first[:-2] + f"{int(x):02d}" for x in rng.choice(100, 6, replace=False)]
        places.append(_Place(city, tuple(dict.fromkeys(postcodes)), region, area))
    return places


def _local_part(
    pattern: tuple[str, ...], first: str, last: str, year: int, word: str, rng: np.random.Generator
) -> str:
    f, ln = ascii_fold(first) or "x", ascii_fold(last) or "x"
    out = []
    for token in pattern:
        if token == "f":
            out.append(f)
        elif token == "l":
            out.append(ln)
        elif token == "i":
            out.append(f[0])
        elif token == "yy":
            out.append(f"{year % 100:02d}")
        elif token == "yyyy":
            out.append(str(year))
        elif token == "w":
            out.append(word)
        elif token.startswith("n"):
            digits = int(token[1:])
            out.append(str(int(rng.integers(10 ** (digits - 1), 10**digits))))
        else:
            out.append(token)
    return "".join(out)


@functools.cache
def _mobile_shape(country: str) -> tuple[int, int]:
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    return example.country_code, len(phonenumbers.national_significant_number(example))


def _mobile(rng: np.random.Generator, country: str, prefix: str) -> str:
    code, length = _mobile_shape(country)
    for _ in range(100):
        tail = "".join(str(d) for d in rng.integers(0, 10, length - len(prefix)))
        if country == "US":  # the exchange cannot start with 0 or 1
            tail = str(int(rng.integers(2, 10))) + tail[1:]
        number = phonenumbers.parse(f"+{code}{prefix}{tail}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"+{code}{prefix}{tail}"


def iter_customer_base(kind: str, n: int, seed: int = 0) -> Iterator[dict[str, str]]:
    """Yield ``n`` customers of a realistic base: ``"it"``, ``"eu"`` or ``"us"``.

    Same fields as :func:`iter_customers`; some phones and birth dates are missing and a
    few names are in capitals, as in real customer files. Seeded; as with Faker, city names can differ between Python processes.
    """
    if kind not in BASES:
        raise ValueError(f"unknown customer base {kind!r}; choose from {', '.join(BASES)}")
    base = BASES[kind]
    rng = np.random.default_rng([seed, 7_013])
    fakers: dict[str, Faker] = {}
    names: dict[str, _Names] = {}
    places: dict[str, tuple[list[_Place], np.ndarray]] = {}
    employers: dict[str, tuple[list[str], np.ndarray]] = {}

    def faker(locale: str) -> Faker:
        if locale not in fakers:
            fakers[locale] = Faker(locale)
            fakers[locale].seed_instance(int(rng.integers(2**32)))
        return fakers[locale]

    customer_number = int(rng.integers(10_000_000, 20_000_000))
    for _ in range(n):
        country = _weighted(rng, base.countries)
        home = faker(locale_for(country, _BASE_LANG[country]))
        if country not in places:
            found = _places(country, home, rng)
            places[country] = (found, np.cumsum(_zipf(len(found), 1.0)))
            companies = list(dict.fromkeys(home.domain_name() for _ in range(300)))
            employers[country] = (companies, np.cumsum(_zipf(len(companies), 1.1)))
        name_locale = _weighted(rng, base.name_locales[country])
        if name_locale not in names:
            names[name_locale] = _Names(faker(name_locale), name_locale, rng)
        age = float(
            np.clip(rng.normal(46, 15) if rng.random() < 0.7 else rng.normal(31, 7), 18, 95)
        )
        born = date.today() - timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
        gender = "female" if rng.random() < 0.52 else "male"
        first, last = names[name_locale].draw(rng, gender, born.year)
        place_list, place_p = places[country]
        place = place_list[_pick(rng, place_p)]
        roll = rng.random()
        if roll < base.corporate:
            companies, company_p = employers[country]
            domain = companies[_pick(rng, company_p)]
            pattern = _weighted(rng, _CORPORATE_PATTERNS)
        else:
            if roll < base.corporate + base.personal:
                domain = home.domain_name()
            else:
                domain = _weighted(rng, PROVIDERS[country])
            pattern = _weighted(rng, LOCAL_PATTERNS)
        word = ascii_fold(home.user_name()).rstrip("0123456789") or "user"
        local = _local_part(pattern, first, last, born.year, word, rng)
        if country == "US":
            prefix = (
                str(rng.choice(place.area_codes))
                if rng.random() < 0.85
                else str(rng.choice(_US_OTHER_AREA_CODES))
            )
        else:
            prefix = _weighted(rng, MOBILE_PREFIXES[country])
        style = rng.random()
        if style < 0.02:
            first, last = first.upper(), last.upper()
        elif style < 0.03:
            first, last = first.lower(), last.lower()
        customer_number += 1 + int(rng.geometric(0.55)) - 1
        yield {
            "customer_id": f"C{customer_number:08d}",
            "first_name": first,
            "last_name": last,
            "email": f"{local}@{domain}",
            "phone": _mobile(rng, country, prefix) if rng.random() >= 0.07 else "",
            "address": home.street_address(),
            "city": place.city,
            "postcode": str(rng.choice(place.postcodes)),
            "region": place.region,
            "country": country,
            "language": _BASE_LANG[country],
            "birth_date": born.isoformat() if rng.random() >= 0.12 else "",
        }


def make_customer_base(kind: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """Return ``n`` customers of a realistic base (see :func:`iter_customer_base`)."""
    return list(iter_customer_base(kind, n, seed))
