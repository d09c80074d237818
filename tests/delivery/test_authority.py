from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from canarino.delivery import export_report, report_deliveries, send_report
from canarino.errors import DeliveryError, InvalidInput, NotFound

from .support import Case, RecordingSink, free_port, parse

AUTHORITY = "protocollo@gpdp.example.it"
NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def test_exported_report_is_written_privately_and_its_delivery_recorded(
    case: Case, tmp_path: Path
) -> None:
    delivery = export_report(case.ws, case.incident_id, "garante", tmp_path / "out", now=NOW)
    path = tmp_path / "out" / (delivery.file or "")
    assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert text.startswith("# ") and f"Incident #{case.incident_id}" in text
    assert (delivery.channel, delivery.state, delivery.form) == ("file", "exported", "garante")
    assert len(delivery.sha256) == 64 and delivery.gaps > 0
    as_json = export_report(case.ws, case.incident_id, "IT", tmp_path / "out", fmt="json", now=NOW)
    assert json.loads((tmp_path / "out" / (as_json.file or "")).read_text())["form"] == "garante"
    assert report_deliveries(case.ws, case.incident_id) == [delivery, as_json]


def test_sent_report_goes_through_the_relay_with_a_stable_message_id(
    case: Case, smtp: RecordingSink
) -> None:
    first = send_report(
        case.ws, case.incident_id, "garante", AUTHORITY, host=smtp.host, port=smtp.port, now=NOW
    )
    again = send_report(
        case.ws, case.incident_id, "garante", AUTHORITY, host=smtp.host, port=smtp.port, now=NOW
    )
    assert first.state == again.state == "sent" and first.to == AUTHORITY
    assert first.message_id == again.message_id  # the same draft, the same Message-ID
    assert len(smtp.messages) == 2
    msg = parse(smtp.messages[0].data)
    assert msg["Message-ID"] == first.message_id and smtp.messages[0].recipients == [AUTHORITY]
    assert smtp.messages[0].mail_from == "privacy@canary-mail.it"
    assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
    attached = [p.get_filename() for p in msg.iter_attachments()]
    assert attached == [f"report-incident{case.incident_id}-garante.json"]
    assert [d.state for d in report_deliveries(case.ws, case.incident_id)] == ["sent", "sent"]


def test_refused_or_cut_off_report_is_recorded_with_its_reason(
    case: Case, smtp: RecordingSink
) -> None:
    smtp.reject[AUTHORITY] = "550 5.7.1 relaying denied"
    refused = send_report(
        case.ws, case.incident_id, "garante", AUTHORITY, host=smtp.host, port=smtp.port
    )
    assert refused.state == "failed" and refused.reason == "550 5.7.1 relaying denied"
    del smtp.reject[AUTHORITY]
    smtp.drop_during_data.add(AUTHORITY)
    cut = send_report(
        case.ws, case.incident_id, "garante", AUTHORITY, host=smtp.host, port=smtp.port
    )
    assert cut.state == "in_doubt" and "during DATA" in (cut.reason or "")
    port = free_port()
    with pytest.raises(DeliveryError, match="cannot connect"):
        send_report(case.ws, case.incident_id, "garante", AUTHORITY, host="127.0.0.1", port=port)
    states = [(d.state, d.reason is not None) for d in report_deliveries(case.ws, 1)]
    assert states == [("failed", True), ("in_doubt", True), ("failed", True)]


@pytest.mark.parametrize(
    ("to", "address", "error", "match"),
    [
        ("garante", "not an address", InvalidInput, "not valid"),
        ("garante", "", InvalidInput, "not valid"),
        ("atlantis", AUTHORITY, InvalidInput, "no report form"),
    ],
)
def test_bad_report_requests_are_refused_before_anything_is_sent(
    case: Case, smtp: RecordingSink, to: str, address: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        send_report(case.ws, case.incident_id, to, address, host=smtp.host, port=smtp.port)
    assert smtp.messages == [] and report_deliveries(case.ws, case.incident_id) == []


def test_unknown_format_or_incident_is_refused(case: Case, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown format"):
        export_report(case.ws, case.incident_id, "garante", tmp_path, fmt="docx")
    with pytest.raises(NotFound):
        export_report(case.ws, 999, "garante", tmp_path)
    with pytest.raises(NotFound):
        report_deliveries(case.ws, 999)


def test_report_commands_export_send_and_list_the_deliveries(
    case: Case, smtp: RecordingSink, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from canarino.cli import app

    runner = CliRunner()
    w = ("-w", str(tmp_path / "ws"), "--json")
    incident = str(case.incident_id)
    exported = runner.invoke(
        app, ["notices", "report", incident, "--to", "garante", "--out", str(tmp_path / "o"), *w]
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["state"] == "exported"
    smtp_at = f"{smtp.host}:{smtp.port}"
    sent = runner.invoke(
        app,
        ["notices", "report", incident, "--to", "IT", "--email", AUTHORITY, "--smtp", smtp_at, *w],
    )
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)["message_id"] == parse(smtp.messages[0].data)["Message-ID"]
    listed = runner.invoke(app, ["notices", "reports", incident, *w])
    assert [d["state"] for d in json.loads(listed.stdout)] == ["exported", "sent"]
    table = runner.invoke(app, ["notices", "reports", incident, "-w", str(tmp_path / "ws")])
    assert table.exit_code == 0 and "exported" in table.output and "sent" in table.output
    both = runner.invoke(app, ["notices", "report", incident, "--to", "garante", *w])
    assert both.exit_code == 1 and "either --out" in both.output
    no_relay = runner.invoke(
        app, ["notices", "report", incident, "--to", "garante", "--email", AUTHORITY, *w]
    )
    assert no_relay.exit_code == 1 and "--smtp" in no_relay.output
