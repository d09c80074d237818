"""Scope: which customers and canaries a dump's rows are, and what of theirs it exposes.

Pure: the caller supplies the pseudonym index and record batches; nothing here touches
storage. Matching hashes normalised identifiers with the workspace key and looks the
pseudonyms up in sorted arrays, so a dump is never copied in plaintext anywhere.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .fields import BY_NAME, FIELD_NAMES, field_for_header
from .normalize import PhoneCandidates, Pseudonymizer, fast_emails
from .recognition import Candidate, Monitored

_EMAIL = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[a-zA-Z]{2,}\s*$")
_PHONE = re.compile(r"^\s*(?:\+|00)?[\d\s().\-/]{7,20}\s*$")
_DATE = re.compile(
    r"^\s*(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})(?:[ T][\d:.]+)?\s*$"
)
FIELD_BIT = {name: 1 << i for i, name in enumerate(FIELD_NAMES)}


def fields_of(mask: int) -> list[str]:
    """Field names whose bits are set in ``mask``, in canonical order."""
    return [name for name in FIELD_NAMES if mask & FIELD_BIT[name]]


class PseudonymIndex:
    """Sorted pseudonyms of every customer (owner > 0) and canary (owner < 0).

    Pseudonyms are uniformly spread, so the top bits of a pseudonym's first 8 bytes
    say where it sits in the sorted array: a table of bucket starts finds each probe in
    a step or two, without sorting the probes or a binary search over millions.
    """

    def __init__(self, digests: Sequence[bytes], owners: Sequence[int]) -> None:
        self._build(b"".join(digests), np.asarray(owners, dtype=np.int64))

    @classmethod
    def from_raw(cls, digests: bytes, owners: npt.NDArray[np.int64]) -> PseudonymIndex:
        """An index of concatenated 32-byte ``digests`` and their ``owners``."""
        index = cls.__new__(cls)
        index._build(digests, owners)
        return index

    @classmethod
    def from_sorted(
        cls, full: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64]
    ) -> PseudonymIndex:
        """An index of ``(n, 32)`` digests already in the order of :attr:`digests`."""
        index = cls.__new__(cls)
        if full.ndim != 2 or full.shape[1] != 32 or full.shape[0] != owners.size:
            raise ValueError("one owner is needed per 32-byte digest")
        keys = np.ascontiguousarray(full[:, :8]).view(">u8").ravel().astype(np.uint64)
        if keys.size > 1 and bool(np.any(keys[1:] < keys[:-1])):
            raise ValueError("digests are not sorted")
        index._set(keys, full, owners)
        return index

    @property
    def digests(self) -> npt.NDArray[np.uint8]:
        """The ``(n, 32)`` digests, sorted by their first 8 bytes."""
        return self._full

    @property
    def owners(self) -> npt.NDArray[np.int64]:
        """The owner of each row of :attr:`digests`."""
        return self._owners

    def with_added(self, digests: bytes, owners: npt.NDArray[np.int64]) -> PseudonymIndex:
        """A new index with these pseudonyms added to this one's."""
        if not digests:
            return self
        return PseudonymIndex.from_raw(
            self._full.tobytes() + digests, np.concatenate([self._owners, owners])
        )

    def _build(self, digests: bytes, owners: npt.NDArray[np.int64]) -> None:
        raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)
        if raw.shape[0] != owners.size:
            raise ValueError("one owner is needed per 32-byte digest")
        keys = raw[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        self._set(keys[order], raw[order], owners[order])

    def _set(
        self,
        keys: npt.NDArray[np.uint64],
        full: npt.NDArray[np.uint8],
        owners: npt.NDArray[np.int64],
    ) -> None:
        self._keys = keys
        self._full = full
        self._owners = owners
        # About one pseudonym per bucket; at most 2**24 buckets (128 MiB of starts).
        self._bits = min(24, max(1, int(self._keys.size).bit_length()))
        self._shift = np.uint64(64 - self._bits)
        counts = np.bincount(
            (self._keys >> self._shift).astype(np.int64), minlength=1 << self._bits
        )
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._keys.size)

    def lookup(self, digests: Sequence[bytes]) -> npt.NDArray[np.int64]:
        """Owner of each digest, 0 where unknown (first owner when several share one)."""
        if not digests:
            return np.zeros(0, dtype=np.int64)
        return self.lookup_raw(np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32))

    def lookup_raw(self, raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """:meth:`lookup` for digests given as the rows of an ``(n, 32)`` array."""
        out = np.zeros(raw.shape[0], dtype=np.int64)
        if not raw.shape[0] or not len(self):
            return out
        keys = np.ascontiguousarray(raw[:, :8]).view(">u8").ravel().astype(np.uint64)
        bucket = (keys >> self._shift).astype(np.int64)
        pos = self._starts[bucket]
        end = self._starts[bucket + 1]
        # Walk each probe's bucket (sorted by key) until its key is passed. An equal
        # 8-byte key is confirmed on the whole digest; two digests sharing a key are
        # both found.
        live = np.flatnonzero(pos < end)
        while live.size:
            at = pos[live]
            here = self._keys[at]
            want = keys[live]
            equal = np.flatnonzero(here == want)
            same = np.all(self._full[at[equal]] == raw[live[equal]], axis=1)
            out[live[equal[same]]] = self._owners[at[equal[same]]]
            more = here <= want
            more[equal[same]] = False
            go_on = live[more]
            pos[go_on] += 1
            live = go_on[pos[go_on] < end[go_on]]
        return out


def classify_columns(
    headers: Sequence[str] | None, sample: pa.RecordBatch, *, min_share: float = 0.5
) -> dict[int, str]:
    """Map column positions to fields by header, then by content for email and phone.

    Content wins for email and phone: a column named "telefono" full of addresses is an
    email column, and a column named "telefono" full of dates is not a phone column.
    Each field goes to one column: first to a column whose header and content agree,
    then to one that only looks right, then to one that is only named right.
    """
    claims: list[tuple[int, int, str]] = []  # (strength, column, field)
    for i in range(sample.num_columns):
        values = [v for v in sample.column(i).to_pylist()[:500] if v and v.strip()]
        by_content = None
        if values:
            need = min_share * len(values)
            if sum(bool(_EMAIL.match(v)) for v in values) >= need:
                by_content = "email"
            elif sum(_looks_like_phone(v) for v in values) >= need:
                by_content = "phone"
        by_header = None
        if headers and i < len(headers):
            # Nested JSON arrives as dotted paths: "customer.contact.email".
            by_header = field_for_header(headers[i]) or field_for_header(
                headers[i].rsplit(".", 1)[-1]
            )
        if by_header in ("email", "phone") and by_content != by_header:
            by_header = None
        if by_content and by_content == by_header:
            claims.append((0, i, by_content))
        elif by_content:
            claims.append((1, i, by_content))
        elif by_header:
            claims.append((2, i, by_header))
    out: dict[int, str] = {}
    for _, i, name in sorted(claims):
        if name not in out.values():
            out[i] = name
    return dict(sorted(out.items()))


def _looks_like_phone(value: str) -> bool:
    return bool(_PHONE.match(value)) and not _DATE.match(value) and _digits(value) >= 7


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


@dataclass
class BatchMatch:
    """Rows of one batch that matched, with the owner and the fields present.

    ``candidates`` are unmatched rows whose contact values point at the monitored
    domains or ranges: possibly damaged canaries, for :mod:`canarino.recognition`.
    """

    owners: npt.NDArray[np.int64]
    masks: npt.NDArray[np.int64]
    kinds: npt.NDArray[np.int64]
    candidates: list[Candidate] = field(default_factory=list)


class Matcher:
    """Matches record batches against a :class:`PseudonymIndex`."""

    def __init__(
        self,
        index: PseudonymIndex,
        pseudonyms: Pseudonymizer,
        phones: PhoneCandidates,
        columns: dict[int, str],
        monitored: Monitored | None = None,
    ) -> None:
        self.index = index
        self.monitored = monitored
        self.name_cols = [
            i for i, f in columns.items() if f in ("full_name", "first_name", "last_name")
        ]
        self.pseudonyms = pseudonyms
        self.phones = phones
        self.columns = columns
        self.email_cols = [i for i, f in columns.items() if f == "email"]
        self.phone_cols = [i for i, f in columns.items() if f == "phone"]

    def field_masks(self, batch: pa.RecordBatch) -> npt.NDArray[np.int64]:
        """Bit mask of the known fields each row has a value for."""
        masks = np.zeros(batch.num_rows, dtype=np.int64)
        for i, name in self.columns.items():
            present = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(batch.column(i))), 0)
            masks |= np.where(present.to_numpy(zero_copy_only=False), FIELD_BIT[name], 0)
        return masks

    def match(self, batch: pa.RecordBatch, first_row: int = 0) -> BatchMatch:
        """Find the rows of ``batch`` that are customers or canaries.

        ``first_row`` numbers the batch's rows within the whole file, for candidates.
        Identifiers are normalised column-wise and each distinct form is hashed once.
        """
        rows: list[npt.NDArray[np.int64]] = []
        owners: list[npt.NDArray[np.int64]] = []
        kinds: list[npt.NDArray[np.int64]] = []
        in_range: npt.NDArray[np.bool_] | None = None
        for col in self.email_cols:
            positions, forms = fast_emails(batch.column(col))
            self._lookup("email", positions, forms, rows, owners, kinds)
        for n, col in enumerate(self.phone_cols):
            positions, forms = self.phones.many(batch.column(col))
            self._lookup("phone", positions, forms, rows, owners, kinds)
            if n == 0 and self.monitored is not None:
                in_range = self._in_range(positions, forms, batch.num_rows)
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return BatchMatch(empty, empty, empty)
        row_idx = np.concatenate(rows)
        masks = self.field_masks(batch)[row_idx] if row_idx.size else row_idx
        candidates = self._candidates(batch, row_idx, in_range, first_row)
        return BatchMatch(np.concatenate(owners), masks, np.concatenate(kinds), candidates)

    def _lookup(
        self,
        kind: str,
        positions: npt.NDArray[np.int64],
        forms: pa.Array,
        rows: list[npt.NDArray[np.int64]],
        owners: list[npt.NDArray[np.int64]],
        kinds: list[npt.NDArray[np.int64]],
    ) -> None:
        found = self.index.lookup_raw(self.pseudonyms.digest_array(kind, forms))
        hit = found != 0
        rows.append(positions[hit])
        owners.append(found[hit])
        kinds.append(np.full(int(hit.sum()), FIELD_BIT[kind], dtype=np.int64))

    def _in_range(
        self, positions: npt.NDArray[np.int64], forms: pa.Array, size: int
    ) -> npt.NDArray[np.bool_]:
        """Rows with a phone candidate in a monitored range."""
        assert self.monitored is not None
        out = np.zeros(size, dtype=bool)
        if not self.monitored.ranges or not len(forms):
            return out
        # Candidates are E.164 ("+…"); a prefix test on the raw form needs no regex.
        hit = np.zeros(len(forms), dtype=bool)
        for prefix in self.monitored.ranges:
            for written in (f"+{prefix}", prefix, f"00{prefix}", f"+00{prefix}"):
                hit |= _mask(pc.starts_with(forms, written))
        out[positions[hit]] = True
        return out

    def _points_at_us(self, emails: pa.Array) -> npt.NDArray[np.bool_]:
        """Rows whose e-mail value is on (or next to) a monitored domain."""
        assert self.monitored is not None
        domains = pc.struct_field(pc.extract_regex(emails, r"@(?P<d>[^@]*)$"), [0])
        ours = [d for d in pc.unique(domains).drop_null().to_pylist() if self.monitored.domain(d)]
        if not ours:
            return np.zeros(len(emails), dtype=bool)
        found = pc.is_in(domains, value_set=pa.array(ours, pa.string()))
        return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)

    def _candidates(
        self,
        batch: pa.RecordBatch,
        matched: npt.NDArray[np.int64],
        in_range: npt.NDArray[np.bool_] | None,
        first_row: int,
    ) -> list[Candidate]:
        if self.monitored is None:
            return []
        # Arrow finds the few rows that point at us; only those are read in Python.
        near = np.zeros(batch.num_rows, dtype=bool)
        if self.email_cols:
            near |= self._points_at_us(batch.column(self.email_cols[0]))
        if in_range is not None:
            near |= in_range
        near[matched] = False
        picks = np.flatnonzero(near)
        if not picks.size:
            return []
        take = pa.array(picks, pa.int64())
        emails = batch.column(self.email_cols[0]).take(take).to_pylist() if self.email_cols else []
        phones = batch.column(self.phone_cols[0]).take(take).to_pylist() if self.phone_cols else []
        names = [batch.column(i).take(take).to_pylist() for i in self.name_cols]
        out: list[Candidate] = []
        for k, pos in enumerate(picks.tolist()):
            email = emails[k] if emails else None
            phone = None
            if phones and phones[k]:
                forms = [f for f in self.phones(phones[k]) if self.monitored.phone_range(f)]
                phone = forms[0] if forms else None
            if self.monitored.points_at_us(email, phone):
                name = " ".join(col[k] or "" for col in names)
                out.append(Candidate(first_row + pos, email, phone, name))
        return out


