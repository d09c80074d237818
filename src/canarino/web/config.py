"""Settings an administrator may change from the web, written to ``canarino.toml``.

They are the monitored domains and phone ranges, alert e-mail addresses and webhooks.

Each value is checked the way ``canarino init`` checks it; the file is rewritten
atomically, keeping its comments and other keys, and only after the whole new
configuration validates, so a bad value changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from ..errors import InvalidInput
from ..settings import CONFIG_FILE, Settings, load_settings
from ..workspace import Workspace, check_domain, check_phone_range

EDITABLE = (
    "mail_domains",
    "phone_ranges",
    "security_contacts",
    "alert_webhooks",
    "slack_webhooks",
)
_KEY_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class WebSettings:
    """The editable settings in force."""

    mail_domains: list[str]
    phone_ranges: list[str]
    security_contacts: list[str]
    alert_webhooks: list[str]
    slack_webhooks: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-ready form."""
        return {k: list(getattr(self, k)) for k in EDITABLE}


def current(ws: Workspace) -> WebSettings:
    """The editable settings of ``ws``."""
    s = ws.settings
    return WebSettings(
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


def update(ws: Workspace, changes: dict[str, list[str]]) -> WebSettings:
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
    return current(ws)
