from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from canarino.cli import app
from canarino.demo import LEAKER, run_demo


def test_demo_names_the_leaking_vendor_and_delivers_every_notice(tmp_path: Path) -> None:
    # A small company has few canaries per share, so the leak is larger than in the full
    # demo to keep at least two canaries in it (chance of fewer: about 1 in 100,000).
    summary = run_demo(tmp_path, customers=1_500, seed=7, leak_fraction=0.5)
    assert summary.named_first == LEAKER
    top = summary.trace.suspects[0]
    assert top.accused and top.canaries_seen == summary.trace.canaries_matched >= 2
    assert not any(s.accused for s in summary.trace.suspects[1:])
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
    # Too few customers here for a sure canary hit; the library test checks the verdict.
    assert "canarino named first:" in " ".join(result.output.split())
    assert "Art. 33" in result.output and "received by the loopback" in result.output
    assert (tmp_path / "d" / "workspace" / "canarino.db").exists()
