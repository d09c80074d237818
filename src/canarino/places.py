"""Gazetteers: real places canaries may live in where no customer of a share does.

A canary only ever lives in a real place. Places of the share's own customers cover
most canaries, but as many canaries as there are customers alone in their town should
live in a town no other row has, and only a list of real places (the national postcode
list, say) can give one. The file is CSV with a header: ``country`` (ISO code),
``city``, ``postcode``, and optionally ``region`` (as customers' files write it) and
``population`` (the weight of the place; 1 when missing).
"""

from __future__ import annotations

import csv
from pathlib import Path

from .canaries import Place
from .errors import InvalidInput

MAX_PLACES = 2_000_000


def read_places(path: Path) -> list[Place]:
    """The places of a gazetteer file; a clear error, with the line, for a bad one."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fp:
            reader = csv.DictReader(fp)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in ("country", "city", "postcode") if c not in header]
            if missing:
                raise InvalidInput(
                    f"{path}: no {', '.join(missing)} column",
                    hint="the first line names the columns: country,city,postcode,region,"
                    "population",
                )
            reader.fieldnames = header
            places = []
            for line, row in enumerate(reader, start=2):
                if line > MAX_PLACES + 1:
                    raise InvalidInput(f"{path}: more than {MAX_PLACES:,} places")
                country = (row.get("country") or "").strip().upper()
                city, postcode = (
                    (row.get("city") or "").strip(),
                    (row.get("postcode") or "").strip(),
                )
                if len(country) != 2 or not country.isalpha() or not city or not postcode:
                    raise InvalidInput(
                        f"{path}, line {line}: needs a two-letter country, a city and a postcode"
                    )
                weight_text = (row.get("population") or "").strip()
                try:
                    weight = float(weight_text) if weight_text else 1.0
                except ValueError:
                    raise InvalidInput(f"{path}, line {line}: population is not a number") from None
                if not weight >= 0:  # also refuses NaN
                    raise InvalidInput(f"{path}, line {line}: population is negative")
                places.append(
                    Place(country, city, postcode, (row.get("region") or "").strip(), weight)
                )
    except FileNotFoundError:
        raise InvalidInput(
            f"no places file {path}", hint="fix places_file in canarino.toml, or remove it"
        ) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: not a UTF-8 CSV file ({type(exc).__name__})") from None
    return places
