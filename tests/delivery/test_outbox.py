from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from canarino import models as m
from canarino.delivery import (
    NO_CHANNEL,
    in_doubt_notices,
    notice_problems,
    notice_states,
    prepare_notices,
    send_notices,
)
from canarino.errors import NotFound

from .support import Case, free_port


def test_prepare_and_send_refuse_an_unknown_incident(case: Case) -> None:
    with pytest.raises(NotFound):
        prepare_notices(case.ws, 999)
    with pytest.raises(NotFound):
        send_notices(case.ws, 999, host="127.0.0.1", port=free_port())
    with pytest.raises(NotFound):
        notice_states(case.ws, 999)
    with pytest.raises(NotFound):
        in_doubt_notices(case.ws, 999)


def test_problems_are_listed_per_notice_by_the_library_and_the_command(
    case: Case, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from canarino.cli import app

    with case.ws.db.session() as s:
        s.execute(update(m.Customer).where(m.Customer.id == 3).values(language="pt"))
    runner = CliRunner()
    w = ("-w", str(tmp_path / "ws"))
    prepared = runner.invoke(app, ["notices", "prepare", str(case.incident_id), *w])
    assert prepared.exit_code == 0, prepared.output
    assert f"{case.unreachable} people: {NO_CHANNEL}" in " ".join(prepared.output.split())
    assert "fallback language: no notice texts in 'pt'" in prepared.output
    problems = notice_problems(case.ws, case.incident_id)
    assert len(problems) == case.letters + case.unreachable + 1
    listed = runner.invoke(app, ["notices", "problems", str(case.incident_id), "--json", *w])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [p.__dict__ for p in problems]
    table = runner.invoke(app, ["notices", "problems", str(case.incident_id), *w])
    assert table.exit_code == 0 and "none" in table.output and "letter" in table.output
    assert all(f" {p.notice_id} " in table.output for p in problems)
    assert "@" not in listed.stdout + table.output
