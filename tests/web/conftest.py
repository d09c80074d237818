"""Fixtures for the web tests: a workspace with users and a traced leak, signed-in clients."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI

from canarino import users
from canarino.web.app import create_app
from canarino.web.auth import SIGNIN_COOKIE
from canarino.web.testing import (
    MAIL_DOMAINS,
    PASSWORDS,
    PHONE_RANGES,
    WebFixture,
    make_web_workspace,
)
from canarino.workspace import init_workspace

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx works and is what we install.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def cheap_hashes() -> Iterator[None]:
    """argon2 at its cheapest: the suite signs in often, on a small machine."""
    saved = users.hasher
    users.hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    yield
    users.hasher = saved


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory, cheap_hashes: None) -> Iterator[WebFixture]:
    """Users admin/analyst/viewer, 300 customers, three shares, a traced leak, an incident."""
    fx = make_web_workspace(tmp_path_factory.mktemp("web"))
    yield fx
    fx.ws.close()


@pytest.fixture(scope="session")
def app(web: WebFixture) -> FastAPI:
    return create_app(web.ws)


@pytest.fixture
def fresh(tmp_path: Path, cheap_hashes: None) -> Iterator[WebFixture]:
    """A workspace with only the three users: for tests that change settings or users."""
    ws = init_workspace(tmp_path / "ws", mail_domains=MAIL_DOMAINS, phone_ranges=PHONE_RANGES)
    for role, password in PASSWORDS.items():
        users.add_user(ws, role, password, role)
    fx = WebFixture(ws)
    yield fx
    fx.ws.close()


def new_client(app: FastAPI, **kwargs: object) -> TestClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TestClient(app, base_url="http://testserver", **kwargs)  # type: ignore[arg-type]


def sign_in(client: TestClient, username: str, password: str) -> object:
    client.get("/signin")
    return client.post(
        "/signin",
        data={
            "username": username,
            "password": password,
            "csrf_token": client.cookies.get(SIGNIN_COOKIE, ""),
            "next": "/",
        },
        follow_redirects=False,
    )


def csrf_of(client: TestClient) -> str:
    """The CSRF token the pages embed for this client's session."""
    html = client.get("/").text
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.fixture
def client_for(app: FastAPI) -> Callable[[str], TestClient]:
    """A signed-in client for role ``admin``, ``analyst`` or ``viewer``."""

    def make(role: str) -> TestClient:
        client = new_client(app)
        response = sign_in(client, role, PASSWORDS[role])
        assert response.status_code == 303, response  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def anon(app: FastAPI) -> TestClient:
    return new_client(app)
