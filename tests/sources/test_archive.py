from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canarino.errors import InvalidInput
from canarino.sources import Limits, open_source, open_sources, spool
from tests.corpus import (
    aes_zip_file,
    compressed,
    csv_file,
    flat_zip_bomb,
    gzip_bomb,
    mysql_dump,
    ndjson_file,
    nested_zip_bomb,
    parses_or_refuses,
    read_all,
    seven_zip_file,
    tar_file,
    traversal_tar,
    traversal_zip,
    truncated_gzip,
    xlsx_file,
    zip_file,
)

LIMITS = Limits(max_line_bytes=4096, max_columns=50, batch_rows=100)


def _members(path: Path, limits: Limits = LIMITS, password: str | None = None) -> list[str]:
    with open_sources(path, limits, password=password) as dump:
        names = [f"{s.name.removeprefix(str(path))}={s.NAME}" for s in dump]
    return names


def test_a_plain_file_is_its_own_only_source(tmp_path: Path) -> None:
    assert _members(csv_file(tmp_path)) == ["=csv"]


def test_zip_members_are_read_by_content_including_nested_archives(tmp_path: Path) -> None:
    inner = zip_file(tmp_path, {"x.ndjson": ndjson_file(tmp_path).read_bytes()}, "inner.zip")
    path = zip_file(
        tmp_path,
        {
            "dir/people.dat": csv_file(tmp_path).read_bytes(),
            "inner.zip": inner.read_bytes(),
            "book.xlsx": xlsx_file(tmp_path).read_bytes(),
            "empty/": b"",
        },
    )
    assert _members(path) == [
        "!dir/people.dat=csv",
        "!inner.zip!x.ndjson=ndjson",
        "!book.xlsx=xlsx",
    ]


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz"])
def test_single_file_compressors_name_the_member_after_the_archive(
    tmp_path: Path, kind: str
) -> None:
    path = compressed(csv_file(tmp_path), kind)
    assert _members(path) == ["!people.csv=csv"]
    assert read_all(path, LIMITS) == 3


def test_a_gzipped_tar_is_unpacked_in_two_steps(tmp_path: Path) -> None:
    tar = tar_file(
        tmp_path,
        {
            "a/people.csv": csv_file(tmp_path).read_bytes(),
            "m.sql": mysql_dump(tmp_path).read_bytes(),
        },
    )
    assert _members(compressed(tar, "gz")) == [
        "!dump.tar!a/people.csv=csv",
        "!dump.tar!m.sql=sqldump",
    ]


def test_7z_archives_are_read(tmp_path: Path) -> None:
    path = seven_zip_file(tmp_path, {"people.csv": csv_file(tmp_path).read_bytes()})
    assert _members(path) == ["!people.csv=csv"]


def test_encrypted_archives_need_the_password(tmp_path: Path) -> None:
    path = aes_zip_file(tmp_path, {"people.csv": csv_file(tmp_path).read_bytes()}, b"infected")
    assert _members(path, password="infected") == ["!people.csv=csv"]
    with pytest.raises(InvalidInput, match=r"people.csv: is encrypted; give the archive password"):
        _members(path)
    with pytest.raises(InvalidInput, match=r"people.csv: the password is wrong or missing"):
        _members(path, password="wrong")


def test_encrypted_7z_needs_the_password(tmp_path: Path) -> None:
    path = seven_zip_file(tmp_path, {"p.csv": csv_file(tmp_path).read_bytes()}, password="pw")
    with pytest.raises(InvalidInput, match=r"dump.7z: is encrypted"):
        _members(path)


def test_one_bad_member_is_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    cut = truncated_gzip(tmp_path)
    path = zip_file(
        tmp_path,
        {
            "cut.csv.gz": cut.read_bytes(),
            "noise.bin": b"\x00\x01\x02" * 100,
            "ok.csv": csv_file(tmp_path).read_bytes(),
        },
    )
    with open_sources(path, LIMITS) as dump:
        assert [s.name.rsplit("!", 1)[1] for s in dump] == ["ok.csv"]
    assert [str(p).removeprefix(str(path)) for p in dump.problems] == [
        "!cut.csv.gz!cut.csv: the compressed data is cut short (truncated file)",
        "!noise.bin: not a format canarino reads",
    ]


