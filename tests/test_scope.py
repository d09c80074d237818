from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from canarino.normalize import PhoneCandidates, Pseudonymizer, fast_email
from canarino.recognition import Candidate, Monitored
from canarino.scope import (
    FIELD_BIT,
    BatchMatch,
    Exposure,
    Matcher,
    PseudonymIndex,
    build_scope,
    classify_columns,
    fields_of,
    merge,
    person_scope,
)
from canarino.testing import make_customers

from .conftest import MAIL_DOMAINS, PHONE_RANGES

KEY = Pseudonymizer(b"k" * 32)


def _index() -> PseudonymIndex:
    entries = [
        (KEY.digest("email", "anna@posta.it"), 1),
        (KEY.digest("phone", "+393471234567"), 1),
        (KEY.digest("email", "bruno@posta.it"), 2),
        (KEY.digest("email", "watch@canary.it"), -7),
    ]
    return PseudonymIndex([d for d, _ in entries], [o for _, o in entries])


def test_index_finds_exact_digests_only() -> None:
    index = _index()
    found = index.lookup([KEY.digest("email", "bruno@posta.it"), KEY.digest("email", "x@y.it")])
    assert found.tolist() == [2, 0]
    assert len(index) == 4
    assert PseudonymIndex([], []).lookup([KEY.digest("email", "a@b.it")]).tolist() == [0]


def test_classify_columns_by_header_and_by_content() -> None:
    batch = pa.record_batch(
        {
            "c0": ["Anna", "Bruno"],
            "c1": ["anna@posta.it", "BRUNO@posta.it"],
            "c2": ["347 123 4567", "+39 333 1234567"],
            "c3": ["x", "y"],
        }
    )
    assert classify_columns(["nome", "telefono", "mail", "note"], batch) == {
        0: "first_name",
        1: "email",
        2: "phone",
    }
    assert classify_columns(None, batch) == {1: "email", 2: "phone"}


def test_matcher_reports_owner_fields_and_kind() -> None:
    batch = pa.record_batch(
        {
            "c0": ["Anna", "", "Zed", "W"],
            "c1": [" ANNA@posta.it", "bruno@posta.it", "zed@else.it", "watch@canary.it"],
            "c2": ["347 123 4567", "", "", ""],
        }
    )
    matcher = Matcher(
        _index(), KEY, PhoneCandidates(["IT"]), {0: "first_name", 1: "email", 2: "phone"}
    )
    exposed, kinds = merge([matcher.match(batch)])
    assert set(exposed) == {1, 2, -7}
    assert fields_of(exposed[1]) == ["first_name", "email", "phone"]
    assert fields_of(exposed[2]) == ["email"]
    assert kinds[1] == FIELD_BIT["email"] | FIELD_BIT["phone"]


def test_merge_of_nothing_is_empty() -> None:
    assert merge([]) == ({}, {})


def test_build_scope_counts_people_fields_categories_and_places() -> None:
    scope = build_scope(
        [("IT", "MI", "email,first_name", 3), ("IT", "RM", "phone", 2), ("US", None, "email", 1)]
    )
    assert scope.people == 6
    assert scope.by_field == {"first_name": 3, "email": 4, "phone": 2}
    assert scope.by_category == {"contact": 6, "identity": 3}
    assert scope.by_country == {"IT": 5, "US": 1}
    assert scope.by_region["US/?"] == 1


def test_field_bits_are_distinct() -> None:
    bits = list(FIELD_BIT.values())
    assert len(set(bits)) == len(bits) and all(np.log2(b).is_integer() for b in bits)


def test_dates_are_not_taken_for_phone_numbers() -> None:
    batch = pa.record_batch(
        {
            "c0": ["2026-03-02", "2025-12-31"],
            "c1": ["347 123 4567", "+39 333 1234567"],
            "c2": ["02/03/2026", "31.12.2025"],
        }
    )
    assert classify_columns(["Created", "Mobile", "Data"], batch) == {1: "phone"}
    assert classify_columns(None, batch) == {1: "phone"}


