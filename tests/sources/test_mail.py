from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import EmlSource, Limits, MboxSource, open_source
from canarino.sources.mail import EMAIL, PHONE, text_contacts
from tests.corpus import EMAILS, PEOPLE, eml_bytes, eml_file, mbox_file, parses_or_refuses

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=4)


def test_an_eml_gives_one_row_per_address_and_phone_with_where_it_was_found(
    tmp_path: Path,
) -> None:
    source = open_source(eml_file(tmp_path), LIMITS)
    assert isinstance(source, EmlSource)
    assert source.layout().headers == ["message", "source", "email", "phone", "full name"]
    rows = [c for _n, c in source.rows()]
    mario, anna, luca = PEOPLE
    assert rows == [
        ["1", "from", mario["email"], "", mario["name"]],
        ["1", "to", anna["email"], "", anna["name"]],
        ["1", "body", "", luca["phone"], ""],
        ["1", "attachment", luca["email"], "", ""],
    ]


def test_an_mbox_streams_messages_in_batches(tmp_path: Path) -> None:
    source = open_source(mbox_file(tmp_path, messages=3), LIMITS)
    assert isinstance(source, MboxSource)
    batches = list(source.batches())
    assert [b.data.num_rows for b in batches] == [4, 4, 4]
    assert batches[-1].bytes_read == source.size
    assert {r for b in batches for r in b.data.column(2).to_pylist() if r} == EMAILS
    assert [n for n, _c in source.rows()][::4] == [1, 2, 3]


def test_an_oversized_message_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "big.mbox"
    big = eml_bytes().replace(b"Chiama", b"x" * 5000 + b"\nChiama")
    path.write_bytes(b"From a\n" + eml_bytes() + b"\nFrom b\n" + big + b"\nFrom c\n" + eml_bytes())
    source = open_source(path, LIMITS)
    assert {r[0] for _n, r in source.rows()} == {"1", "3"}
    assert source.skipped_rows == 1
    single = tmp_path / "big.eml"
    single.write_bytes(big)
    with pytest.raises(InvalidInput, match="line longer than 4,096 bytes"):
        list(open_source(single, LIMITS).rows())


def test_deep_mime_nesting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="message 1 nests MIME parts deeper than 64"):
        list(open_source(eml_file(tmp_path, nested=80), LIMITS).rows())


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("scrivi a mario.rossi@posta.it.", [("mario.rossi@posta.it", "")]),
        ("tel. +39 347 123 4567, grazie", [("", "+39 347 123 4567")]),
        ("ordine 2024 n. 12", []),
        ("<a href='mailto:a@b.co.uk'>", [("a@b.co.uk", "")]),
    ],
)
def test_text_contacts(text: str, found: list[tuple[str, str]]) -> None:
    assert list(text_contacts(text)) == found


def test_contact_patterns_stay_linear_on_hostile_text() -> None:
    start = time.perf_counter()
    for text in ("a" * 200_000 + "@", "a@" * 100_000, "1 " * 100_000, "x." * 100_000 + "@x"):
        list(EMAIL.finditer(text))
        list(PHONE.finditer(text))
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize(
    ("head", "cls"),
    [
        (b"From: a@b.it\nTo: c@d.it\n\nhi", EmlSource),
        (b"Received: x\nMessage-ID: <1@x>\nSubject: s\n\n", EmlSource),
        (b"From x@y Mon Jan 1\nFrom: a@b.it\nDate: now\n\n", MboxSource),
        (b"email: a@b.it\nphone: 1\n", None),
        (b"From: a@b.it\nnot a header line\n", None),
    ],
)
def test_mail_sniffing(head: bytes, cls: type | None) -> None:
    assert EmlSource.sniff(head) is (cls is EmlSource)
    assert MboxSource.sniff(head) is (cls is MboxSource)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=st.lists(st.text(alphabet='abc:<>@,"; \n=?', max_size=30), max_size=5),
    body=st.binary(max_size=300),
    mbox=st.booleans(),
)
def test_any_message_parses_or_raises_invalid_input(
    tmp_path: Path, headers: list[str], body: bytes, mbox: bool
) -> None:
    path = tmp_path / "fuzz.eml"
    data = b"From: a@b.it\nTo: c@d.it\n" + "\n".join(f"X-H: {h}" for h in headers).encode()
    data += b"\nContent-Type: multipart/mixed; boundary=b\n\n--b\n" + body
    path.write_bytes((b"From x\n" + data) if mbox else data)
    parses_or_refuses(path, LIMITS)
