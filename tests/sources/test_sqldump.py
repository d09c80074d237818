from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import CREDENTIAL_MARKER, Limits, SqlDumpSource, open_source
from tests.corpus import EMAILS, PASSWORDS, mysql_dump, parses_or_refuses, postgres_dump, read_all

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=2)


def _rows(tmp_path: Path, text: str) -> tuple[list[str], list[list[str]]]:
    path = tmp_path / "d.sql"
    path.write_text(text, encoding="utf-8")
    source = open_source(path, LIMITS)
    assert isinstance(source, SqlDumpSource)
    return source.layout().headers or [], [c for _n, c in source.rows()]


def test_mysql_dump_takes_columns_from_create_table(tmp_path: Path) -> None:
    source = open_source(mysql_dump(tmp_path), LIMITS)
    headers = source.layout().headers
    assert headers == ["id", "email", "name", "mobile", "password_hash", "created"]
    batches = list(source.batches())
    assert sum(b.data.num_rows for b in batches) == 3
    assert batches[-1].bytes_read == source.size
    rows = [c for _n, c in source.rows()]
    assert {r[1] for r in rows} == EMAILS
    assert rows[0][2] == "Mario'Rossi" and rows[0][5] == ""
    assert {r[4] for r in rows} == {CREDENTIAL_MARKER}
    assert not any(p in str(rows) for p in PASSWORDS)


def test_postgres_dump_reads_copy_blocks_and_inserts(tmp_path: Path) -> None:
    source = open_source(postgres_dump(tmp_path), LIMITS)
    assert source.layout().headers == ["id", "email", "phone", "note"]
    rows = [c for _n, c in source.rows()]
    assert {r[1] for r in rows} == EMAILS
    assert rows[2][3] == "it's C:\\path"  # standard strings: the backslash is literal


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (r"('a\'b', 'c\\d', 'e\nf', '\0')", ["a'b", "c\\d", "e\nf", "\0"]),
        ("('it''s', \"dq\", NULL, DEFAULT)", ["it's", "dq", "", ""]),
        ("(-1.5e3, 0x1F, X'00', _binary 'x')", ["-1.5e3", "0x1F", "00", "x"]),
        ("(NOW(), CONCAT('a', ('b')), true, 'x')", ["", "", "true", "x"]),
    ],
)
def test_mysql_values(tmp_path: Path, values: str, expected: list[str]) -> None:
    text = f"-- MySQL dump\nINSERT INTO t (a, b, c, d) VALUES {values};\n"
    assert _rows(tmp_path, text)[1] == [expected]


def test_tables_sharing_a_column_name_share_the_column(tmp_path: Path) -> None:
    headers, rows = _rows(
        tmp_path,
        "INSERT INTO users (id, email) VALUES (1, 'a@x.it');\n"
        "INSERT INTO orders (id, total) VALUES (7, 3);\n"
        "INSERT INTO misc VALUES ('x', 'y');\n",
    )
    assert headers == ["id", "email", "total", "misc column 1", "misc column 2"]
    assert rows == [["1", "a@x.it", "", "", ""], ["7", "", "3", "", ""], ["", "", "", "x", "y"]]


def test_rows_with_the_wrong_number_of_values_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.sql"
    path.write_text("INSERT INTO t (a, b) VALUES (1, 2), (3), (4, 5);\n")
    source = open_source(path, LIMITS)
    assert sum(b.data.num_rows for b in source.batches()) == 2
    assert source.skipped_rows == 1


def test_other_statements_with_semicolons_in_strings_are_skipped(tmp_path: Path) -> None:
    _headers, rows = _rows(
        tmp_path,
        "-- PostgreSQL database dump\n"
        "COMMENT ON TABLE t IS 'a; b';\n/* block; comment */\n"
        "CREATE FUNCTION f() AS $body$ x; $body$;\n"
        "INSERT INTO t (a) VALUES ('ok') ON CONFLICT DO NOTHING;\n"
        "INSERT INTO t (a) VALUES ('ok2');\n",
    )
    assert rows == [["ok"], ["ok2"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INSERT INTO t VALUES ('never closed", "line 1: a quoted value never ends"),
        ("INSERT INTO t VALUES\n\n('" + "x" * 9000 + "');", "line 3: a value is longer than"),
        ("INSERT INTO t VALUES (1, 2;", "line 1: expected , or \\) after a value"),
        ("INSERT INTO t VALUES 'secret@x.it';", "line 1: expected \\( to open"),
        ("CREATE TABLE t (a int;\n", "a statement ends inside parentheses"),
        ("-- MySQL dump\nSET x = 1;\n", "holds no INSERT or COPY rows"),
        ("COPY t (a) FROM stdin;\n" + "y" * 9000 + "\n\\.\n", "COPY line is longer"),
    ],
)
def test_broken_dumps_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.sql"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as info:
        read_all(path, LIMITS)
    assert str(path) in str(info.value)
    assert "secret@x.it" not in str(info.value) and "xxxx" not in str(info.value)


def test_values_spanning_read_chunks_are_parsed_whole(tmp_path: Path) -> None:
    tuples = ",".join(f"({i}, 'user{i}@posta.it', 'note; with ''quotes''')" for i in range(40_000))
    path = tmp_path / "big.sql"
    path.write_text(f"INSERT INTO t (id, email, note) VALUES {tuples};\n")
    assert path.stat().st_size > 1 << 20  # more than one read chunk
    source = open_source(path, Limits(max_line_bytes=4096, batch_rows=10_000))
    rows = [c for b in source.batches() for c in b.data.column(1).to_pylist()]
    assert len(rows) == 40_000 and rows[-1] == "user39999@posta.it"


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.text(alphabet="()',;\"\\`$-/*#\n ab1", max_size=60),
    dialect=st.sampled_from(["-- MySQL dump\n", "-- PostgreSQL database dump\n"]),
)
def test_any_statement_text_parses_or_raises_invalid_input(
    tmp_path: Path, body: str, dialect: str
) -> None:
    path = tmp_path / "fuzz.sql"
    path.write_text(f"{dialect}INSERT INTO t (a) VALUES {body}")
    parses_or_refuses(path, LIMITS)
