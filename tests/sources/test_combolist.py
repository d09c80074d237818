from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import CREDENTIAL_MARKER, ComboListSource, CsvSource, Limits, open_source
from canarino.sources.combolist import Dialect, detect_dialect, is_identifier
from tests.corpus import EMAILS, PASSWORDS, PEOPLE, combo_file, parses_or_refuses

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=2)


@pytest.mark.parametrize(
    ("lines", "dialect"),
    [
        (["a@x.it:pw1", "b@x.it:p:w:2", "c@x.it"], Dialect(":", "secret")),
        (["a@x.it;pw1", "b@x.it;secret9"], Dialect(";", "secret")),
        (["a@x.it|pw1", "b@x.it|Pa55"], Dialect("|", "secret")),
        (["+39 347 1234567;Mario Rossi", "3331234567;Anna Bianchi"], Dialect(";", "name")),
        (["a@x.it:Mario Rossi", "b@x.it:Anna"], Dialect(":", "secret")),
        (["a@x.it", "b@x.it"], None),
        (["email;password", "a@x.it;pw"], None),
        (["a@x.it;b;c", "d@x.it;e;f"], None),
        (["hello world", "nothing here"], None),
    ],
)
def test_detect_dialect(lines: list[str], dialect: Dialect | None) -> None:
    assert detect_dialect(lines) == dialect


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("mario.rossi@posta.it", True),
        ("+39 347 123 4567", True),
        ("(02) 1234-5678", True),
        ("mario", False),
        ("a@b", False),
        ("x" * 400 + "@x.it", False),
    ],
)
def test_is_identifier(text: str, ok: bool) -> None:
    assert is_identifier(text) is ok


@pytest.mark.parametrize("separator", [":", ";", "|"])
def test_passwords_never_leave_the_reader(tmp_path: Path, separator: str) -> None:
    source = open_source(combo_file(tmp_path, separator), LIMITS)
    assert isinstance(source, ComboListSource)
    assert source.layout().headers == ["identifier", "secret"]
    batches = list(source.batches())
    assert [b.data.num_rows for b in batches] == [2, 1]
    assert batches[-1].bytes_read == source.size
    cells = [
        c for b in batches for c in zip(*(col.to_pylist() for col in b.data.columns), strict=True)
    ]
    assert {c[0] for c in cells} == EMAILS
    assert {c[1] for c in cells} == {CREDENTIAL_MARKER}
    text = str(cells) + str(list(source.rows()))
    assert not any(p in text for p in PASSWORDS)


def test_phone_and_name_lists_keep_the_name(tmp_path: Path) -> None:
    source = open_source(combo_file(tmp_path, ";", "name"), LIMITS)
    assert source.layout().headers == ["identifier", "name"]
    assert [c for _n, c in source.rows()] == [[p["phone"], p["name"]] for p in PEOPLE]


def test_a_bare_list_is_one_headerless_csv_column(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("\n".join(sorted(EMAILS)) + "\n")
    source = open_source(path, LIMITS)
    assert isinstance(source, CsvSource)
    assert source.layout().headers is None and source.layout().columns == 1


def test_lines_without_an_identifier_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "combo.txt"
    lines = [f"user{i}@posta.it:pw{i}" for i in range(20)] + ["garbage line"]
    path.write_text("\n".join(lines) + "\n")
    source = open_source(path, LIMITS)
    assert sum(b.data.num_rows for b in source.batches()) == 20
    assert source.skipped_rows == 1


def test_an_endless_line_is_refused_by_number(tmp_path: Path) -> None:
    path = tmp_path / "combo.txt"
    path.write_bytes(b"a@x.it:pw\nb@x.it:pw\n" * 5 + b"c@x.it:" + b"p" * 5000 + b"\n")
    source = open_source(path, LIMITS)
    with pytest.raises(InvalidInput, match="line 11 is longer than 4,096") as info:
        list(source.batches())
    assert "ppppp" not in str(info.value)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(["a@x.it", "+39 347 1234567", "", "x"]), st.text(max_size=20)),
        max_size=8,
    ),
    sep=st.sampled_from([":", ";", "|", "\t"]),
    noise=st.binary(max_size=16),
)
def test_any_list_parses_or_raises_invalid_input(
    tmp_path: Path, lines: list[tuple[str, str]], sep: str, noise: bytes
) -> None:
    path = tmp_path / "fuzz.txt"
    body = "\n".join(f"{ident}{sep}{rest}" for ident, rest in lines)
    path.write_bytes(f"a@x.it{sep}pw\n".encode() + body.encode() + noise)
    parses_or_refuses(path, LIMITS)
