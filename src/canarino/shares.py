"""Shares: one export of customer data to one recipient, with its own canaries, recorded."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from random import Random  # noqa: TID251 - only the type; the default is SystemRandom
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from . import models as m
from . import store
from .canaries import CanaryFactory, CanaryIdentity, Profile
from .customers import CUSTOMER_CONTEXT, select_customers
from .design import Design, DesignInput, detection_limit, plan
from .errors import InvalidInput, NotFound
from .fields import FIELD_NAMES, parse_field_list
from .index import refresh_index
from .mailboxes import mark_used, pool_summary, unused_mailboxes
from .places import read_places
from .workspace import Workspace

CANARY_CONTEXT = "canary"


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
    # Canaries drawn like customers at a provider of the mailbox pool that found no
    # unused mailbox there for their country and went to a look-alike domain.
    mailboxes_short: int = 0


def design_for(ws: Workspace, s: Session) -> Design:
    """The canary design for this workspace's settings and recipient count."""
    recipients = s.scalar(select(func.count()).select_from(m.Recipient)) or 0
    cfg = ws.settings
    return plan(
        DesignInput(
            recipients=max(cfg.design_recipients, recipients),
            colluders=cfg.colluders,
            smallest_leak=cfg.canary_smallest_leak,
            epsilon=cfg.epsilon,
            miss=cfg.canary_miss,
            noise=cfg.noise,
        )
    )


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

    The share gets fresh exclusive canaries and, when the design has a shared layer, each
    pooled canary independently with the layer's bias; both draws are secret. Every row,
    real or canary, is written the same way and rows are shuffled, so position says
    nothing. The file appears only once the share is recorded.
    """
    names = parse_field_list(fields) if isinstance(fields, str) else list(fields)
    if not names:
        raise InvalidInput("--fields needs at least one field")
    rng = rng or secrets.SystemRandom()
    if "phone" in names and not ws.settings.phone_ranges:
        raise InvalidInput(
            "this share exports phone numbers but the workspace has no monitored phone range",
            hint="add phone_ranges to canarino.toml so canaries get numbers you watch",
        )
    with ws.db.session() as s:
        who = store.get_recipient(s, recipient)
        real: list[tuple[int, dict[str, str]]] = [
            (cid, ws.vault.open(sealed, context=CUSTOMER_CONTEXT))
            for cid, sealed in s.execute(select_customers(customer_filter))
        ]
        if not real:
            raise InvalidInput("no customer matches --customers; nothing to share")
        design = design_for(ws, s)
        make, factory = _canary_maker(ws, real, rng)
        exclusive_layer = design.layer("exclusive")
        assert exclusive_layer is not None
        count = _exclusive_count(ws, len(real), exclusive_layer.per_share)
        exclusive = make(count)
        exclusive_ids = _insert_canaries(ws, s, exclusive, "exclusive", 0.0, make)
        chosen: list[tuple[int, dict[str, str]]] = list(
            zip(exclusive_ids, [c.fields for c in exclusive], strict=True)
        )
        shared_layer = design.layer("shared")
        if shared_layer is not None:
            pool = _pool(ws, s, "shared", shared_layer.bias, shared_layer.pool, make)
            chosen += [(cid, rec) for cid, rec in pool if rng.random() < shared_layer.bias]
        _pool(ws, s, "control", 0.0, ws.settings.control_canaries, make, load=False)
        rows = [[rec.get(f, "") for f in names] for _, rec in real]
        rows += [[rec.get(f, "") for f in names] for _, rec in chosen]
        rng.shuffle(rows)
        share, digest = _publish(
            s, out, who.id, names, rows, customer_filter, real, [cid for cid, _ in chosen]
        )
        result = ShareResult(
            share.id,
            who.name,
            share.created_at,
            len(real),
            len(chosen),
            names,
            out,
            digest,
            detection_limit(count, ws.settings.canary_miss, exclusive_layer.hits_needed),
            factory.mailboxes_missing,
        )
    refresh_index(ws)
    return result


def _canary_maker(
    ws: Workspace, real: list[tuple[int, dict[str, str]]], rng: Random
) -> tuple[Callable[[int], list[CanaryIdentity]], CanaryFactory]:
    """Draw canaries that follow the distribution of ``real``, the share's customers.

    Each canary starts from a random real row (country, place, which fields are empty)
    and the :class:`~canarino.canaries.Profile` of all of them for the rest.
    """
    with ws.db.session() as s:
        boxes = unused_mailboxes(ws, s)
    pool_domains = [p.domain for p in pool_summary(ws)]
    places_file = ws.settings.places_file
    places = read_places(ws.settings.workspace / places_file) if places_file else []
    factory = CanaryFactory(
        ws.settings.mail_domains,
        ws.settings.phone_ranges,
        rng,
        Profile.from_rows((rec for _, rec in real), places),
        boxes,
        pool_domains,
    )

    def make(n: int) -> list[CanaryIdentity]:
        made = []
        for _ in range(n):
            template = rng.choice(real)[1]
            made.append(factory.make(template, template.get("country"), template.get("language")))
        return made

    return make, factory


def _exclusive_count(ws: Workspace, rows: int, per_share: int) -> int:
    cap = math.floor(rows * ws.settings.canary_max_fraction)
    return max(ws.settings.canary_min, min(per_share, cap))


def create_honey_share(
    ws: Workspace,
    recipient: str,
    out: Path,
    *,
    count: int | None = None,
    fields: list[str] | str | None = None,
    customer_filter: str = "",
    rng: Random | None = None,
) -> ShareResult:
    """Write honey records for a live system (CRM, helpdesk) and record them as a share.

    The file holds only canaries, drawn like a share's and shaped like a customers file
    (canonical headers, the fields the customers have), for import into ``recipient``:
    a system that already holds the customers matched by ``customer_filter``, which the
    share records as held. ``count`` defaults to the exclusive layer's size for them.
    """
    if count is not None and count < 1:
        raise InvalidInput("--count must be at least 1")
    rng = rng or secrets.SystemRandom()
    with ws.db.session() as s:
        who = store.get_recipient(s, recipient)
        real: list[tuple[int, dict[str, str]]] = [
            (cid, ws.vault.open(sealed, context=CUSTOMER_CONTEXT))
            for cid, sealed in s.execute(select_customers(customer_filter))
        ]
        if not real:
            raise InvalidInput(
                "no customer matches --customers; honey records copy the customers' shape",
                hint="import customers first, or widen --customers",
            )
        if isinstance(fields, str):
            names = parse_field_list(fields)
        else:
            present = {k for _, rec in real for k in rec}
            names = list(fields) if fields else [f for f in FIELD_NAMES if f in present]
        if not names:
            raise InvalidInput("--fields needs at least one field")
        if "phone" in names and not ws.settings.phone_ranges:
            names.remove("phone")
        exclusive_layer = design_for(ws, s).layer("exclusive")
        assert exclusive_layer is not None
        if count is None:
            count = _exclusive_count(ws, len(real), exclusive_layer.per_share)
        make, factory = _canary_maker(ws, real, rng)
        honey = make(count)
        ids = _insert_canaries(ws, s, honey, "exclusive", 0.0, make)
        rows = [[c.fields.get(f, "") for f in names] for c in honey]
        rng.shuffle(rows)
        share, digest = _publish(s, out, who.id, names, rows, customer_filter, real, ids)
        return ShareResult(
            share.id,
            who.name,
            share.created_at,
            len(real),
            len(ids),
            names,
            out,
            digest,
            detection_limit(len(ids), ws.settings.canary_miss, exclusive_layer.hits_needed),
            factory.mailboxes_missing,
        )


def _pool(
    ws: Workspace,
    s: Session,
    layer: str,
    bias: float,
    size: int,
    make: Callable[[int], list[CanaryIdentity]],
    *,
    load: bool = True,
) -> list[tuple[int, dict[str, str]]]:
    """The canaries of a standing pool, topped up to ``size``."""
    query = select(m.Canary.id, m.Canary.sealed).where(
        m.Canary.layer == layer, m.Canary.bias == bias
    )
    existing = s.execute(query).all()
    missing = size - len(existing)
    if missing > 0:
        _insert_canaries(ws, s, make(missing), layer, bias, make)
        existing = s.execute(query).all()
    if not load:
        return []
    return [(cid, ws.vault.open(sealed, context=CANARY_CONTEXT)) for cid, sealed in existing]


def _insert_canaries(
    ws: Workspace,
    s: Session,
    canaries: list[CanaryIdentity],
    layer: str,
    bias: float,
    make: Callable[[int], list[CanaryIdentity]],
) -> list[int]:
    """Store canaries whose contact points are new; ``canaries`` is updated in place."""
    if not canaries:
        return []
    ps = ws.vault.pseudonyms

    def digests(c: CanaryIdentity) -> list[tuple[str, bytes]]:
        return [(k, ps.digest(k, c.fields[k])) for k in ("email", "phone") if c.fields.get(k)]

    # A contact point shared with a customer or another canary would credit a sighting
    # to the wrong record, so colliding canaries are drawn again.
    for _ in range(20):
        wanted = [d for c in canaries for _, d in digests(c)]
        taken = _taken(s, wanted)
        seen: set[bytes] = set()
        clashes = []
        for i, c in enumerate(canaries):
            mine = {d for _, d in digests(c)}
            if mine & taken or mine & seen:
                clashes.append(i)
            seen |= mine
        if not clashes:
            break
        for i, fresh in zip(clashes, make(len(clashes)), strict=True):
            canaries[i] = fresh
    else:
        raise InvalidInput(
            "cannot find unused canary contact points",
            hint="add mail domains or phone ranges to the workspace",
        )
    ids = list(
        s.scalars(
            insert(m.Canary).returning(m.Canary.id, sort_by_parameter_order=True),
            [
                {
                    "layer": layer,
                    "bias": bias,
                    "locale": c.locale,
                    "country": c.country,
                    "sealed": ws.vault.seal(c.fields, context=CANARY_CONTEXT),
                }
                for c in canaries
            ],
        ).all()
    )
    s.execute(
        insert(m.Pseudonym),
        [
            {"digest": d, "kind": kind, "canary_id": cid}
            for cid, c in zip(ids, canaries, strict=True)
            for kind, d in digests(c)
        ],
    )
    # A canary that took a provisioned mailbox uses it up for good.
    mark_used(
        s,
        [
            (d, cid)
            for cid, c in zip(ids, canaries, strict=True)
            for kind, d in digests(c)
            if kind == "email"
        ],
    )
    return ids


def _taken(s: Session, digests: list[bytes]) -> set[bytes]:
    out: set[bytes] = set()
    for start in range(0, len(digests), 500):
        chunk = digests[start : start + 500]
        out.update(s.scalars(select(m.Pseudonym.digest).where(m.Pseudonym.digest.in_(chunk))))
    return out


def spreadsheet_safe(cell: str) -> str:
    """Neutralise a cell a spreadsheet would run as a formula (CSV injection).

    ``+`` and ``-`` followed by a digit stay as they are: phone numbers and amounts.
    """
    if cell[:1] in ("=", "@", "\t", "\r") or (
        cell[:1] in ("+", "-") and not cell[1:2].isdigit() and cell[1:2] != " "
    ):
        return "'" + cell
    return cell


def _write_csv(out: Path, header: list[str], rows: list[list[str]]) -> tuple[Path, str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".canarino-", suffix=".csv", dir=out.parent)
    tmp = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fp:
            writer = csv.writer(fp, lineterminator="\r\n")
            writer.writerow(header)
            # Every row goes through the same writer: canaries look exactly like customers.
            writer.writerows([spreadsheet_safe(c) for c in row] for row in rows)
        with tmp.open("rb") as fp:
            for chunk in iter(lambda: fp.read(1 << 20), b""):
                digest.update(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _publish(
    s: Session,
    out: Path,
    recipient_id: int,
    names: list[str],
    rows: list[list[str]],
    customer_filter: str,
    real: list[tuple[int, dict[str, str]]],
    canary_ids: list[int],
) -> tuple[m.Share, str]:
    """Write the export and record the share; the file appears only if both succeed."""
    tmp, digest = _write_csv(out, names, rows)
    try:
        share = m.Share(
            recipient_id=recipient_id,
            fields=names,
            customer_filter=customer_filter,
            customer_count=len(real),
            canary_count=len(canary_ids),
            export_sha256=digest,
        )
        s.add(share)
        s.flush()
        _record(s, share.id, [cid for cid, _ in real], canary_ids)
        s.flush()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return share, digest


def _record(s: Session, share_id: int, customer_ids: list[int], canary_ids: list[int]) -> None:
    for start in range(0, len(customer_ids), 10_000):
        chunk = customer_ids[start : start + 10_000]
        s.execute(
            insert(m.ShareCustomer), [{"share_id": share_id, "customer_id": c} for c in chunk]
        )
    if canary_ids:
        s.execute(
            insert(m.ShareCanary), [{"share_id": share_id, "canary_id": c} for c in canary_ids]
        )


# --- the share ledger as pages show it ----------------------------------------------------


@dataclass(frozen=True)
class ShareView:
    """One share as the ledger recorded it."""

    id: int
    recipient: str
    recipient_id: int
    created_at: datetime
    fields: list[str]
    customer_filter: str
    rows: int
    export_sha256: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat(timespec="seconds")
        return data


def _share_view(row: m.Share, recipient: m.Recipient) -> ShareView:
    return ShareView(
        row.id,
        recipient.name,
        recipient.id,
        row.created_at,
        list(row.fields),
        row.customer_filter,
        row.customer_count + row.canary_count,
        row.export_sha256,
    )


def list_shares(
    ws: Workspace, *, limit: int = 50, offset: int = 0, recipient_id: int | None = None
) -> store.Page[ShareView]:
    """Shares, newest first, optionally of one recipient; reused until data changes."""

    def load() -> store.Page[ShareView]:
        query = select(m.Share, m.Recipient).join(
            m.Recipient, m.Recipient.id == m.Share.recipient_id
        )
        if recipient_id is not None:
            query = query.where(m.Share.recipient_id == recipient_id)
        with ws.db.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.execute(query.order_by(m.Share.id.desc()).limit(limit).offset(offset)).all()
            return store.Page([_share_view(sh, r) for sh, r in rows], total, limit, offset)

    return ws.db.cached(("shares", limit, offset, recipient_id), load)


def get_share(ws: Workspace, share_id: int) -> ShareView:
    """Share ``share_id`` as the ledger recorded it."""
    with ws.db.session() as s:
        row = s.execute(
            select(m.Share, m.Recipient)
            .join(m.Recipient, m.Recipient.id == m.Share.recipient_id)
            .where(m.Share.id == share_id)
        ).first()
        if row is None:
            raise NotFound(f"no share {share_id}", hint="the overview lists every share")
        return _share_view(*row)