class Exposure:
    """Running per-owner OR of exposed fields and of identifier kinds matched.

    Batches are folded in as they come, so memory follows the number of distinct
    people found, not the size of the dump.
    """

    def __init__(self, compact_every: int = 1 << 20) -> None:
        self._parts: list[BatchMatch] = []
        self._pending = 0
        self._compact_every = compact_every

    def add(self, match: BatchMatch) -> None:
        """Fold in the matches of one batch."""
        if not match.owners.size:
            return
        self._parts.append(BatchMatch(match.owners, match.masks, match.kinds))
        self._pending += int(match.owners.size)
        if self._pending >= self._compact_every:
            self._compact()

    def merge(self, other: Exposure) -> None:
        """Fold in everything another :class:`Exposure` has gathered."""
        for part in other._parts:
            self.add(part)

    def _compact(self) -> None:
        parts = self._parts
        owners = np.concatenate([m.owners for m in parts])
        masks = np.concatenate([m.masks for m in parts])
        kinds = np.concatenate([m.kinds for m in parts])
        order = np.argsort(owners, kind="stable")
        owners, masks, kinds = owners[order], masks[order], kinds[order]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        merged = BatchMatch(
            owners[starts],
            np.bitwise_or.reduceat(masks, starts),
            np.bitwise_or.reduceat(kinds, starts),
        )
        self._parts = [merged]
        self._pending = int(merged.owners.size)
        # Keep compaction amortised when most rows are distinct people.
        self._compact_every = max(self._compact_every, 2 * self._pending)

    def arrays(self) -> BatchMatch:
        """Every owner once, ascending, with its OR of field masks and of identifier kinds."""
        if not self._parts:
            empty = np.zeros(0, dtype=np.int64)
            return BatchMatch(empty, empty, empty)
        self._compact()
        return self._parts[0]

    def result(self) -> tuple[dict[int, int], dict[int, int]]:
        """Per owner: the OR of exposed-field masks, and the OR of identifier kinds."""
        if not self._parts:
            return {}, {}
        merged = self.arrays()
        owners = merged.owners.tolist()
        exposed = dict(zip(owners, merged.masks.tolist(), strict=True))
        matched_by = dict(zip(owners, merged.kinds.tolist(), strict=True))
        return exposed, matched_by


