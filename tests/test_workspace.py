from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from canarino.errors import InvalidInput, WorkspaceError
from canarino.settings import CONFIG_FILE, Settings, load_settings
from canarino.workspace import check_phone_range, init_workspace, open_workspace, resolve_workspace


def test_init_creates_config_secret_and_database(tmp_path: Path) -> None:
    ws = init_workspace(
        tmp_path / "w", mail_domains=["Canary-Mail.IT"], phone_ranges=["+39 347 555"]
    )
    secret = tmp_path / "w" / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert ws.settings.mail_domains == ["canary-mail.it"]
    assert ws.settings.phone_ranges == ["+39347555"]
    assert (tmp_path / "w" / "canarino.db").exists()
    config = (tmp_path / "w" / CONFIG_FILE).read_text()
    assert secret.read_text().strip() not in config
    ws.close()


def test_init_twice_keeps_the_secret(tmp_path: Path) -> None:
    init_workspace(tmp_path, mail_domains=["a.it"], phone_ranges=[]).close()
    first = (tmp_path / "secret.key").read_text()
    init_workspace(tmp_path, mail_domains=["a.it"], phone_ranges=[]).close()
    assert (tmp_path / "secret.key").read_text() == first


def test_init_on_an_old_workspace_upgrades_it_and_keeps_its_settings(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from canarino.store import _alembic_config, make_engine

    init_workspace(tmp_path, mail_domains=["a.it"], phone_ranges=["+39347555"]).close()
    engine = make_engine(f"sqlite:///{tmp_path / 'canarino.db'}")
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    with pytest.raises(WorkspaceError, match="revision 0008"):
        open_workspace(tmp_path)
    ws = init_workspace(tmp_path, mail_domains=[], phone_ranges=[])
    assert ws.settings.mail_domains == ["a.it"] and ws.settings.phone_ranges == ["+39347555"]
    ws.close()
    reopened = open_workspace(tmp_path)
    with reopened.db.session() as s:
        assert s.execute(text("SELECT count(*) FROM trace_customers")).scalar() == 0
    reopened.close()
    engine.dispose()


@pytest.mark.parametrize(
    ("domains", "ranges", "message"),
    [
        ([], [], "mail-domain"),
        (["not a domain"], [], "not a mail domain"),
        (["a.it"], ["12ab"], "not a phone range"),
        (["a.it"], ["+999123"], "country calling code"),
    ],
)
def test_init_refuses_bad_options(
    tmp_path: Path, domains: list[str], ranges: list[str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        init_workspace(tmp_path / "w", mail_domains=domains, phone_ranges=ranges)
    assert not (tmp_path / "w").exists()


def test_phone_range_accepts_00_prefix() -> None:
    assert check_phone_range("0039 347-555") == "+39347555"


def test_workspace_is_found_from_a_subfolder_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "w", mail_domains=["a.it"], phone_ranges=[]).close()
    sub = tmp_path / "w" / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.delenv("CANARINO_WORKSPACE", raising=False)
    assert resolve_workspace(None) == tmp_path / "w"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError, match="canarino init"):
        resolve_workspace(None)
    monkeypatch.setenv("CANARINO_WORKSPACE", str(tmp_path / "w"))
    open_workspace().close()


def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    init_workspace(tmp_path, mail_domains=["a.it"], phone_ranges=[]).close()
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(WorkspaceError, match="chmod 600"):
        open_workspace(tmp_path)


def test_missing_secret_or_database_are_clear_errors(tmp_path: Path) -> None:
    init_workspace(tmp_path, mail_domains=["a.it"], phone_ranges=[]).close()
    (tmp_path / "canarino.db").unlink()
    with pytest.raises(WorkspaceError, match="no canarino schema"):
        open_workspace(tmp_path)
    init_workspace(tmp_path, mail_domains=["a.it"], phone_ranges=[]).close()
    (tmp_path / "secret.key").unlink()
    with pytest.raises(WorkspaceError, match="missing") as info:
        open_workspace(tmp_path)
    assert "restore" in str(info.value)


def test_broken_config_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("[canarino\nmail_domains = 3")
    with pytest.raises(WorkspaceError, match="not valid TOML"):
        load_settings(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("[canarino]\ncanary_min = -3\n")
    with pytest.raises(WorkspaceError, match="invalid setting"):
        load_settings(tmp_path)


def test_environment_overrides_the_workspace_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / CONFIG_FILE).write_text('[canarino]\ncompany_name = "File"\n')
    monkeypatch.setenv("CANARINO_COMPANY_NAME", "Env")
    assert load_settings(tmp_path).company_name == "Env"


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_database_url_is_secret_in_repr(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, database_url="postgresql://u:hunter2@h/db")
    assert "hunter2" not in repr(settings)
    assert settings.url.endswith("@h/db")


def test_every_setting_is_in_the_guide() -> None:
    guide = (Path(__file__).parent.parent / "docs" / "guide.md").read_text()
    for name in Settings.model_fields:
        if name != "workspace":
            assert f"`{name}`" in guide, f"setting {name} is not in docs/guide.md"


def test_the_secret_never_reaches_the_database_or_the_export(
    shared: dict[str, object], loaded: object, tmp_path: Path
) -> None:
    from canarino.workspace import Workspace

    assert isinstance(loaded, Workspace)
    secret_hex = loaded.settings.secret_path.read_text().strip()
    secret = bytes.fromhex(secret_hex)
    loaded.close()
    files = [*tmp_path.glob("ws/canarino.db*"), *tmp_path.glob("*.csv")]
    assert files
    for path in files:
        blob = path.read_bytes()
        assert secret not in blob and secret_hex.encode() not in blob, path.name
