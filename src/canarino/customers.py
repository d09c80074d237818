"""Customer import: read a file, normalise identifiers, seal records, index pseudonyms."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Select, insert, select

from . import models as m
from . import store
from .errors import InvalidInput
from .fields import BY_NAME, FIELD_NAMES, field_for_header
from .index import refresh_index
from .normalize import (
    IdentifierError,
    default_language,
    normalize_country,
    normalize_email,
    normalize_language,
    normalize_phone,
)
from .sources import Limits, open_source
from .workspace import Workspace

CUSTOMER_CONTEXT = "customer"
_FILTER_TERM = re.compile(r"^(country|region|language)=([\w,\- ]+)$")
_FLUSH = 2_000


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped, with its line number and a reason free of its content."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did."""

    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: int = 0


@dataclass(frozen=True)
class CustomerRecord:
    """A validated customer row, ready to store."""

    fields: dict[str, str]
    country: str | None
    region: str | None
    language: str

    @property
    def identity_key(self) -> tuple[str, str]:
        """What makes this customer the same customer in a later import."""
        for kind in ("customer_id", "email", "phone"):
            if kind in self.fields:
                return kind, self.fields[kind]
        raise ValueError("record without identifier")


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """Parse ``HEADER=field`` overrides."""
    mapping: dict[str, str] = {}
    for item in items:
        header, sep, name = item.partition("=")
        if not sep or not header.strip():
            raise InvalidInput(f"--map {item!r} must look like HEADER=FIELD")
        if name.strip() not in BY_NAME and name.strip() != "ignore":
            raise InvalidInput(
                f"--map {item!r}: unknown field {name.strip()!r}",
                hint=f"fields: {', '.join(FIELD_NAMES)}, or 'ignore'",
            )
        mapping[header.strip()] = name.strip()
    return mapping


def map_columns(headers: Sequence[str], overrides: dict[str, str]) -> dict[int, str]:
    """Map column positions to fields: overrides first, then recognised headers."""
    folded = {k.casefold(): v for k, v in overrides.items()}
    out: dict[int, str] = {}
    taken: set[str] = set()
    for index, header in enumerate(headers):
        name = folded.get(header.casefold()) or field_for_header(header)
        if name and name != "ignore" and name not in taken:
            out[index] = name
            taken.add(name)
    return out


def validate_row(values: dict[str, str], default_country: str | None) -> CustomerRecord:
    """Normalise one row's values; raise ``IdentifierError`` with a content-free reason."""
    fields = {k: v.strip() for k, v in values.items() if v and v.strip()}
    country = None
    if "country" in fields:
        country = normalize_country(fields["country"])
        if country is None:
            raise IdentifierError("unknown country")
        fields["country"] = country
    country = country or default_country
    if "email" in fields:
        fields["email"] = normalize_email(fields["email"])
    if "phone" in fields:
        fields["phone"] = normalize_phone(fields["phone"], country)
    if "email" not in fields and "phone" not in fields:
        raise IdentifierError("no email address and no phone number")
    language = None
    if "language" in fields:
        language = normalize_language(fields["language"])
        if language is None:
            raise IdentifierError("unknown language")
        fields["language"] = language
    return CustomerRecord(
        fields, country, fields.get("region"), language or default_language(country)
    )


