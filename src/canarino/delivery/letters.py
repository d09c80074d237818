"""Printed letters: the address block, queueing a letter instead of an e-mail, print batches."""

from __future__ import annotations

import hashlib
import os
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy import Connection, insert, select, update

from .. import models as m
from .. import store
from ..customers import load_customers
from ..errors import DeliveryError
from ..notices import idempotency_key, notice_reference
from ..workspace import Workspace
from .outbox import (
    LETTER,
    NOTICE_CONTEXT,
    QUEUED,
    SENDING,
    SENT,
    _append_event,
    _display_name,
    _event,
    _now,
    _render_spec,
    _row,
)

_LETTERS = Environment(
    loader=PackageLoader("canarino", "templates/notices"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class LetterReport:
    """What printing letters did: how many, in which files and which format."""

    incident_id: int
    printed: int = 0
    files: list[Path] = field(default_factory=list)
    format: str = "pdf"
    note: str = ""


def _letter_address(record: Mapping[str, str]) -> list[str] | None:
    """The address block of a letter, or ``None`` if the record has no usable address."""
    street = record.get("address", "").strip()
    city, postcode = record.get("city", "").strip(), record.get("postcode", "").strip()
    if not street or not (city or postcode):
        return None
    country = record.get("country", "").strip().upper()
    region = record.get("region", "").strip()
    if country == "US":
        place = f"{city}, {region} {postcode}".strip(" ,")
    elif country == "IT":
        place = " ".join(p for p in (postcode, city, region) if p)
    else:
        place = " ".join(p for p in (postcode, city) if p)
    lines = [_display_name(record) or "", street, place]
    if country:
        lines.append(Locale("en").territories.get(country, country).upper())
    return [" ".join(line.split()) for line in lines if line.strip()]


def _letter_row(
    ws: Workspace,
    incident_id: int,
    customer_id: int,
    spec: Mapping[str, Any],
    address: list[str],
    now: datetime,
    note: str | None,
) -> dict[str, Any]:
    reference = notice_reference(idempotency_key(incident_id, customer_id, LETTER))
    notice = _render_spec(spec, reference=reference)
    spec = {**spec, "ctx": {**spec["ctx"], "reference": reference}}
    return _row(
        ws,
        incident_id,
        customer_id,
        LETTER,
        notice.language,
        {"address": address, "render": spec},
        now,
        content_sha256=hashlib.sha256(notice.text.encode()).hexdigest(),
        note=note,
    )


def _queue_letter(
    ws: Workspace, conn: Connection, notice_id: int, reason: str, now: datetime
) -> bool:
    """Queue a letter to the person of a failed e-mail notice; false if no address is known."""
    row = conn.execute(
        select(m.Notice.incident_id, m.Notice.customer_id, m.Notice.sealed).where(
            m.Notice.id == notice_id
        )
    ).one()
    incident_id, customer_id, sealed = row
    key = idempotency_key(incident_id, customer_id, LETTER)
    if conn.execute(select(m.Notice.id).where(m.Notice.idempotency_key == key)).first():
        return True
    spec = ws.vault.open(sealed, context=NOTICE_CONTEXT).get("render")
    record = load_customers(ws, [customer_id]).get(customer_id, {})
    address = _letter_address(record)
    if spec is None or address is None:
        _append_event(conn, notice_id, _event("no_letter", now, reason="no postal address"))
        return False
    row_values = _letter_row(
        ws, incident_id, customer_id, spec, address, now, f"instead of e-mail: {reason}"
    )
    conn.execute(insert(m.Notice), [row_values])
    _append_event(conn, notice_id, _event("letter_queued", now, reason=reason))
    return True


def _weasyprint() -> tuple[Any | None, str]:
    try:
        with warnings.catch_warnings():
            # WeasyPrint warns at import about optional system libraries it can do without.
            warnings.simplefilter("ignore")
            import weasyprint  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:
        return None, f"WeasyPrint is not usable here ({type(exc).__name__}: {exc})"
    return weasyprint, ""


def print_letters(
    ws: Workspace,
    incident_id: int,
    out_dir: Path,
    *,
    batch_size: int = 200,
    pdf: bool | None = None,
    now: datetime | None = None,
) -> LetterReport:
    """Write the queued letters of an incident as print-ready batches; mark them sent.

    Each batch is one file of A4 letters with the address placed for a windowed envelope
    (DIN 5008 / C5 window). PDF with WeasyPrint when it is installed and works (``pdf``
    None: try it), else print-ready HTML, and ``LetterReport.note`` says why. Files are
    readable by the owner only: they hold names and addresses.
    """
    now = _now(now)
    with ws.db.session() as s:
        store.get_incident(s, incident_id)
        ids = s.scalars(
            select(m.Notice.id)
            .where(
                m.Notice.incident_id == incident_id,
                m.Notice.channel == LETTER,
                m.Notice.state == QUEUED,
            )
            .order_by(m.Notice.id)
        ).all()
    report = LetterReport(incident_id)
    tz = ZoneInfo(ws.settings.timezone)
    engine, why = (None, "HTML asked for") if pdf is False else _weasyprint()
    if engine is None:
        report.format, report.note = "html", f"{why}; letters written as print-ready HTML"
        if pdf:
            raise DeliveryError(why, hint="install weasyprint and the pango library, or use HTML")
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%S")
    owner = secrets.token_hex(8)
    for number, start in enumerate(range(0, len(ids), batch_size), start=1):
        batch = ids[start : start + batch_size]
        with ws.db.engine.begin() as conn:
            rows = conn.execute(
                update(m.Notice)
                .where(m.Notice.id.in_(batch), m.Notice.state == QUEUED)
                .values(
                    state=SENDING,
                    attempts=m.Notice.attempts + 1,
                    lease_until=now + timedelta(minutes=30),
                    lease_owner=owner,
                    updated_at=now,
                )
                .returning(m.Notice.id, m.Notice.sealed, m.Notice.reference)
            ).all()
        letters = []
        for nid, sealed, reference in sorted(rows):
            payload = ws.vault.open(sealed, context=NOTICE_CONTEXT)
            notice = _render_spec(payload["render"], reference=reference)
            letters.append(
                {
                    "id": nid,
                    "address": payload["address"],
                    "language": notice.language,
                    "date": format_date(now.astimezone(tz).date(), "long", locale=notice.language),
                    "body": Markup(notice.body_html),
                }
            )
        page = _LETTERS.get_template("letter.html").render(
            letters=letters,
            company=" ".join(ws.settings.company_name.split()),
            company_email=ws.settings.company_email,
        )
        suffix = "pdf" if engine is not None else "html"
        path = out_dir / f"letters-incident{incident_id}-{stamp}-{number:03d}.{suffix}"
        data = engine.HTML(string=page).write_pdf() if engine is not None else page.encode()
        _write_private(path, data)
        with ws.db.engine.begin() as conn:
            for letter in letters:
                conn.execute(
                    update(m.Notice)
                    .where(m.Notice.id == letter["id"], m.Notice.lease_owner == owner)
                    .values(state=SENT, sent_at=now, lease_until=None, updated_at=now)
                )
                _append_event(conn, letter["id"], _event("printed", now, file=path.name))
        report.printed += len(letters)
        report.files.append(path)
    return report


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(data)
        fp.flush()
        os.fsync(fp.fileno())
    tmp.replace(path)
