"""Shares: one export of customer data to one recipient, with its own canaries, recorded."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from random import Random  # noqa: TID251 - only the type; the default is SystemRandom

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .canaries import CanaryFactory, CanaryIdentity, budget, detection_limit
from .customers import CUSTOMER_CONTEXT
from .errors import InvalidInput
from .fields import parse_field_list
from .workspace import Workspace

CANARY_CONTEXT = "canary"
_FILTER_TERM = re.compile(r"^(country|region|language)=([\w,\- ]+)$")


@dataclass(frozen=True)
class ShareResult:
    """What a share produced and recorded."""

    share_id: int
    recipient: str
    created_at: datetime
    customers: int
    canaries: int
    fields: list[str]
    path: Path
    sha256: str
    detection_limit: float


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


def _select_customers(text: str) -> Select[tuple[int, bytes]]:
    query = select(m.Customer.id, m.Customer.sealed).order_by(m.Customer.id)
    for column, values in parse_filter(text):
        query = query.where(getattr(m.Customer, column).in_(values))
    return query


def create_share(
    ws: Workspace,
    recipient: str,
    fields: list[str] | str,
    out: Path,
    *,
    customer_filter: str = "",
    rng: Random | None = None,
) -> ShareResult:
    """Write the export ``recipient`` gets, with this share's canaries, and record it.

    Every row, real or canary, is written the same way; rows are shuffled so position says
    nothing. The file appears only once the share is recorded.
    """
    names = parse_field_list(fields) if isinstance(fields, str) else list(fields)
    if not names:
        raise InvalidInput("--fields needs at least one field")
    rng = rng or secrets.SystemRandom()
    factory = CanaryFactory(ws.settings.mail_domains, ws.settings.phone_ranges, rng)
    if "phone" in names and not ws.settings.phone_ranges:
        raise InvalidInput(
            "this share exports phone numbers but the workspace has no monitored phone range",
            hint="add phone_ranges to canarino.toml so canaries get numbers you watch",
        )
    with ws.db.session() as s:
        who = store.get_recipient(s, recipient)
        real: list[tuple[int, dict[str, str]]] = [
            (cid, ws.vault.open(sealed, context=CUSTOMER_CONTEXT))
            for cid, sealed in s.execute(_select_customers(customer_filter))
        ]
        if not real:
            raise InvalidInput("no customer matches --customers; nothing to share")
        count = budget(
            len(real),
            minimum=ws.settings.canary_min,
            max_fraction=ws.settings.canary_max_fraction,
            smallest_leak=ws.settings.canary_smallest_leak,
            miss=ws.settings.canary_miss,
        )
        canaries = []
        for _ in range(count):
            template = rng.choice(real)[1]
            canaries.append(
                factory.make(template, template.get("country"), template.get("language"))
            )
        rows = [[rec.get(f, "") for f in names] for _, rec in real]
        rows += [[c.fields.get(f, "") for f in names] for c in canaries]
        rng.shuffle(rows)
        tmp, digest = _write_csv(out, names, rows)
        try:
            share = m.Share(
                recipient_id=who.id,
                fields=names,
                customer_filter=customer_filter,
                customer_count=len(real),
                canary_count=len(canaries),
                export_sha256=digest,
            )
            s.add(share)
            s.flush()
            _record(ws, s, share.id, [cid for cid, _ in real], canaries)
            s.flush()
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ShareResult(
            share.id,
            who.name,
            share.created_at,
            len(real),
            len(canaries),
            names,
            out,
            digest,
            detection_limit(len(canaries), ws.settings.canary_miss),
        )


def _write_csv(out: Path, header: list[str], rows: list[list[str]]) -> tuple[Path, str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".canarino-", suffix=".csv", dir=out.parent)
    tmp = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fp:
            writer = csv.writer(fp, lineterminator="\r\n")
            writer.writerow(header)
            writer.writerows(rows)
        with tmp.open("rb") as fp:
            for chunk in iter(lambda: fp.read(1 << 20), b""):
                digest.update(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _record(
    ws: Workspace,
    s: Session,
    share_id: int,
    customer_ids: list[int],
    canaries: list[CanaryIdentity],
) -> None:
    for start in range(0, len(customer_ids), 10_000):
        s.execute(
            insert(m.ShareCustomer),
            [
                {"share_id": share_id, "customer_id": c}
                for c in customer_ids[start : start + 10_000]
            ],
        )
    if not canaries:
        return
    ids = s.scalars(
        insert(m.Canary).returning(m.Canary.id, sort_by_parameter_order=True),
        [
            {
                "locale": c.locale,
                "country": c.country,
                "sealed": ws.vault.seal(c.fields, context=CANARY_CONTEXT),
            }
            for c in canaries
        ],
    ).all()
    s.execute(insert(m.ShareCanary), [{"share_id": share_id, "canary_id": i} for i in ids])
    ps = ws.vault.pseudonyms
    s.execute(
        insert(m.Pseudonym),
        [
            {"digest": ps.digest(kind, c.fields[kind]), "kind": kind, "canary_id": cid}
            for cid, c in zip(ids, canaries, strict=True)
            for kind in ("email", "phone")
            if c.fields.get(kind)
        ],
    )


def count_shares(ws: Workspace) -> int:
    """How many shares are recorded."""
    with ws.db.session() as s:
        return s.scalar(select(func.count()).select_from(m.Share)) or 0