def merge(matches: Iterable[BatchMatch]) -> tuple[dict[int, int], dict[int, int]]:
    """Per owner: the OR of exposed-field masks, and the OR of identifier kinds matched."""
    exposure = Exposure()
    for match in matches:
        exposure.add(match)
    return exposure.result()


@dataclass
class Scope:
    """Who a leak exposes and with what: distinct real people, per field and place."""

    people: int = 0
    by_field: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)
    by_country: dict[str, int] = field(default_factory=dict)
    by_region: dict[str, int] = field(default_factory=dict)
    # People per exact set of exposed fields ("email,phone"): what each person lost.
    by_exposure: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "people": self.people,
            "by_field": self.by_field,
            "by_category": self.by_category,
            "by_country": self.by_country,
            "by_region": self.by_region,
            "by_exposure": self.by_exposure,
        }


@dataclass(frozen=True)
class PersonScope:
    """What a leak exposes of one person: the fields found and their data categories."""

    customer_id: int
    country: str | None
    region: str | None
    fields: tuple[str, ...]
    categories: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "customer_id": self.customer_id,
            "country": self.country,
            "region": self.region,
            "fields": list(self.fields),
            "categories": list(self.categories),
        }


def person_scope(
    customer_id: int, country: str | None, region: str | None, fields_text: str
) -> PersonScope:
    """The :class:`PersonScope` of one person from the stored ``"f1,f2"`` field list."""
    order = {n: i for i, n in enumerate(FIELD_NAMES)}
    names = sorted({f for f in fields_text.split(",") if f in BY_NAME}, key=order.__getitem__)
    categories: list[str] = []
    for name in names:
        if BY_NAME[name].category not in categories:
            categories.append(BY_NAME[name].category)
    return PersonScope(customer_id, country, region, tuple(names), tuple(categories))


def build_scope(groups: Iterable[tuple[str | None, str | None, str, int]]) -> Scope:
    """Sum ``(country, region, "f1,f2", people)`` groups into a :class:`Scope`."""
    fields_c: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    countries: Counter[str] = Counter()
    regions: Counter[str] = Counter()
    exposures: Counter[str] = Counter()
    people = 0
    for country, region, fields_text, count in groups:
        people += count
        names = [f for f in fields_text.split(",") if f]
        exposures[",".join(person_scope(0, None, None, fields_text).fields)] += count
        for name in names:
            fields_c[name] += count
        for cat in {BY_NAME[n].category for n in names}:
            cats[cat] += count
        countries[country or "??"] += count
        regions[f"{country or '??'}/{region or '?'}"] += count
    order = {n: i for i, n in enumerate(FIELD_NAMES)}
    return Scope(
        people,
        dict(sorted(fields_c.items(), key=lambda kv: order[kv[0]])),
        dict(cats.most_common()),
        dict(countries.most_common()),
        dict(regions.most_common()),
        dict(exposures.most_common()),
    )


def _mask(values: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)
