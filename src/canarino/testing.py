"""Factories for tests, demos and benchmarks: synthetic customers, exports and leaks.

Everything here is generated (Faker and seeded randomness); no real person's data.
"""

from __future__ import annotations

import csv
import random  # noqa: TID251 - reproducible synthetic data, not canary choices
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from faker import Faker

from .canaries import locale_for

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
