from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canarino.cli import app, command_paths
from canarino.testing import make_dump

runner = CliRunner()


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


@pytest.fixture
def workspace(tmp_path: Path, customers_csv: Path) -> Path:
    ws = tmp_path / "ws"
    run("init", str(ws), "--mail-domain", "canary-mail.it", "--phone-range", "+39347555")
    run("customers", "import", str(customers_csv), "-w", str(ws))
    return ws


@pytest.mark.parametrize("command", command_paths(), ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    output = run(*command, "--help")
    assert "Usage:" in output and len(output.splitlines()) > 3


def test_full_flow_through_the_cli(workspace: Path, tmp_path: Path) -> None:
    w = ("-w", str(workspace))
    assert "400" in run("customers", "count", *w)
    run("recipients", "add", "Vendor A", "--kind", "vendor", *w)
    run("recipients", "add", "Ada", "--kind", "employee", "--parent", "Vendor A", *w)
    listed = json.loads(run("recipients", "list", "--json", *w))
    assert [r["name"] for r in listed] == ["Ada", "Vendor A"]
    export = tmp_path / "a.csv"
    share = json.loads(
        run(
            "share",
            "--to",
            "Vendor A",
            "--fields",
            "first_name,email,phone",
            "--out",
            str(export),
            "--json",
            *w,
        )
    )
    assert share["rows"] > 400 and export.exists()
    dump = tmp_path / "dump.csv"
    make_dump(export, dump, fraction=0.3, seed=2)
    result = json.loads(run("trace", str(dump), "--json", *w))
    assert result["suspects"][0]["recipient"] == "Vendor A"
    human = run("trace", str(dump), *w)
    assert "Vendor A" in human and "Exposed" in human
    assert "Vendor A" in run("traces", *w)
    incident = json.loads(
        run("incidents", "open", "--trace", str(result["trace_id"]), "--json", *w)
    )
    assert incident["people"] == result["customers_matched"]
    shown = run("incidents", "show", str(incident["id"]), *w)
    assert "Art. 33(1)" in shown and "left" in shown
    assert "open" in run("incidents", "list", *w)


def test_import_reports_refused_rows_by_line(workspace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("nome,email\nA,a@posta.it\nB,not-an-email\n", encoding="utf-8")
    output = run("customers", "import", str(bad), "-w", str(workspace))
    assert "1 imported" in output and "line 3" in output and "not-an-email" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("trace", "missing.csv"), "no such file"),
        (("incidents", "show", "99"), "no incident 99"),
        (("recipients", "add", "X", "--kind", "alien"), "unknown recipient kind"),
        (("share", "--to", "nobody", "--fields", "email", "--out", "x.csv"), "no recipient named"),
        (("notices", "send", "1", "--smtp", "nohostport"), "HOST:PORT"),
        (("incidents", "open", "--trace", "1", "--aware-at", "yesterday"), "not a date-time"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    workspace: Path, args: tuple[str, ...], message: str
) -> None:
    result = runner.invoke(app, [*args, "-w", str(workspace)])
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output


def test_commands_outside_a_workspace_explain_how_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CANARINO_WORKSPACE", raising=False)
    result = runner.invoke(app, ["recipients", "list"])
    assert result.exit_code == 1 and "canarino init" in result.output


def test_formats_lists_csv() -> None:
    assert "csv" in run("formats")


def test_trace_reads_standard_input_and_lists_unreadable_members(
    workspace: Path, tmp_path: Path
) -> None:
    import zipfile

    w = ("-w", str(workspace))
    run("recipients", "add", "Vendor A", *w)
    export = tmp_path / "a.csv"
    run("share", "--to", "Vendor A", "--fields", "first_name,email", "--out", str(export), *w)
    dump = tmp_path / "dump.csv"
    make_dump(export, dump, fraction=0.5, seed=3)
    result = runner.invoke(app, ["trace", "-", "--json", *w], input=dump.read_bytes())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["suspects"][0]["recipient"] == "Vendor A"
    archive = tmp_path / "leak.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dump.csv", dump.read_bytes())
        zf.writestr("junk.bin", b"\0\1\2" * 10)
    output = run("trace", str(archive), *w)
    assert "Not read:" in output and "junk.bin" in output


def test_notices_commands_prepare_send_and_report_in_doubt(workspace: Path, tmp_path: Path) -> None:
    from canarino.testing import SmtpSink

    w = ("-w", str(workspace))
    run("recipients", "add", "Vendor A", *w)
    export = tmp_path / "a.csv"
    run("share", "--to", "Vendor A", "--fields", "first_name,email", "--out", str(export), *w)
    dump = tmp_path / "dump.csv"
    make_dump(export, dump, fraction=0.2, seed=5)
    trace_id = json.loads(run("trace", str(dump), "--json", *w))["trace_id"]
    incident = json.loads(run("incidents", "open", "--trace", str(trace_id), "--json", *w))["id"]
    prepared = json.loads(run("notices", "prepare", str(incident), "--json", *w))["prepared"]
    with SmtpSink() as sink:
        sent = json.loads(
            run(
                "notices", "send", str(incident), "--smtp", f"{sink.host}:{sink.port}", "--json", *w
            )
        )
        assert sent["sent"] == prepared == len(sink.messages) > 0
    assert "No notice is in doubt" in run("notices", "in-doubt", str(incident), *w)
    assert "0 notices settled" in run("notices", "resolve", str(incident), "resend", *w)
    result = runner.invoke(
        app, ["notices", "send", str(incident), "--smtp", "h:1", "--dkim-domain", "x.it", *w]
    )
    assert result.exit_code == 1 and "together" in result.output