def test_a_column_named_and_shaped_like_a_phone_wins_over_one_only_shaped_like_it() -> None:
    batch = pa.record_batch(
        {"c0": ["1234567890", "2345678901"], "c1": ["347 123 4567", "333 1234567"]}
    )
    assert classify_columns(["Order number", "Cellulare"], batch) == {1: "phone"}


def _careful_match(
    matcher: Matcher, batch: pa.RecordBatch
) -> tuple[dict[int, int], dict[int, int], list[Candidate]]:
    """The row-by-row path: normalise, hash and look up one value at a time."""
    masks = matcher.field_masks(batch)
    exposed: dict[int, int] = {}
    kinds: dict[int, int] = {}
    matched: set[int] = set()
    for kind, cols in (("email", matcher.email_cols), ("phone", matcher.phone_cols)):
        for col in cols:
            for pos, value in enumerate(batch.column(col).to_pylist()):
                forms = [] if not value else matcher.phones(value) if kind == "phone" else []
                if kind == "email" and value and (email := fast_email(value)):
                    forms = [email]
                for form in forms:
                    owner = int(matcher.index.lookup([KEY.digest(kind, form)])[0])
                    if owner:
                        matched.add(pos)
                        exposed[owner] = exposed.get(owner, 0) | int(masks[pos])
                        kinds[owner] = kinds.get(owner, 0) | FIELD_BIT[kind]
    monitored = matcher.monitored
    assert monitored is not None
    emails = batch.column(matcher.email_cols[0]).to_pylist()
    phones = batch.column(matcher.phone_cols[0]).to_pylist()
    candidates = []
    for pos in range(batch.num_rows):
        if pos in matched:
            continue
        forms = [f for f in matcher.phones(phones[pos] or "") if monitored.phone_range(f)]
        phone = forms[0] if phones[pos] and forms else None
        if monitored.points_at_us(emails[pos], phone):
            name = " ".join(batch.column(i)[pos].as_py() or "" for i in matcher.name_cols)
            candidates.append(Candidate(pos, emails[pos], phone, name))
    return exposed, kinds, candidates


def _messy(value: str, k: int) -> str:
    return [
        value,
        value.upper(),
        f"  {value} ",
        f"<{value}>",
        f"mailto:{value}",
        f'"{value}"',
        value.replace("a", "à", 1),
        value + "\x1c",
    ][k % 8]


def _messy_phone(value: str, k: int) -> str:
    digits = value.lstrip("+")
    national = digits[2:] if digits.startswith("39") else digits[1:]
    return [
        value,
        f"00{digits}",
        f"{national[:3]} {national[3:6]} {national[6:]}",
        f" ({national[:3]}) {national[3:]}",
        f"\x0b{value}",
        national,
        "٣" + national[1:],
        f"{digits[:2]} {national}",
    ][k % 8]


def test_column_matching_equals_the_row_by_row_path_on_a_messy_dump() -> None:
    people = make_customers(80, seed=21)
    entries = [
        (KEY.digest(kind, p[kind]), owner)
        for owner, p in enumerate(people, 1)
        for kind in ("email", "phone")
    ]
    entries.append((KEY.digest("email", "watch@canary-mail.it"), -3))
    index = PseudonymIndex([d for d, _ in entries], [o for _, o in entries])
    rows = [
        (p["first_name"], _messy(p["email"], k), _messy_phone(p["phone"], k * 3 + 1))
        for k, p in enumerate(people)
    ]
    strangers = make_customers(20, seed=22)
    rows += [(p["first_name"], p["email"], p["phone"]) for p in strangers]
    rows += [
        ("Wanda", "WATCH@canary-mail.it", ""),
        ("Wanda", "wacth@canary-mail.it", ""),  # damaged: a candidate, not a match
        ("Wanda", "x@canary-mial.it", "+39 347 555 1234"),
        ("Other", "", "347 555 9999"),
        ("", None, None),
    ]
    batch = pa.record_batch(
        {name: [r[i] for r in rows] for i, name in enumerate(("c0", "c1", "c2"))},
        schema=pa.schema([(f"c{i}", pa.string()) for i in range(3)]),
    )
    matcher = Matcher(
        index,
        KEY,
        PhoneCandidates(["IT", "FR", "DE", "ES", "US"]),
        {0: "first_name", 1: "email", 2: "phone"},
        Monitored(MAIL_DOMAINS, PHONE_RANGES),
    )
    found = matcher.match(batch)
    exposed, kinds = merge([found])
    careful = _careful_match(matcher, batch)
    assert (exposed, kinds) == careful[:2]
    assert found.candidates == careful[2]
    assert len(exposed) > 60 and -3 in exposed and len(found.candidates) == 3


