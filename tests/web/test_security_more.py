"""Security properties checked on every route the app has, enumerated from ``app.routes``.

The basics (sign-in, one CSRF probe, no credentials, headers on a few pages) are in
test_auth.py; here each property is checked route by route, so a route added later is
covered without anyone remembering to add it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from canarino import users
from canarino.web.app import create_app
from canarino.web.auth import CSRF_HEADER, SESSION_COOKIE, SIGNIN_COOKIE
from canarino.web.testing import MAIL_DOMAINS, PASSWORDS, PHONE_RANGES, iter_routes
from canarino.workspace import Workspace, init_workspace

from .conftest import csrf_of, new_client, sign_in

ROLES = ("viewer", "analyst", "admin")
RANK = {role: n for n, role in enumerate(ROLES)}
OPEN_PREFIXES = ("/public", "/hooks", "/static", "/signin", "/health")
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ADMIN_WORDS = re.compile(r"^/(api/)?(users|tokens|settings|audit)\b")
BASE = "http://testserver"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def staff_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every (method, path) behind staff sign-in."""
    for path, methods in sorted(iter_routes(app.routes)):
        if path.startswith(OPEN_PREFIXES):
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            yield method, path


def api_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every FastAPI route (with its dependencies) of the app, included routers flattened."""
    for route in routes:
        nested = getattr(route, "effective_candidates", None)
        if nested is not None:
            yield from api_routes(nested())
        elif isinstance(route, APIRoute) or hasattr(route, "dependant"):
            yield route


def dependency_names(dependant: Any) -> set[str]:
    names = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            names.add(getattr(sub.call, "__name__", ""))
        names |= dependency_names(sub)
    return names


def required_role(app: FastAPI, method: str, path: str) -> str:
    """The role a route's dependency asks for (``require_<role>`` in auth.py)."""
    for route in api_routes(app.routes):
        if route.path == path and method in route.methods:
            names = dependency_names(route.dependant)
            found = [r for r in ROLES if f"require_{r}" in names]
            assert found, f"{method} {path} has no role dependency"
            return max(found, key=RANK.__getitem__)
    raise AssertionError(f"{method} {path} is not an APIRoute")


@dataclass
class Site:
    """One app over a workspace with only the three users, shared by this module."""

    app: FastAPI
    ws: Workspace


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cheap_hashes: None) -> Iterator[Site]:
    """Only users: routes called with id 1 find nothing to change."""
    ws = init_workspace(
        tmp_path_factory.mktemp("security") / "ws",
        mail_domains=MAIL_DOMAINS,
        phone_ranges=PHONE_RANGES,
    )
    for role, password in PASSWORDS.items():
        users.add_user(ws, role, password, role)
    yield Site(create_app(ws), ws)
    ws.close()


@pytest.fixture
def site(built: Site) -> FastAPI:
    return built.app


@pytest.fixture
def anon(built: Site) -> object:
    return new_client(built.app)


def signed_in(app: FastAPI, role: str) -> object:
    client = new_client(app)
    assert sign_in(client, role, PASSWORDS[role]).status_code == 303  # type: ignore[attr-defined]
    return client


# --- CSRF --------------------------------------------------------------------------------


def test_every_state_changing_route_refuses_a_session_without_its_csrf_token(
    site: FastAPI,
) -> None:
    client = signed_in(site, "admin")
    other = signed_in(site, "admin")
    foreign_token = csrf_of(other)  # type: ignore[arg-type]
    checked = 0
    for method, path in staff_routes(site):
        if method not in CHANGES:
            continue
        url = concrete(path)
        for headers in ({}, {CSRF_HEADER: "x" * 43}, {CSRF_HEADER: foreign_token}):
            answer = client.request(method, url, headers=headers, follow_redirects=False)  # type: ignore[attr-defined]
            assert answer.status_code == 403, (method, path, headers)
        form = client.request(  # type: ignore[attr-defined]
            method, url, data={"csrf_token": foreign_token}, follow_redirects=False
        )
        assert form.status_code == 403, (method, path, "foreign form token")
        checked += 1
    assert checked > 25
    # Still signed in: the refusals ended nothing.
    assert client.get("/api/me").status_code == 200  # type: ignore[attr-defined]


