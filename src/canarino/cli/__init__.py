"""The ``canarino`` command line: thin commands over the library, one error handler.

Each module registers its commands on the apps of :mod:`.base`; importing them here is
what builds the command tree.
"""

from __future__ import annotations

from typing import Any

from . import alerts, data, demo, leaks, live, public, response, web
from .base import app

__all__ = ["app", "command_paths", "main", "reference"]
_ = (alerts, data, demo, leaks, live, public, response, web)


def main() -> None:
    """Entry point of the ``canarino`` command."""
    app(prog_name="canarino")


def command_paths() -> list[tuple[str, ...]]:
    """Every command as the words that invoke it, e.g. ``("customers", "import")``."""
    from typer.main import get_command

    def walk(cmd: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        subs: dict[str, Any] = getattr(cmd, "commands", {})
        out = [prefix] if prefix else []
        for name in subs:
            out += walk(subs[name], (*prefix, name))
        return out

    return walk(get_command(app), ())


def reference() -> str:
    """The Markdown command reference, built from every command's ``--help``."""
    from typer.testing import CliRunner

    runner = CliRunner()
    parts = []
    for path in [(), *command_paths()]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        title = " ".join(("canarino", *path))
        parts.append(f"## {title}\n\n```\n{result.output.strip()}\n```\n")
    return "\n" + "\n".join(parts)
