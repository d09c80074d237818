"""Normalisers for identifiers and the keyed pseudonyms canarino matches on.

Customers are imported once, so import uses the strict libraries (email-validator,
phonenumbers). A leaked dump can hold millions of rows in any format, so tracing uses
:class:`PhoneCandidates`, a table-driven normaliser that turns one phone string into the
few E.164 forms it could denote; a wrong candidate costs one hash and matches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from babel import Locale, UnknownLocaleError
from babel.languages import get_official_languages
from email_validator import EmailNotValidError, validate_email

if TYPE_CHECKING:
    from .columnhash import ColumnHasher

_NON_DIGITS = re.compile(r"\D+")
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Printable ASCII without quotes or angle brackets: on such a value fast_email only
# lower-cases, so Arrow can do it. Anything else takes the Python path.
_PLAIN = r"[\x21\x23-\x26\x28-\x3b\x3d\x3f\x41-\x7e]+"
_PLAIN_EMAIL = f"^{_PLAIN}@{_PLAIN}\\.{_PLAIN}$"
# What str.strip() removes from an ASCII string.
_ASCII_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f "
Positions = npt.NDArray[np.int64]


class IdentifierError(ValueError):
    """An identifier value that cannot be normalised; the message never quotes it."""


def normalize_email(value: str) -> str:
    """Return the canonical form of an email address (trimmed, lower-cased, IDNA domain).

    >>> normalize_email("  Mario.Rossi@Example.IT ")
    'mario.rossi@example.it'
    """
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise IdentifierError(f"not a valid email address: {_reason(exc)}") from None
    return checked.normalized.lower()


def _reason(exc: Exception) -> str:
    # email-validator's messages can quote the address; keep only the generic part.
    text = str(exc).split(":")[0]
    return re.sub(r"\S+@\S+", "the address", text).rstrip(".")


def fast_email(value: str) -> str | None:
    """Cheap email normaliser for dumps: trim, lower-case, plausible shape or ``None``."""
    value = value.strip().strip("<>\"'").lower()
    if value.startswith("mailto:"):
        value = value[7:]
    return value if _EMAIL_SHAPE.match(value) else None


def fast_emails(values: pa.Array) -> tuple[Positions, pa.Array]:
    """:func:`fast_email` over a column: the rows holding an address and their forms.

    Plain ASCII values are lower-cased and shape-checked by Arrow; the rest (quotes,
    spaces, ``mailto:``, non-ASCII) go through :func:`fast_email` one by one, so the
    result is the same as calling it on every value.
    """
    values = _strings(values)
    # One pass finds plain values already shaped like an address; on those fast_email
    # only lower-cases. Every other non-empty value takes the Python path.
    quick = _mask(pc.match_substring_regex(values, _PLAIN_EMAIL))
    lowered = pc.ascii_lower(values)
    quick &= ~_mask(pc.starts_with(lowered, "mailto:"))
    fast_pos = np.flatnonzero(quick)
    present = _mask(pc.greater(pc.binary_length(values), 0))
    slow_pos = np.flatnonzero(present & ~quick)
    found = lowered.take(pa.array(fast_pos, pa.int64()))
    if not slow_pos.size:
        return fast_pos.astype(np.int64), found
    slow = values.take(pa.array(slow_pos, pa.int64())).to_pylist()
    keep, forms = [], []
    for pos, value in zip(slow_pos.tolist(), slow, strict=True):
        email = fast_email(value)
        if email:
            keep.append(pos)
            forms.append(email)
    positions = np.concatenate([fast_pos, np.asarray(keep, dtype=np.int64)]).astype(np.int64)
    return positions, pa.concat_arrays([found, pa.array(forms, pa.string())])


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if values.type == pa.string() else values.cast(pa.string())


def normalize_phone(value: str, region: str | None) -> str:
    """Return a phone number in E.164, parsing national forms in ``region``.

    >>> normalize_phone("347 123 4567", "IT")
    '+393471234567'
    """
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise IdentifierError("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise IdentifierError("not a possible phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class _Region:
    code: int
    trunk_prefix: str
    lengths: frozenset[int]


class PhoneCandidates:
    """Turn a phone string from a dump into the E.164 strings it may denote.

    ``regions`` are the countries whose national formats to try (those of the customers).
    """

    def __init__(self, regions: Iterable[str]) -> None:
        self._regions: list[_Region] = []
        for region in sorted({r.upper() for r in regions if r}):
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if meta is None or meta.country_code is None:
                continue
            lengths = frozenset(meta.general_desc.possible_length or ())
            self._regions.append(_Region(meta.country_code, meta.national_prefix or "", lengths))
        self._codes = {str(r.code) for r in self._regions}

    def __call__(self, value: str) -> list[str]:
        """Return candidate E.164 forms of ``value`` (empty when it has too few digits)."""
        text = value.strip()
        digits = _NON_DIGITS.sub("", text)
        if len(digits) < 6 or len(digits) > 17:
            return []
        if text.startswith("+"):
            return ["+" + digits]
        if digits.startswith("00"):
            return ["+" + digits[2:]]
        out: list[str] = []
        for region in self._regions:
            national = digits
            if region.trunk_prefix and national.startswith(region.trunk_prefix):
                national = national[len(region.trunk_prefix) :]
            # Import keeps only possible numbers, so an impossible length cannot match.
            if not region.lengths or len(national) in region.lengths:
                out.append(f"+{region.code}{national}")
        # A country code written without "+" or "00" ("39 347 …").
        if len(digits) >= 10 and any(digits.startswith(c) for c in self._codes):
            out.append("+" + digits)
        return out

    def many(self, values: pa.Array) -> tuple[Positions, pa.Array]:
        """Candidates of a whole column: row positions (repeated) and E.164 forms.

        The same candidates as calling the object on each value, in another order:
        ASCII values are handled by Arrow, the rest one by one in Python.
        """
        values = _strings(values)
        present = pc.fill_null(pc.greater(pc.binary_length(values), 0), False)
        ascii_ = pc.fill_null(pc.string_is_ascii(values), False)
        digits = pc.replace_substring_regex(values, r"[^0-9]+", "")
        width = pc.fill_null(pc.binary_length(digits), 0).to_numpy(zero_copy_only=False)
        fast = pc.and_(present, ascii_).to_numpy(zero_copy_only=False)
        fast &= (width >= 6) & (width <= 17)
        plus = _mask(pc.match_substring_regex(values, f"^[{_ASCII_SPACE}]*\\+"))
        zeros = _mask(pc.starts_with(digits, "00")) & ~plus
        rest = fast & ~plus & ~zeros
        parts: list[tuple[Positions, pa.Array]] = [
            _prefixed(digits, fast & plus, "+", 0),
            _prefixed(digits, fast & zeros, "+", 2),
        ]
        # National forms: only those rows, taken once, and each trunk prefix cut once
        # for all the countries that share it.
        rest_pos = np.flatnonzero(rest).astype(np.int64)
        if rest_pos.size:
            local = digits.take(pa.array(rest_pos, pa.int64()))
            local_width = width[rest_pos]
            cut: dict[str, tuple[pa.Array, npt.NDArray[np.int64]]] = {"": (local, local_width)}
            for region in self._regions:
                trunk = region.trunk_prefix
                if trunk not in cut:
                    has = _mask(pc.starts_with(local, trunk))
                    sliced = pc.utf8_slice_codeunits(local, len(trunk))
                    cut[trunk] = (
                        pc.if_else(pa.array(has), sliced, local),
                        local_width - np.where(has, len(trunk), 0),
                    )
                national, size = cut[trunk]
                ok = (
                    np.isin(size, sorted(region.lengths))
                    if region.lengths
                    else np.ones(size.size, dtype=bool)
                )
                pos, forms = _prefixed(national, ok, f"+{region.code}", 0)
                parts.append((rest_pos[pos], forms))
            if self._codes:
                coded = np.zeros(rest_pos.size, dtype=bool)
                for code in self._codes:
                    coded |= _mask(pc.starts_with(local, code))
                pos, forms = _prefixed(local, coded & (local_width >= 10), "+", 0)
                parts.append((rest_pos[pos], forms))
        slow_pos = np.flatnonzero(
            pc.and_(present, pc.invert(ascii_)).to_numpy(zero_copy_only=False)
        )
        if slow_pos.size:
            keep, forms = [], []
            for pos, value in zip(
                slow_pos.tolist(), values.take(pa.array(slow_pos)).to_pylist(), strict=True
            ):
                for form in self(value):
                    keep.append(pos)
                    forms.append(form)
            parts.append((np.asarray(keep, dtype=np.int64), pa.array(forms, pa.string())))
        positions = np.concatenate([p for p, _ in parts]).astype(np.int64)
        return positions, pa.concat_arrays([f for _, f in parts])


def _mask(values: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _prefixed(
    digits: pa.Array, rows: npt.NDArray[np.bool_], prefix: str, skip: int
) -> tuple[Positions, pa.Array]:
    """``prefix`` + ``digits[skip:]`` for the selected rows."""
    positions = np.flatnonzero(rows).astype(np.int64)
    picked = digits.take(pa.array(positions, pa.int64()))
    if skip:
        picked = pc.utf8_slice_codeunits(picked, skip)
    joined = pc.binary_join_element_wise(pa.scalar(prefix), picked, "")
    return positions, joined.cast(pa.string())


class Pseudonymizer:
    """Keyed pseudonyms: HMAC-SHA256 of a normalised identifier under the workspace key.

    The kind is part of the message, so an email and a phone with the same text never
    collide, and without the key a pseudonym cannot be tested against a guess.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("pseudonym key must be at least 32 bytes")
        self._key = key
        # HMAC = H((K ^ opad) || H((K ^ ipad) || m)); the keyed prefixes are hashed once
        # and copied per value, which is what makes hashing millions of values cheap.
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._pads = (bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block))
        self._inner = hashlib.sha256(self._pads[0])
        self._outer = hashlib.sha256(self._pads[1])
        self._columns: ColumnHasher | None = None

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"

    def digest(self, kind: str, value: str) -> bytes:
        """Return the 32-byte pseudonym of a normalised ``value`` of ``kind``."""
        return hmac.digest(self._key, f"{kind}\x1f{value}".encode(), hashlib.sha256)

    def accelerate(self) -> bool:
        """Hash whole columns with DataFusion in this process from now on, where it can.

        For processes that do nothing but match (see :mod:`canarino.columnhash`); True
        when the faster path is in use.
        """
        from .columnhash import ColumnHasher

        self._columns = ColumnHasher.start(*self._pads)
        return self._columns is not None

    def digest_array(self, kind: str, values: pa.Array) -> npt.NDArray[np.uint8]:
        """Pseudonyms of a column as an ``(n, 32)`` array; each distinct value hashed once."""
        encoded = pc.dictionary_encode(_strings(values))
        # UTF-8 bytes straight from Arrow: no Python string is made or encoded per value.
        distinct = encoded.dictionary.cast(pa.binary())
        if self._columns is not None and self._columns.usable():
            raw = self._columns.digests(f"{kind}\x1f".encode(), distinct)
        else:
            digests = self._digest_bytes(kind, distinct.to_pylist())
            raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)
        return raw[encoded.indices.to_numpy(zero_copy_only=False)]

    def digests(self, kind: str, values: Sequence[str]) -> list[bytes]:
        """Return the pseudonyms of many values of one kind (same as :meth:`digest`)."""
        joined = self._digest_bytes(kind, [value.encode() for value in values])
        return [joined[i : i + 32] for i in range(0, len(joined), 32)]

    def _digest_bytes(self, kind: str, values: Sequence[bytes]) -> bytes:
        """The pseudonyms of UTF-8 ``values``, concatenated."""
        inner = self._inner.copy()
        inner.update(f"{kind}\x1f".encode())
        outer = self._outer
        out = bytearray()
        for value in values:
            i = inner.copy()
            i.update(value)
            o = outer.copy()
            o.update(i.digest())
            out += o.digest()
        return bytes(out)