def test_exposure_folds_batches_as_one_merge_does() -> None:
    rng = np.random.default_rng(3)
    parts = [
        BatchMatch(
            rng.integers(-5, 50, size=200).astype(np.int64),
            rng.integers(0, 1 << 10, size=200).astype(np.int64),
            rng.choice([FIELD_BIT["email"], FIELD_BIT["phone"]], size=200).astype(np.int64),
        )
        for _ in range(12)
    ]
    small = Exposure(compact_every=64)  # compacts after nearly every batch
    for part in parts:
        small.add(part)
    other = Exposure()
    other.merge(small)
    assert other.result() == small.result() == merge(parts)
    owners = np.concatenate([p.owners for p in parts])
    assert set(small.result()[0]) == set(owners.tolist())
    assert Exposure().result() == ({}, {})


def test_lookup_of_raw_digests_equals_lookup_of_bytes() -> None:
    index = _index()
    digests = [KEY.digest("email", v) for v in ("bruno@posta.it", "x@y.it", "anna@posta.it")]
    raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    assert index.lookup_raw(raw).tolist() == index.lookup(digests).tolist() == [2, 0, 1]
    # Same first 8 bytes, different digest: not a match.
    forged = bytearray(digests[0])
    forged[31] ^= 1
    assert index.lookup([bytes(forged)]).tolist() == [0]


def test_person_scope_lists_fields_in_canonical_order_with_their_categories() -> None:
    person = person_scope(7, "IT", "MI", "password,email,first_name,unknown,email")
    assert person.fields == ("first_name", "email", "password")
    assert person.categories == ("identity", "contact", "credentials")
    assert person.as_dict()["fields"] == ["first_name", "email", "password"]
    assert person_scope(8, None, None, "").fields == ()


def test_scope_counts_people_per_exact_set_of_exposed_fields() -> None:
    scope = build_scope(
        [
            ("IT", "MI", "email,first_name", 3),
            ("IT", "RM", "first_name,email", 2),
            ("US", None, "phone", 1),
        ]
    )
    assert scope.by_exposure == {"first_name,email": 5, "phone": 1}
    assert scope.as_dict()["by_exposure"] == scope.by_exposure


def test_lookup_finds_every_digest_of_a_large_index_and_nothing_else() -> None:
    rng = np.random.default_rng(11)
    raw = rng.integers(0, 256, size=(50_000, 32), dtype=np.uint8)
    # Crowded buckets: many digests sharing their top bits, some their whole 8-byte key.
    raw[:300, :3] = 7
    raw[300:320, :8] = 9
    owners = np.arange(1, raw.shape[0] + 1, dtype=np.int64)
    index = PseudonymIndex.from_raw(raw.tobytes(), owners)
    probes = np.concatenate([raw[::-1], rng.integers(0, 256, size=(2_000, 32), dtype=np.uint8)])
    found = index.lookup_raw(probes)
    assert found[: raw.shape[0]].tolist() == owners[::-1].tolist()
    assert not found[raw.shape[0] :].any()
    # A digest whose 8-byte key is in the index but whose tail is not: no owner.
    stranger = raw[305].copy()
    stranger[20] ^= 0xFF
    assert index.lookup_raw(stranger[None, :]).tolist() == [0]
    assert PseudonymIndex.from_raw(b"", np.zeros(0, np.int64)).lookup_raw(raw[:2]).tolist() == [
        0,
        0,
    ]


def test_an_index_needs_one_owner_per_digest() -> None:
    with pytest.raises(ValueError, match="one owner"):
        PseudonymIndex.from_raw(bytes(64), np.ones(3, dtype=np.int64))