def test_a_bearer_token_needs_no_csrf_but_a_cookie_next_to_it_gives_no_rights(
    site: FastAPI, built: Site
) -> None:
    secret, _ = users.add_token(built.ws, "ci", "viewer")
    client = signed_in(site, "admin")
    # An admin's cookie travels with a viewer's token: the token decides, and it is a viewer.
    answer = client.get("/api/users", headers={"Authorization": f"Bearer {secret}"})  # type: ignore[attr-defined]
    assert answer.status_code == 403


# --- roles -------------------------------------------------------------------------------


def test_role_policy_admin_words_are_admin_only_and_changes_need_an_analyst(
    site: FastAPI,
) -> None:
    for method, path in staff_routes(site):
        role = required_role(site, method, path)
        if ADMIN_WORDS.match(path):
            assert role == "admin", (method, path, role)
        elif method in CHANGES and path != "/signout":
            assert RANK[role] >= RANK["analyst"], (method, path, role)
        if path.endswith(("people.csv", "/export", "/reveal")):
            assert RANK[role] >= RANK["analyst"], (method, path, role)


@pytest.mark.parametrize("role", ROLES)
def test_every_route_admits_exactly_the_roles_it_declares(site: FastAPI, role: str) -> None:
    client = signed_in(site, role)
    token = csrf_of(client)  # type: ignore[arg-type]
    for method, path in staff_routes(site):
        if path == "/signout":
            continue
        answer = client.request(  # type: ignore[attr-defined]
            method, concrete(path), headers={CSRF_HEADER: token}, follow_redirects=False
        )
        needed = required_role(site, method, path)
        if RANK[role] < RANK[needed]:
            assert answer.status_code == 403, (role, method, path, answer.status_code)
            assert needed in answer.text
        else:
            assert answer.status_code not in (401, 403), (role, method, path, answer.text)
            assert answer.status_code < 500, (role, method, path)


# --- auth bypass -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/users/",
        "/API/users",
        "//api/users",
        "/api//users",
        "/api/./users",
        "/api/x/../users",
        "/%61pi/users",
        "/api/users%2F",
        "/api/users?role=admin",
        "/audit/",
        "/public/../audit",
        "/static/../audit",
        "/static/..%2Faudit",
    ],
)
def test_path_tricks_do_not_reach_a_staff_route_without_signing_in(anon: object, url: str) -> None:
    answer = anon.get(url, follow_redirects=False)  # type: ignore[attr-defined]
    assert answer.status_code in (303, 307, 401, 404), (url, answer.status_code)
    assert "password_hash" not in answer.text and '"username"' not in answer.text


def test_method_override_headers_and_head_requests_get_no_more(anon: object) -> None:
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        answer = anon.post("/api/users", headers={header: "GET"})  # type: ignore[attr-defined]
        assert answer.status_code == 401
    head = anon.head("/api/users")  # type: ignore[attr-defined]
    assert head.status_code in (401, 405) and not head.content


def test_session_cookie_in_the_url_or_a_header_is_not_a_session(
    site: FastAPI,
) -> None:
    client = signed_in(site, "admin")
    cookie = client.cookies[SESSION_COOKIE]  # type: ignore[attr-defined]
    stranger = new_client(site)
    for answer in (
        stranger.get(f"/api/me?{SESSION_COOKIE}={cookie}"),
        stranger.get("/api/me", headers={"X-Session": cookie}),
        stranger.get("/api/me", headers={"Authorization": f"Bearer {cookie}"}),
    ):
        assert answer.status_code == 401


# --- session fixation --------------------------------------------------------------------


def test_the_sign_in_form_cookie_is_not_a_session_and_is_replaced_at_sign_in(
    site: FastAPI,
) -> None:
    client = new_client(site)
    client.get("/signin")
    form_cookie = client.cookies[SIGNIN_COOKIE]
    probe = new_client(site)
    probe.cookies.set(SESSION_COOKIE, form_cookie, domain="testserver.local")
    assert probe.get("/api/me").status_code == 401
    sign_in(client, "viewer", PASSWORDS["viewer"])
    assert client.cookies[SESSION_COOKIE] != form_cookie


