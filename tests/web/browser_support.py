"""Helpers for tests that talk to the app over real HTTP: uvicorn on loopback, Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from canarino.selfcheck import PublicMailer, RateLimiter
from canarino.web.app import create_app
from canarino.web.public import PublicState
from canarino.workspace import Workspace

# `make screenshots` sets this to docs/screenshots; otherwise test runs leave the docs alone.
SCREENSHOTS = Path(
    os.environ.get("CANARINO_SCREENSHOTS") or Path(tempfile.gettempdir()) / "canarino-screenshots"
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(ws: Workspace) -> Iterator[tuple[str, FastAPI]]:
    """The whole app on a free loopback port; yields its base URL and the app.

    The public mailer's random wait is shortened so tests need not sit through it.
    """
    app = create_app(ws)
    app.state.public = PublicState(
        RateLimiter(ws.settings.selfcheck_per_hour), PublicMailer(ws, delay=(0.0, 0.05))
    )
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(20)
        app.state.public.mailer.stop()


def chromium_path() -> str:
    """Debian's Chromium, or a skip that says how to get it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does it)")
    return found


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright's sync API."""
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


MAX_SHOT_HEIGHT = 1600


def shot(page: Any, name: str) -> None:
    """Save a screenshot of the page's top (up to 1,600 px) as <name>.png in SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width, height = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    # Long lists of people would make megabyte images; the top tells the story.
    clip = {"x": 0, "y": 0, "width": width, "height": min(height, MAX_SHOT_HEIGHT)}
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True, clip=clip)
