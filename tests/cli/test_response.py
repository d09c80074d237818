from __future__ import annotations

import json
from pathlib import Path

import pytest
from icalendar import Calendar
from typer.testing import CliRunner

from canarino.cli import app
from canarino.shares import ShareResult
from canarino.testing import make_dump
from canarino.trace import run_trace
from canarino.workspace import Workspace

from ..delivery.test_sms import SECRET, Provider, provider  # noqa: F401  (loopback provider)

runner = CliRunner()


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


@pytest.fixture
def w(shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path) -> tuple[str, str]:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.25, seed=3)
    trace = run_trace(loaded, dump).trace_id
    flags = ("-w", str(loaded.settings.workspace))
    run("incidents", "open", "--trace", str(trace), "--aware-at", "2026-11-20T10:00+01:00", *flags)
    return flags


def test_incident_response_through_the_cli(w: tuple[str, str], tmp_path: Path) -> None:
    listed = json.loads(run("incidents", "obligations", "1", "--json", *w))
    keys = [o["key"] for o in listed["obligations"]]
    assert "eu.gdpr.art33.authority@IT" in keys
    human = run("incidents", "obligations", "1", "--why", *w)
    assert "Art. 33(1)" in human and "not owed" in human
    run(
        "incidents",
        "facts",
        "1",
        "--reason",
        "forensics",
        "--discovered-at",
        "2026-11-19T18:00+01:00",
        "--measures",
        "vendor access revoked",
        "--count",
        "US-TX=300",
        "--category",
        "government_id",
        *w,
    )
    done = run("incidents", "done", "1", "eu.gdpr.art33.authority", "--note", "case 42", *w)
    assert "done" in done
    history = json.loads(run("incidents", "history", "1", "--json", *w))
    assert [h["reason"] for h in history][-2:] == [
        "forensics",
        "eu.gdpr.art33.authority@IT marked done: case 42",
    ]
    assert "us-tx.ag.2023@US-TX" in history[1]["added"]
    assert "marked done" in run("incidents", "history", "1", *w)

    draft = tmp_path / "garante.md"
    assert "gaps to fill" in run(
        "incidents", "report", "1", "--to", "garante", "--out", str(draft), *w
    )
    text = draft.read_text(encoding="utf-8")
    assert "vendor access revoked" in text and "GAP" in text
    assert "Notice of" not in run("incidents", "report", "1", "--to", "us-tx", *w, ok=False)

    ics = tmp_path / "deadlines.ics"
    assert "deadlines written" in run("incidents", "calendar", "1", "--out", str(ics), *w)
    events = [c for c in Calendar.from_ical(ics.read_bytes()).walk("VEVENT")]
    assert events and all(e.walk("VALARM") or "[DONE]" in str(e["SUMMARY"]) for e in events)

    register = tmp_path / "register.xlsx"
    assert "1 incidents written" in run("incidents", "register", "--out", str(register), *w)
    assert register.stat().st_size > 0


BAD_INPUT: list[tuple[tuple[str, ...], str]] = [
    (("incidents", "facts", "1", "--reason", "x", "--count", "TX300"), "CODE=NUMBER"),
    (("incidents", "facts", "1", "--reason", "x", "--key-exposed"), "not encrypted"),
    (("incidents", "facts", "1", "--reason", "x", "--event", "hack"), "unknown event"),
    (("incidents", "report", "1", "--to", "nobody"), "no report form"),
    (("incidents", "report", "1", "--to", "gdpr", "--format", "pdf"), "unknown format"),
    (("incidents", "register", "--out", "register.pdf"), ".csv or .xlsx"),
    (("incidents", "done", "1", "nothing.here"), "not a duty of this incident"),
    (("incidents", "history", "99"), "no incident 99"),
    (("notices", "prepare", "1", "--sms", "sometimes"), "never, fallback, always"),
    (("notices", "send", "1"), "add --smtp HOST:PORT"),
    (("notices", "send", "1", "--channel", "fax"), "must be email or sms"),
    (("notices", "send", "1", "--channel", "sms"), "no SMS provider is configured"),
]


def test_bad_input_is_one_error_line_and_changes_nothing(w: tuple[str, str]) -> None:
    # One incident for the whole table: opening one costs a trace.
    before = run("incidents", "history", "1", "--json", *w)
    for args, message in BAD_INPUT:
        result = runner.invoke(app, [*args, *w])
        assert result.exit_code == 1 and message in result.output, args
        assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert run("incidents", "history", "1", "--json", *w) == before


def test_text_messages_through_the_cli(
    w: tuple[str, str],
    provider: Provider,  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "SMS_PROVIDER": "json",
        "SMS_URL": provider.url + "/sms",
        "SMS_FROM": "Esempio",
        "SMS_TOKEN": "bearer-token",
        "SMS_SECRET": SECRET,
    }.items():
        monkeypatch.setenv("CANARINO_" + name, value)
    prepared = run("notices", "prepare", "1", "--sms", "always", *w)
    count = int(next(x for x in prepared.splitlines() if "text messages prepared" in x).split()[0])
    assert count > 0
    sent = run("notices", "send", "1", "--channel", "sms", "--json", *w)
    report = json.loads(sent[sent.index("{") :])
    assert report["sent"] == count == len(provider.received) and report["failed"] == 0
    assert "+" not in run("notices", "problems", "1", *w)
    again = run("notices", "send", "1", "--channel", "sms", *w)
    assert f"already sent {count:,}" in again and len(provider.received) == count
