"""Recognise canaries in rows that a thief or a tool has damaged. Pure.

Exact pseudonym matching already survives case, spacing and phone-format changes. What
it cannot survive is a typo or a truncated value. A row whose e-mail sits on (or next
to) a monitored domain, or whose phone lies in a monitored range, can only be ours, so
such rows, and only such rows, are compared with the canaries in clear, in memory.

A damaged contact point is never enough on its own: the row must also carry the
canary's synthetic name. Real customers are never fuzzy-matched.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, Levenshtein

_DIGITS = re.compile(r"\D+")
EMAIL_CUTOFF = 85.0
DOMAIN_CUTOFF = 90.0
NAME_CUTOFF = 85.0


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).lower().split())


@dataclass(frozen=True)
class Candidate:
    """A damaged row that may be a canary: its contact values and the name it carries."""

    row: int
    email: str | None
    phone: str | None
    name: str


@dataclass(frozen=True)
class Recognition:
    """A canary recognised in a damaged row, and how."""

    row: int
    canary_id: int
    how: str


class Monitored:
    """The company's canary infrastructure: monitored mail domains and phone ranges."""

    def __init__(self, mail_domains: Sequence[str], phone_ranges: Sequence[str]) -> None:
        self.domains = [d.lower() for d in mail_domains]
        self.ranges = [_DIGITS.sub("", r) for r in phone_ranges]
        self._domain_cache: dict[str, str | None] = {}

    def domain(self, domain: str) -> str | None:
        """The monitored domain ``domain`` is, or is a damaged copy of."""
        domain = domain.lower().strip(". >")
        if domain not in self._domain_cache:
            found = None
            if domain in self.domains:
                found = domain
            elif self.domains:
                best = process.extractOne(domain, self.domains, scorer=fuzz.ratio)
                found = best[0] if best and best[1] >= DOMAIN_CUTOFF else None
            if len(self._domain_cache) < 100_000:  # dumps have few distinct domains
                self._domain_cache[domain] = found
            return found
        return self._domain_cache[domain]

    def phone_range(self, phone: str) -> str | None:
        """The monitored range a phone number falls in, if any."""
        digits = phone_digits(phone)
        return next((r for r in self.ranges if digits.startswith(r)), None)

    def points_at_us(self, email: str | None, phone: str | None) -> bool:
        """Whether a row's contact values point at our canary infrastructure."""
        if email and "@" in email and self.domain(email.rsplit("@", 1)[1]):
            return True
        return bool(phone and self.phone_range(phone))


def phone_digits(phone: str) -> str:
    """Digits of a phone number in international form without ``+`` or ``00``."""
    digits = _DIGITS.sub("", phone)
    return digits[2:] if digits.startswith("00") else digits


class CanaryRecognizer:
    """Fuzzy recognition of canaries on monitored domains and phone ranges."""

    def __init__(self, canaries: Mapping[int, Mapping[str, str]], monitored: Monitored) -> None:
        self.monitored = monitored
        self._names: dict[int, str] = {}
        self._locals: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self._phones: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for cid, fields in canaries.items():
            self._names[cid] = _fold(
                fields.get("full_name")
                or f"{fields.get('first_name', '')} {fields.get('last_name', '')}"
            )
            email = fields.get("email", "").lower()
            if "@" in email:
                local, domain = email.rsplit("@", 1)
                self._locals[domain].append((local, cid))
            phone = fields.get("phone", "")
            prefix = monitored.phone_range(phone) if phone else None
            if prefix:
                self._phones[prefix].append((phone_digits(phone), cid))

    def recognise(self, candidates: Iterable[Candidate]) -> list[Recognition]:
        """Canaries in damaged rows, each confirmed by the synthetic name on the row."""
        found: list[Recognition] = []
        for cand in candidates:
            name = _fold(cand.name)
            if not name:
                continue  # a damaged contact point alone is never enough
            for cid, how in self._contact_matches(cand):
                if fuzz.token_set_ratio(name, self._names.get(cid, "")) >= NAME_CUTOFF:
                    found.append(Recognition(cand.row, cid, how))
                    break
        return found

    def _contact_matches(self, cand: Candidate) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        if cand.email and "@" in cand.email:
            local, domain = cand.email.lower().strip().rsplit("@", 1)
            home = self.monitored.domain(domain)
            pool = self._locals.get(home or "", [])
            locals_ = [p[0] for p in pool]
            # Similar overall, or one typo away (a swap counts as one): short local
            # parts lose too much ratio to a single transposition.
            close = process.extract(
                local, locals_, scorer=fuzz.ratio, limit=3, score_cutoff=EMAIL_CUTOFF
            )
            typo = process.extract(local, locals_, scorer=OSA.distance, limit=3, score_cutoff=1)
            for _, _, pos in [*close, *typo]:
                if (pool[pos][1], "email~") not in out:
                    out.append((pool[pos][1], "email~"))
        if cand.phone:
            digits = phone_digits(cand.phone)
            prefix = self.monitored.phone_range(cand.phone)
            for number, cid in self._phones.get(prefix or "", []):
                # One wrong, missing or extra digit; or the last two digits cut off.
                if Levenshtein.distance(digits, number) <= 1 or (
                    len(digits) >= len(number) - 2 and number.startswith(digits)
                ):
                    out.append((cid, "phone~"))
        return out
