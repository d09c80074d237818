from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from canarino import columnhash
from canarino.columnhash import ColumnHasher
from canarino.normalize import Pseudonymizer

KEY = bytes(range(40))


def _fresh() -> Pseudonymizer:
    return Pseudonymizer(KEY)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=150), max_size=40), st.sampled_from(["email", "phone"]))
def test_column_hashes_are_the_pseudonyms_hashlib_gives(values: list[str], kind: str) -> None:
    slow = _fresh()
    fast = _fresh()
    assert fast.accelerate()
    column = pa.array(values, pa.string())
    expected = b"".join(slow.digest(kind, v) for v in values)
    assert fast.digest_array(kind, column).tobytes() == expected
    assert slow.digest_array(kind, column).tobytes() == expected


def test_a_sliced_column_hashes_only_its_own_values() -> None:
    ps = _fresh()
    assert ps.accelerate()
    values = [f"persona{i}@example.it" for i in range(50)]
    part = pa.array(values, pa.string()).slice(7, 20)
    got = ps.digest_array("email", part)
    assert got.shape == (20, 32)
    assert got.tobytes() == b"".join(ps.digest("email", v) for v in values[7:27])


def test_keys_longer_than_a_block_hash_as_hmac_does() -> None:
    long_key = bytes(range(100))
    ps = Pseudonymizer(long_key)
    assert ps.accelerate()
    got = ps.digest_array("email", pa.array(["a@b.it"], pa.string()))
    assert got.tobytes() == Pseudonymizer(long_key).digest("email", "a@b.it")


def test_the_hasher_does_not_show_its_key() -> None:
    hasher = ColumnHasher.start(b"\x36" * 64, b"\x5c" * 64)
    assert hasher is not None and "key hidden" in repr(hasher)


def _child_start(out: mp.Queue) -> None:  # type: ignore[type-arg]
    hasher = ColumnHasher.start(b"\x36" * 64, b"\x5c" * 64)
    ps = Pseudonymizer(KEY)
    accelerated = ps.accelerate()
    digest = ps.digest_array("email", pa.array(["x@y.it"], pa.string())).tobytes()
    out.put((hasher is None, accelerated, digest == ps.digest("email", "x@y.it")))


def test_a_process_forked_after_the_hasher_started_keeps_to_hashlib() -> None:
    # The parent's DataFusion threads do not exist in a forked child: using them
    # there would wait forever, so the child must not get a hasher.
    parent = ColumnHasher.start(b"\x36" * 64, b"\x5c" * 64)
    assert parent is not None
    parent.digests(b"", pa.array([b"warm"], pa.binary()))
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_start, args=(out,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the forked child hung or failed"
    refused, accelerated, same = out.get(timeout=5)
    assert refused and not accelerated and same
    assert columnhash._MADE_IN is not None


def test_an_empty_column_gives_no_digests() -> None:
    ps = _fresh()
    assert ps.accelerate()
    assert ps.digest_array("phone", pa.array([], pa.string())).shape == (0, 32)
    assert np.array_equal(
        ps.digest_array("phone", pa.array(["+39347", "+39347"], pa.string()))[1],
        np.frombuffer(ps.digest("phone", "+39347"), dtype=np.uint8),
    )


def test_hashed_columns_do_not_stay_in_the_session() -> None:
    hasher = ColumnHasher.start(b"\x36" * 64, b"\x5c" * 64)
    assert hasher is not None
    for n in range(5):
        hasher.digests(b"email\x1f", pa.array([f"p{n}-{i}@x.it".encode() for i in range(99)]))
    assert not hasher._ctx.table_exist(columnhash._TABLE)
    assert hasher._ctx.catalog().schema().names() == set()
