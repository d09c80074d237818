from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from canarino.cli import app
from canarino.demo import LEAKER, run_demo


def test_demo_names_the_leaking_vendor_and_delivers_every_notice(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, customers=1_500, seed=7)
    assert summary.named_first == LEAKER
    top = summary.trace.suspects[0]
    assert top.canaries_seen >= 1 and top.canaries_seen == summary.trace.canaries_matched
    assert summary.trace.customers_matched + summary.trace.canaries_matched == summary.leaked_rows
    assert summary.incident.people == summary.trace.customers_matched
    assert summary.prepared == summary.sent == summary.received > 0
    assert summary.prepared + sum(summary.skipped.values()) == summary.incident.people
    assert summary.recipients == 25 and len(summary.shares) == 25


def test_demo_command_prints_a_readable_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--customers", "800", "--keep", str(tmp_path / "d")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert f"canarino named first: {LEAKER}" in " ".join(result.output.split())
    assert "Art. 33" in result.output and "received by the loopback" in result.output
    assert (tmp_path / "d" / "workspace" / "canarino.db").exists()
