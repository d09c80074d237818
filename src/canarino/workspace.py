"""A workspace: config file, secret key file and database, opened together."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from .errors import InvalidInput, WorkspaceError
from .settings import CONFIG_FILE, Settings, find_workspace, load_settings
from .store import Database, check_schema, make_engine, upgrade
from .vault import Vault, create_secret, read_secret

_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass
class Workspace:
    """Everything a command needs: settings, database and keys."""

    settings: Settings
    db: Database
    vault: Vault

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Open an initialised workspace."""
        engine = make_engine(settings.url)
        check_schema(engine)
        return cls(settings, Database(engine), Vault(read_secret(settings.secret_path)))

    def close(self) -> None:
        """Release the database connections."""
        self.db.close()


def resolve_workspace(explicit: Path | None) -> Path:
    """The workspace folder: ``explicit``, else ``CANARINO_WORKSPACE``, else found upward."""
    if explicit is not None:
        return explicit
    env = os.environ.get("CANARINO_WORKSPACE")
    if env:
        return Path(env)
    found = find_workspace(Path.cwd())
    if found is None:
        raise WorkspaceError(
            "no canarino workspace here or in any parent folder",
            hint="run 'canarino init DIR', then work inside DIR or pass --workspace DIR",
        )
    return found


def open_workspace(explicit: Path | None = None) -> Workspace:
    """Find and open the workspace the way every command does."""
    return Workspace.open(load_settings(resolve_workspace(explicit)))


def check_domain(domain: str) -> str:
    """Return ``domain`` normalised, or raise if it is not a mail domain."""
    d = domain.strip().lower().lstrip("@")
    if not _DOMAIN.match(d):
        raise InvalidInput(
            f"{domain!r} is not a mail domain", hint="e.g. --mail-domain mx.example.it"
        )
    return d


def check_phone_range(text: str) -> str:
    """Return a phone prefix in ``+<digits>`` form, or raise if it names no country."""
    digits = re.sub(r"[\s().-]", "", text)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not re.fullmatch(r"\+\d{3,14}", digits):
        raise InvalidInput(
            f"{text!r} is not a phone range", hint="give an E.164 prefix such as +3934755"
        )
    for length in (1, 2, 3):
        code = int(digits[1 : 1 + length])
        if phonenumbers.region_code_for_country_code(code) != "ZZ":
            return digits
    raise InvalidInput(f"{text!r} starts with no known country calling code")


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join('"' + v.replace('"', "") + '"' for v in values) + "]"


def init_workspace(
    path: Path,
    *,
    mail_domains: list[str],
    phone_ranges: list[str],
    company_name: str = "Example S.p.A.",
    company_email: str | None = None,
) -> Workspace:
    """Create a workspace: config file, secret (mode 0600) and an up-to-date database.

    Running it again on an existing workspace only upgrades the database schema.
    """
    domains = [check_domain(d) for d in mail_domains]
    ranges = [check_phone_range(r) for r in phone_ranges]
    if not domains:
        raise InvalidInput("at least one --mail-domain is needed for canary addresses")
    path.mkdir(parents=True, exist_ok=True)
    config = path / CONFIG_FILE
    if not config.exists():
        sender = company_email or f"privacy@{domains[0]}"
        config.write_text(
            "# canarino workspace settings; CANARINO_* environment variables override them.\n"
            "[canarino]\n"
            f"company_name = {_toml_str(company_name)}\n"
            f"company_email = {_toml_str(sender)}\n"
            f"mail_domains = {_toml_list(domains)}\n"
            f"phone_ranges = {_toml_list(ranges)}\n"
        )
        tomllib.loads(config.read_text())
    settings = load_settings(path)
    if not settings.secret_path.exists():
        create_secret(settings.secret_path)
    engine = make_engine(settings.url)
    upgrade(engine)
    return Workspace(settings, Database(engine), Vault(read_secret(settings.secret_path)))


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
