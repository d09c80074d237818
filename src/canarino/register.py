"""The internal breach register (GDPR Art. 33(5)) as CSV or XLSX: every incident, owed or not.

One row per incident with its facts, effects, remedial action, the duties owed with their
state, the rules that were not owed with the reason, and which rules used are unverified.
Cells a spreadsheet would run as formulas are neutralised (CSV) or written as plain text
(XLSX). The file is written next to its destination and renamed into place, so a failure
never leaves half a register.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xlsxwriter  # type: ignore[import-untyped]

from .errors import InvalidInput
from .incidents import IncidentView, incident_history, list_incidents
from .shares import spreadsheet_safe
from .workspace import Workspace

COLUMNS: tuple[tuple[str, str], ...] = (
    ("incident", "Incident"),
    ("title", "Title"),
    ("status", "Status"),
    ("occurred_at", "Occurred"),
    ("discovered_at", "Discovered"),
    ("aware_at", "Became aware"),
    ("determined_at", "Determined"),
    ("contained_at", "Contained"),
    ("people", "People affected"),
    ("jurisdictions", "Where they live"),
    ("data", "Data exposed"),
    ("encryption", "Encryption"),
    ("description", "Facts"),
    ("cause", "Cause"),
    ("risk", "Risk level"),
    ("effects", "Effects and risk reasoning"),
    ("measures", "Remedial action"),
    ("owed", "Duties owed (due, state)"),
    ("not_owed", "Not owed, and why"),
    ("unverified", "Unverified rules used"),
    ("assessments", "Assessments recorded"),
    ("assessed_at", "Last assessed"),
)


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="minutes") if value else ""


def _row(view: IncidentView, assessments: int) -> dict[str, str]:
    facts = view.facts
    encrypted = "no"
    if facts.get("encrypted"):
        encrypted = "yes, key exposed" if facts.get("key_exposed") else "yes, key safe"
    owed = [
        f"{o.key}: {_iso(o.due_at) or 'without undue delay'}, {o.status}"
        + (f" {_iso(o.done_at)}" if o.done_at else "")
        for o in view.obligations
    ]
    owed += [f"{w['key']}: done {w.get('done_at') or ''}, no longer owed" for w in view.withdrawn]
    unverified = sorted({o.rule_id for o in view.obligations if o.unverified})
    effects = "; ".join(p for p in (facts.get("consequences"), view.risk_reason) if p)
    return {
        "incident": str(view.id),
        "title": view.title,
        "status": view.status,
        "occurred_at": _iso(view.occurred_at),
        "discovered_at": _iso(view.discovered_at),
        "aware_at": _iso(view.aware_at),
        "determined_at": _iso(view.determined_at),
        "contained_at": _iso(view.contained_at),
        "people": str(view.people),
        "jurisdictions": ", ".join(f"{c} {n}" for c, n in view.by_jurisdiction.items())
        + "".join(f"; {c} {n} (counted by hand)" for c, n in (facts.get("counts") or {}).items()),
        "data": ", ".join(view.by_field) + "".join(f", {c}" for c in facts.get("categories", [])),
        "encryption": encrypted,
        "description": str(facts.get("description", "")),
        "cause": str(facts.get("cause", "")),
        "risk": view.risk,
        "effects": effects,
        "measures": str(facts.get("measures", "")),
        "owed": "\n".join(owed) or "nothing owed",
        "not_owed": "\n".join(f"{rule}: {reason}" for rule, reason in view.not_owed),
        "unverified": ", ".join(unverified),
        "assessments": str(assessments),
        "assessed_at": _iso(view.assessed_at),
    }


def register_rows(ws: Workspace) -> list[dict[str, str]]:
    """One register row per incident, oldest first, including those where nothing is owed."""
    views = sorted(list_incidents(ws), key=lambda v: v.id)
    return [_row(v, len(incident_history(ws, v.id))) for v in views]


@contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out`` that replaces it only when the block succeeds."""
    if not out.parent.is_dir():
        raise InvalidInput(
            f"{out.parent}: no such folder", hint="create it or choose another --out"
        )
    fd, name = tempfile.mkstemp(prefix=".canarino-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def write_file(out: Path, data: bytes) -> Path:
    """Write ``data`` to ``out`` atomically (a report, a calendar)."""
    with _atomic(out) as tmp:
        tmp.write_bytes(data)
    return out


def write_register(rows: list[dict[str, Any]], out: Path) -> Path:
    """Write the register to ``out``: ``.csv`` or ``.xlsx`` by suffix."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InvalidInput(f"{out.name}: the register is written as .csv or .xlsx")
    header = [label for _, label in COLUMNS]
    with _atomic(out) as tmp:
        if suffix == ".csv":
            with tmp.open("w", encoding="utf-8", newline="") as fp:
                writer = csv.writer(fp, lineterminator="\r\n")
                writer.writerow(header)
                for row in rows:
                    writer.writerow([spreadsheet_safe(str(row[key])) for key, _ in COLUMNS])
        else:
            # strings_to_formulas off and write_string: a cell is never run as a formula.
            book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False})
            sheet = book.add_worksheet("Breach register")
            bold = book.add_format({"bold": True})
            wrap = book.add_format({"text_wrap": True, "valign": "top"})
            for col, label in enumerate(header):
                sheet.write_string(0, col, label, bold)
            for line, row in enumerate(rows, start=1):
                for col, (key, _) in enumerate(COLUMNS):
                    sheet.write_string(line, col, str(row[key]), wrap)
            sheet.freeze_panes(1, 1)
            sheet.set_column(0, len(header) - 1, 24)
            book.close()
    return out


def export_register(ws: Workspace, out: Path) -> int:
    """Write the workspace's breach register to ``out``; returns the number of incidents."""
    rows = register_rows(ws)
    write_register(rows, out)
    return len(rows)
