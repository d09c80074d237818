from __future__ import annotations

import numpy as np
import pyarrow as pa

from canarino.normalize import PhoneCandidates, Pseudonymizer
from canarino.scope import (
    FIELD_BIT,
    Matcher,
    PseudonymIndex,
    build_scope,
    classify_columns,
    fields_of,
    merge,
)

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