def test_member_names_are_printed_but_never_used_as_paths(tmp_path: Path) -> None:
    outside = Path(tempfile.gettempdir()) / "etc" / "passwd"
    for path in (traversal_zip(tmp_path), traversal_tar(tmp_path)):
        names = []
        with open_sources(path, LIMITS) as dump:
            for source in dump:
                assert source.path.parent.name.startswith("canarino-dump-")
                assert source.path.name.startswith("m") and source.path.name[1:].isdigit()
                names.append(source.name.rsplit("!", 1)[1])
        assert "../../etc/passwd" in names
        assert not outside.exists()
    assert [p.reason for p in dump.problems] == ["is a link or device, not a file; skipped"]


def test_member_copies_are_deleted_as_soon_as_they_are_read(tmp_path: Path) -> None:
    path = zip_file(tmp_path, {f"p{i}.csv": csv_file(tmp_path).read_bytes() for i in range(3)})
    seen: list[Path] = []
    with open_sources(path, LIMITS) as dump:
        for source in dump:
            assert source.path.exists() and source.path.name.startswith("m")
            seen.append(source.path)
            assert not any(p.exists() for p in seen[:-1])
    assert not any(p.exists() for p in seen) and not seen[0].parent.exists()


@pytest.mark.parametrize(
    ("make", "limits", "message"),
    [
        (nested_zip_bomb, LIMITS, r"archives nested more than 4 deep"),
        (
            nested_zip_bomb,
            Limits(max_archive_depth=8, max_members=100),
            r"holds more than 100 files counting nested archives",
        ),
        (flat_zip_bomb, LIMITS, r"zeros.csv: expands more than 1,0\d\d times, past the limit"),
        (gzip_bomb, LIMITS, r"bomb.csv: expands more than 20\d times, past the limit"),
        (
            flat_zip_bomb,
            Limits(max_unpacked_bytes=1 << 20, max_ratio=10**6),
            r"unpacks to .* bytes, past the limit of 1,048,576",
        ),
        (gzip_bomb, Limits(max_unpacked_bytes=1 << 20, max_ratio=10**6), r"unpacks to more than"),
    ],
)
def test_archive_bombs_are_refused_early(
    tmp_path: Path, make: object, limits: Limits, message: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InvalidInput, match=message) as info:
        read_all(path, limits)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_folder_is_read_file_by_file_without_following_links(tmp_path: Path) -> None:
    folder = tmp_path / "leak"
    (folder / "sub").mkdir(parents=True)
    csv_file(folder / "sub")
    zip_file(folder, {"m.sql": mysql_dump(tmp_path).read_bytes()}, "b.zip")
    (folder / "link.csv").symlink_to(csv_file(tmp_path))
    assert _members(folder) == ["/b.zip!m.sql=sqldump", "/sub/people.csv=csv"]


def test_standard_input_is_spooled_to_a_private_file_within_the_limit() -> None:
    path = spool(io.BytesIO(b"email\na@x.it\n"), LIMITS)
    try:
        assert path.read_bytes() == b"email\na@x.it\n" and path.stat().st_mode & 0o077 == 0
    finally:
        path.unlink()
    with pytest.raises(InvalidInput, match="standard input: more than 4 bytes"):
        spool(io.BytesIO(b"0123456789"), Limits(max_unpacked_bytes=4))


def test_open_source_points_archives_to_open_sources(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is a zip archive, not a single table"):
        open_source(zip_file(tmp_path, {"a.csv": b"a,b\n"}), LIMITS)


def test_an_empty_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="the archive holds no files"):
        _members(zip_file(tmp_path, {}))


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    magic=st.sampled_from(
        [b"PK\x03\x04", b"\x1f\x8b\x08", b"BZh91AY&SY", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c"]
    ),
    data=st.binary(max_size=300),
    flip=st.integers(0, 10_000),
)
def test_any_archive_like_bytes_parse_or_raise_invalid_input(
    tmp_path: Path, magic: bytes, data: bytes, flip: int
) -> None:
    path = tmp_path / "fuzz.bin"
    if flip % 3 == 0:
        good = bytearray(
            zip_file(tmp_path, {"a.csv": b"email\na@x.it\n", "b.gz": b"\x1f\x8b"}).read_bytes()
        )
        good[flip % len(good)] ^= 0xFF
        path.write_bytes(bytes(good))
    else:
        path.write_bytes(magic + data)
    parses_or_refuses(path, LIMITS)
