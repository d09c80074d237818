"""A workspace: config file, secret key file and database, opened together."""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

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

    Running it again on an existing workspace only upgrades the database schema (the
    settings file is kept as it is, so the domains and ranges may be left out).
    """
    domains = [check_domain(d) for d in mail_domains]
    ranges = [check_phone_range(r) for r in phone_ranges]
    config = path / CONFIG_FILE
    if not domains and not config.exists():
        raise InvalidInput("at least one --mail-domain is needed for canary addresses")
    path.mkdir(parents=True, exist_ok=True)
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


# --- settings an administrator changes from the web app ------------------------------------
#
# The monitored domains and phone ranges, alert e-mail addresses and webhooks. Each value
# is checked the way ``canarino init`` checks it; the file is rewritten atomically,
# keeping its comments and other keys, and only after the whole new configuration
# validates, so a bad value changes nothing.

EDITABLE = (
    "mail_domains",
    "phone_ranges",
    "security_contacts",
    "alert_webhooks",
    "slack_webhooks",
)
_KEY_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class EditableSettings:
    """The editable settings in force."""

    mail_domains: list[str]
    phone_ranges: list[str]
    security_contacts: list[str]
    alert_webhooks: list[str]
    slack_webhooks: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-ready form."""
        return {k: list(getattr(self, k)) for k in EDITABLE}


def editable_settings(ws: Workspace) -> EditableSettings:
    """The settings an administrator may change from the web app, as in force."""
    s = ws.settings
    return EditableSettings(
        list(s.mail_domains),
        list(s.phone_ranges),
        list(s.security_contacts),
        list(s.alert_webhooks),
        list(s.slack_webhooks),
    )


def _email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        raise InvalidInput(f"{value!r} is not an e-mail address") from None


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise InvalidInput(f"{value!r} is not an http(s) URL")
    return value


CHECKS = {
    "mail_domains": check_domain,
    "phone_ranges": check_phone_range,
    "security_contacts": _email,
    "alert_webhooks": _url,
    "slack_webhooks": _url,
}


def _clean(changes: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in changes.items():
        if key not in EDITABLE:
            raise InvalidInput(
                f"{key!r} cannot be changed here", hint=f"editable: {', '.join(EDITABLE)}"
            )
        cleaned: list[str] = []
        for raw in values:
            if raw.strip():
                value = CHECKS[key](raw.strip())
                if value not in cleaned:
                    cleaned.append(value)
        out[key] = cleaned
    if "mail_domains" in out and not out["mail_domains"]:
        raise InvalidInput("at least one monitored mail domain is needed for canary addresses")
    return out


def _rewrite(text: str, values: dict[str, list[str]]) -> str:
    """Replace the ``[canarino]`` keys in ``text`` (one line each), appending missing ones."""
    lines = text.splitlines()
    section = None
    end = len(lines)
    pending = dict(values)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            if section == "canarino":
                end = i
                break
            section = stripped.strip("[]").strip()
            continue
        match = _KEY_LINE.match(line)
        if section == "canarino" and match and match.group(1) in pending:
            key = match.group(1)
            lines[i] = f"{key} = {json.dumps(pending.pop(key), ensure_ascii=False)}"
    if section is None:
        lines.append("[canarino]")
        end = len(lines)
    added = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in pending.items()]
    lines[end:end] = added
    return "\n".join(lines) + "\n"


def update_settings(ws: Workspace, changes: dict[str, list[str]]) -> EditableSettings:
    """Check and save ``changes``; the workspace's settings object is refreshed in place."""
    cleaned = _clean(changes)
    path = ws.settings.workspace / CONFIG_FILE
    new_text = _rewrite(path.read_text(encoding="utf-8"), cleaned)
    # A multi-line value written by hand would make a line rewrite ambiguous: refuse it.
    parsed: dict[str, Any] = tomllib.loads(new_text).get("canarino", {})
    if any(parsed.get(k) != v for k, v in cleaned.items()):
        raise InvalidInput(
            f"{CONFIG_FILE} writes these settings over several lines",
            hint="put each of them on one line in the file, then try again",
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".canarino-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(new_text)
        try:
            Settings(**{**parsed, "workspace": ws.settings.workspace})
        except ValueError as exc:
            raise InvalidInput(f"{CONFIG_FILE}: invalid setting: {exc}") from None
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fresh = load_settings(ws.settings.workspace)
    for key in EDITABLE:
        setattr(ws.settings, key, getattr(fresh, key))
    return editable_settings(ws)
