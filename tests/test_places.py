from __future__ import annotations

from pathlib import Path

import pytest

from canarino.canaries import Place
from canarino.errors import InvalidInput
from canarino.places import read_places


def test_a_gazetteer_is_read_with_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "places.csv"
    path.write_text(
        "Country,City,Postcode,Region,Population\nit,Bobbio,29022,PC,3500\nIT,Bard,11020,,\n",
        encoding="utf-8",
    )
    assert read_places(path) == [
        Place("IT", "Bobbio", "29022", "PC", 3500.0),
        Place("IT", "Bard", "11020", "", 1.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("country,city\nIT,Bobbio\n", "no postcode column"),
        ("country,city,postcode\nITA,Bobbio,29022\n", "line 2: needs a two-letter country"),
        ("country,city,postcode\nIT,,29022\n", "line 2: needs a two-letter country"),
        ("country,city,postcode,population\nIT,Bobbio,29022,many\n", "line 2: population is"),
        ("country,city,postcode,population\nIT,Bobbio,29022,-5\n", "population is negative"),
        ("country,city,postcode,population\nIT,Bobbio,29022,nan\n", "population is negative"),
    ],
)
def test_a_bad_gazetteer_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "places.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        read_places(path)


def test_a_missing_or_binary_gazetteer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no places file"):
        read_places(tmp_path / "nope.csv")
    (tmp_path / "bin.csv").write_bytes(b"country,city,postcode\n\xff\xfe\x00IT,B,1\n")
    with pytest.raises(InvalidInput, match="not a UTF-8 CSV file"):
        read_places(tmp_path / "bin.csv")