def import_customers(
    ws: Workspace,
    path: Path,
    *,
    mapping: dict[str, str] | None = None,
    default_country: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import customers from a CSV file; the whole file is stored or nothing is.

    Rows that cannot be used are skipped and listed by line number; a row already stored
    (same customer id, else same email, else same phone) is left as it is.
    """
    country = None
    if default_country:
        country = normalize_country(default_country)
        if country is None:
            raise InvalidInput(f"--country {default_country!r} is not a country")
    source = open_source(path, Limits(ws.settings.max_line_bytes, ws.settings.max_columns))
    layout = source.layout()
    if layout.headers is None:
        raise InvalidInput(
            f"{path}: the first row is not a header",
            hint="customer files need column names such as nome, cognome, email, cellulare",
        )
    columns = map_columns(layout.headers, mapping or {})
    report = ImportReport(
        columns={layout.headers[i]: f for i, f in columns.items()},
        ignored_columns=len(layout.headers) - len(columns),
    )
    if not {"email", "phone"} & set(columns.values()):
        raise InvalidInput(
            f"{path}: no email or phone column among {len(layout.headers)} columns",
            hint="name one e-mail/email or cellulare/phone, or use --map HEADER=email",
        )
    batch: list[tuple[int, CustomerRecord]] = []
    seen: set[bytes] = set()
    with ws.db.session() as s:
        for line, cells in source.rows():
            if not any(c.strip() for c in cells):
                continue
            report.rows += 1
            if len(cells) != layout.columns:
                report.problems.append(
                    RowProblem(line, f"has {len(cells)} cells, the header has {layout.columns}")
                )
                continue
            try:
                record = validate_row({f: cells[i] for i, f in columns.items()}, country)
            except IdentifierError as exc:
                report.problems.append(RowProblem(line, str(exc)))
                continue
            batch.append((line, record))
            if len(batch) >= _FLUSH:
                _store(ws, s, batch, seen, report)
                batch.clear()
                if progress:
                    progress(report.rows, 0)
        _store(ws, s, batch, seen, report)
        if report.rows == 0:
            raise InvalidInput(f"{path}: no data rows after the header")
    if report.imported:
        refresh_index(ws)
    return report


def _store(
    ws: Workspace,
    s: Any,
    batch: list[tuple[int, CustomerRecord]],
    seen: set[bytes],
    report: ImportReport,
) -> None:
    if not batch:
        return
    ps = ws.vault.pseudonyms
    keyed = [(ps.digest(*rec.identity_key), rec) for _, rec in batch]
    present = store.existing_identities(s, [k for k, _ in keyed]) | seen
    fresh: list[tuple[bytes, CustomerRecord]] = []
    for identity, rec in keyed:
        if identity in present:
            report.unchanged += 1
        else:
            present.add(identity)
            fresh.append((identity, rec))
    seen.update(k for k, _ in fresh)
    if not fresh:
        return
    rows = [
        {
            "identity": identity,
            "country": rec.country,
            "region": rec.region,
            "language": rec.language,
            "sealed": ws.vault.seal(rec.fields, context=CUSTOMER_CONTEXT),
        }
        for identity, rec in fresh
    ]
    ids = s.scalars(
        insert(m.Customer).returning(m.Customer.id, sort_by_parameter_order=True), rows
    ).all()
    pseudonyms = [
        {"digest": ps.digest(kind, rec.fields[kind]), "kind": kind, "customer_id": cid}
        for cid, (_, rec) in zip(ids, fresh, strict=True)
        for kind in ("email", "phone")
        if kind in rec.fields
    ]
    s.execute(insert(m.Pseudonym), pseudonyms)
    report.imported += len(fresh)


def load_customers(ws: Workspace, ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Open the sealed records of customers ``ids``."""
    out: dict[int, dict[str, str]] = {}
    with ws.db.session() as s:
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            for cid, sealed in s.execute(
                select(m.Customer.id, m.Customer.sealed).where(m.Customer.id.in_(chunk))
            ):
                out[cid] = ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
    return out


def parse_filter(text: str) -> list[tuple[str, list[str]]]:
    """Parse ``country=IT,FR region=MI`` into column conditions."""
    terms: list[tuple[str, list[str]]] = []
    for part in text.split():
        match = _FILTER_TERM.match(part)
        if match is None:
            raise InvalidInput(
                f"--customers: cannot read {part!r}",
                hint="use terms like country=IT,FR region=MI language=it, separated by spaces",
            )
        column, values = match.group(1), [v for v in match.group(2).split(",") if v]
        if column == "country":
            values = [v.upper() for v in values]
        terms.append((column, values))
    return terms


def select_customers(text: str) -> Select[tuple[int, bytes]]:
    """Ids and sealed records of the customers a ``--customers`` filter matches, by id."""
    query = select(m.Customer.id, m.Customer.sealed).order_by(m.Customer.id)
    for column, values in parse_filter(text):
        query = query.where(getattr(m.Customer, column).in_(values))
    return query