def contacts_by_pseudonym(
    ps: Pseudonymizer, kind: str, values: Iterable[str]
) -> dict[bytes, list[str]]:
    """Each pseudonym of ``values`` to the values, as given, that have it.

    ``kind`` is "email" or "phone" (numbers in international form); values that cannot
    be read as one are left out.
    """
    grouped: dict[bytes, list[str]] = {}
    for value in values:
        try:
            normal = normalize_email(value) if kind == "email" else normalize_phone(value, None)
            grouped.setdefault(ps.digest(kind, normal), []).append(value)
        except IdentifierError:
            continue
    return grouped


@cache
def _country_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for lang in ("en", "it", "fr", "de", "es"):
        for code, name in Locale(lang).territories.items():
            if len(code) == 2 and code.isalpha():
                names.setdefault(_fold(name), code)
    for code in list(names.values()):
        names.setdefault(code.lower(), code)
    names.update({"uk": "GB", "usa": "US", "u s a": "US", "u s": "US", "ita": "IT"})
    return names


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def normalize_country(value: str) -> str | None:
    """Return the ISO 3166 alpha-2 code for a country code or name in five languages.

    >>> normalize_country("Italia"), normalize_country("de"), normalize_country("Atlantis")
    ('IT', 'DE', None)
    """
    return _country_names().get(_fold(value)) if value.strip() else None


def default_language(country: str | None) -> str:
    """The language to write to someone from ``country`` when they stated none."""
    if country:
        official = get_official_languages(country, de_facto=True)
        if official:
            return official[0]
    return "en"


def normalize_language(value: str) -> str | None:
    """Return a two-letter language code from ``it``, ``it_IT``, ``Italiano``, ``English``…."""
    text = value.strip().replace("-", "_")
    if not text:
        return None
    try:
        return Locale.parse(text).language
    except (ValueError, UnknownLocaleError):
        pass
    folded = _fold(text)
    for lang in ("en", "it", "fr", "de", "es"):
        for code, name in Locale(lang).languages.items():
            if len(code) == 2 and _fold(name) == folded:
                return code
    return None
