from __future__ import annotations

from pathlib import Path

import pytest

from canarino.delivery import NOTICE_CONTEXT, prepare_notices, print_letters

from .support import Case, notices_of


def test_letters_are_printed_in_batches_with_address_blocks(case: Case, tmp_path: Path) -> None:
    prepare_notices(case.ws, case.incident_id)
    html_report = print_letters(
        case.ws, case.incident_id, tmp_path / "html", batch_size=5, pdf=False
    )
    assert html_report.format == "html" and html_report.printed == case.letters
    assert len(html_report.files) == 3 and "print-ready HTML" in html_report.note
    page = html_report.files[0].read_text()
    assert page.count('<section class="letter"') == 5
    letters = notices_of(case.ws, case.incident_id, "letter")
    first = case.ws.vault.open(letters[0].sealed, context=NOTICE_CONTEXT)
    assert all(line in page for line in first["address"][:2])
    assert oct(html_report.files[0].stat().st_mode & 0o777) == "0o600"
    assert {r.state for r in letters} == {"sent"}
    assert all((r.events or [])[-1]["event"] == "printed" for r in letters)
    assert print_letters(case.ws, case.incident_id, tmp_path / "again").printed == 0


def test_letters_become_a_pdf_when_weasyprint_works(case: Case, tmp_path: Path) -> None:
    from canarino.delivery.letters import _weasyprint

    engine, why = _weasyprint()
    if engine is None:
        pytest.skip(why)
    prepare_notices(case.ws, case.incident_id)
    report = print_letters(case.ws, case.incident_id, tmp_path, batch_size=50)
    assert report.format == "pdf" and report.printed == case.letters and len(report.files) == 1
    assert report.files[0].read_bytes().startswith(b"%PDF")