def test_a_disabled_users_cookie_stays_dead(site: FastAPI, built: Site) -> None:
    users.add_user(built.ws, "short-lived", "short-lived-password-1", "analyst")
    client = new_client(site)
    assert sign_in(client, "short-lived", "short-lived-password-1").status_code == 303  # type: ignore[attr-defined]
    cookie = client.cookies[SESSION_COOKIE]
    users.disable_user(built.ws, "short-lived")
    assert client.get("/api/me").status_code == 401
    replay = new_client(site)
    replay.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    assert replay.get("/api/me").status_code == 401


# --- open redirect -----------------------------------------------------------------------


REDIRECTS = [
    "//evil.example/x",
    "///evil.example",
    "////evil.example",
    "https://evil.example",
    "https:evil.example",
    "http://testserver@evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/%2F/evil.example",
    "/%5Cevil.example",
    " //evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
]


def browser_target(location: str) -> str:
    """The host a browser would go to for ``location`` (it drops tabs and newlines first)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return urlsplit(urljoin(BASE + "/signin", cleaned)).netloc


@pytest.mark.parametrize("target", REDIRECTS)
def test_sign_in_next_never_leaves_the_site(site: FastAPI, target: str) -> None:
    client = new_client(site)
    form = client.get("/signin", params={"next": target})
    kept = re.search(r'name="next" value="([^"]*)"', form.text)
    assert kept is not None and browser_target(html.unescape(kept.group(1))) == "testserver"
    client.get("/signin")
    answer = client.post(
        "/signin",
        data={
            "username": "viewer",
            "password": PASSWORDS["viewer"],
            "csrf_token": client.cookies.get(SIGNIN_COOKIE, ""),
            "next": target,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert browser_target(location) == "testserver", location
    assert not location.lower().startswith(("javascript:", "data:"))


def test_a_protected_page_sends_a_stranger_to_sign_in_with_a_local_next(anon: object) -> None:
    answer = anon.get("/incidents/1?offset=0", follow_redirects=False)  # type: ignore[attr-defined]
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/signin?next=") and browser_target(location) == "testserver"


# --- security headers --------------------------------------------------------------------

HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def check_headers(answer: object, where: str) -> None:
    headers = answer.headers  # type: ignore[attr-defined]
    for name, value in HEADERS.items():
        assert headers.get(name) == value, (where, name)
    csp = headers["content-security-policy"]
    # The public pages run no script at all: default-src 'none' and no script-src.
    scripts = "script-src 'self'" in csp or (
        "default-src 'none'" in csp and "script-src" not in csp
    )
    assert scripts and "unsafe-inline" not in csp and "unsafe-eval" not in csp, (where, csp)
    assert "frame-ancestors 'none'" in csp, where


def test_security_headers_on_every_get_route_signed_in_or_not(site: FastAPI) -> None:
    admin = signed_in(site, "admin")
    stranger = new_client(site)
    checked = 0
    for path, methods in iter_routes(site.routes):
        if "GET" not in methods or path.startswith("/static"):
            continue
        for client in (admin, stranger):
            answer = client.get(concrete(path), follow_redirects=False)  # type: ignore[attr-defined]
            check_headers(answer, path)
            if not path.startswith("/public/style"):
                assert answer.headers.get("cache-control") == "no-store", path
            checked += 1
    assert checked > 40


def test_security_headers_on_errors_too(site: FastAPI) -> None:
    client = signed_in(site, "viewer")
    for answer, where in (
        (client.get("/no-such-page"), "404"),  # type: ignore[attr-defined]
        (client.delete("/api/me"), "405"),  # type: ignore[attr-defined]
        (client.get("/api/incidents?limit=-1"), "422"),  # type: ignore[attr-defined]
        (client.get("/users"), "403"),  # type: ignore[attr-defined]
        (new_client(site).post("/signin", data={}), "sign-in without a form"),
    ):
        check_headers(answer, where)
