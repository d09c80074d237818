from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from canarino import models as m
from canarino import users
from canarino.web.app import create_app
from canarino.web.auth import CSRF_HEADER, SESSION_COOKIE
from canarino.web.signin import SignInGuard
from canarino.web.testing import PASSWORDS, WebFixture, iter_routes

from .conftest import csrf_of, new_client, sign_in

OPEN_PREFIXES = ("/public", "/hooks", "/static", "/signin", "/health")


def test_sign_in_sets_a_hardened_cookie_and_shows_the_user(app: FastAPI) -> None:
    client = new_client(app)
    response = sign_in(client, "viewer", PASSWORDS["viewer"])
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # the test app's public_url is plain http
    page = client.get("/")
    assert page.status_code == 200 and 'data-testid="current-user">viewer<' in page.text


def test_only_a_digest_of_the_session_cookie_is_stored(app: FastAPI, web: WebFixture) -> None:
    client = new_client(app)
    sign_in(client, "viewer", PASSWORDS["viewer"])
    value = client.cookies[SESSION_COOKIE]
    with web.ws.db.session() as s:
        digests = set(s.scalars(select(m.WebSession.digest)))
    assert value not in digests and users.digest(value) in digests


def test_wrong_password_is_refused_with_one_message(app: FastAPI) -> None:
    client = new_client(app)
    wrong = sign_in(client, "viewer", "not-the-password-at-all")
    unknown = sign_in(client, "nobody-here", "not-the-password-at-all")
    assert wrong.status_code == unknown.status_code == 401
    assert SESSION_COOKIE not in client.cookies
    message = re.search(r'data-testid="signin-error">([^<]*)<', wrong.text)
    assert message and message.group(1) in unknown.text


def test_disabled_user_cannot_sign_in_and_loses_open_sessions(fresh: WebFixture) -> None:
    app = create_app(fresh.ws)
    client = new_client(app)
    assert sign_in(client, "viewer", PASSWORDS["viewer"]).status_code == 303
    users.disable_user(fresh.ws, "viewer")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert sign_in(new_client(app), "viewer", PASSWORDS["viewer"]).status_code == 401


def test_sign_in_issues_a_new_session_id_and_the_planted_one_is_useless(app: FastAPI) -> None:
    client = new_client(app)
    sign_in(client, "viewer", PASSWORDS["viewer"])
    first = client.cookies[SESSION_COOKIE]
    # An attacker who knows (or planted) the first cookie; the victim signs in again.
    sign_in(client, "analyst", PASSWORDS["analyst"])
    second = client.cookies[SESSION_COOKIE]
    assert first != second
    attacker = new_client(app)
    attacker.cookies.set(SESSION_COOKIE, first, domain="testserver.local")
    assert attacker.get("/", follow_redirects=False).status_code == 303
    assert attacker.get("/api/me").status_code == 401


def test_planted_unknown_cookie_is_not_adopted_at_sign_in(app: FastAPI) -> None:
    client = new_client(app)
    client.cookies.set(SESSION_COOKIE, "attacker-chosen-value", domain="testserver.local")
    sign_in(client, "viewer", PASSWORDS["viewer"])
    assert client.cookies[SESSION_COOKIE] != "attacker-chosen-value"


def test_sign_out_ends_the_session_everywhere(app: FastAPI) -> None:
    client = new_client(app)
    sign_in(client, "viewer", PASSWORDS["viewer"])
    cookie = client.cookies[SESSION_COOKIE]
    token = csrf_of(client)
    response = client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    copy = new_client(app)
    copy.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    assert copy.get("/api/me").status_code == 401


def test_expired_session_is_refused(fresh: WebFixture) -> None:
    user = users.get_user(fresh.ws, "viewer")
    cookie, _ = users.start_session(
        fresh.ws, user, now=m.utcnow() - users.SESSION_LIFETIME - timedelta(minutes=1)
    )
    client = new_client(create_app(fresh.ws))
    client.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    assert client.get("/api/me").status_code == 401


def test_sign_in_form_without_its_token_is_refused(app: FastAPI) -> None:
    client = new_client(app)
    response = client.post(
        "/signin",
        data={"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403 and SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil"])
def test_sign_in_never_redirects_off_site(app: FastAPI, target: str) -> None:
    client = new_client(app)
    client.get("/signin")
    response = client.post(
        "/signin",
        data={
            "username": "viewer",
            "password": PASSWORDS["viewer"],
            "csrf_token": client.cookies.get("canarino_signin", ""),
            "next": target,
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_state_change_without_csrf_token_is_refused(
    client_for: Callable[[str], object], web: WebFixture
) -> None:
    client = client_for("analyst")
    url = f"/incidents/{web.incident_id}/risk"
    form = {"level": "high_risk", "reason": "csrf probe"}
    missing = client.post(url, data=form, follow_redirects=False)  # type: ignore[attr-defined]
    wrong = client.post(url, data={**form, "csrf_token": "x" * 43}, follow_redirects=False)  # type: ignore[attr-defined]
    api = client.post(  # type: ignore[attr-defined]
        "/api/recipients", json={"name": "CSRF probe", "kind": "vendor"}
    )
    assert missing.status_code == wrong.status_code == api.status_code == 403
    assert api.headers["content-type"].startswith("application/problem+json")
    assert "reload the page" in api.json()["detail"]


def test_state_change_with_csrf_header_or_field_is_accepted(
    client_for: Callable[[str], object],
) -> None:
    client = client_for("analyst")
    token = csrf_of(client)  # type: ignore[arg-type]
    created = client.post(  # type: ignore[attr-defined]
        "/api/recipients",
        json={"name": "Header CSRF Vendor", "kind": "vendor"},
        headers={CSRF_HEADER: token},
    )
    assert created.status_code == 201


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_staff_route_refuses_a_caller_without_session_or_token(app: FastAPI) -> None:
    client = new_client(app)
    checked = 0
    for path, methods in iter_routes(app.routes):
        if path.startswith(OPEN_PREFIXES):
            continue
        for method in methods - {"HEAD", "OPTIONS"}:
            response = client.request(method, _concrete(path), follow_redirects=False)
            checked += 1
            if path.startswith("/api"):
                assert response.status_code == 401, (method, path)
                assert response.headers["content-type"].startswith("application/problem+json")
            else:
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/signin?next=")
    assert checked > 50


def test_every_staff_route_refuses_a_revoked_or_forged_token(app: FastAPI, web: WebFixture) -> None:
    secret, info = users.add_token(web.ws, "soon revoked", "admin")
    users.revoke_token(web.ws, info.id)
    for bearer in (secret, "cnr_forged", "not-even-our-format"):
        client = new_client(app, headers={"Authorization": f"Bearer {bearer}"})
        for path, methods in iter_routes(app.routes):
            if path.startswith("/api") and "GET" in methods:
                assert client.get(_concrete(path)).status_code == 401, path


def test_api_token_acts_with_its_users_role(app: FastAPI, web: WebFixture) -> None:
    secret, _ = users.add_token(web.ws, "ci", "viewer")
    client = new_client(app, headers={"Authorization": f"Bearer {secret}"})
    assert client.get("/api/me").json() == {"username": "viewer", "role": "viewer", "via": "token"}
    # Machines send no CSRF token; their role still applies.
    refused = client.post("/api/recipients", json={"name": "Token Vendor", "kind": "vendor"})
    assert refused.status_code == 403
    assert "viewer" in refused.json()["detail"]
    assert any(t.last_used_at for t in users.list_tokens(web.ws) if t.name == "ci")


def test_viewer_can_read_but_not_send_or_change(
    client_for: Callable[[str], object], web: WebFixture
) -> None:
    client = client_for("viewer")
    token = csrf_of(client)  # type: ignore[arg-type]
    h = {CSRF_HEADER: token}
    inc = web.incident_id
    assert client.get(f"/incidents/{inc}").status_code == 200  # type: ignore[attr-defined]
    attempts = [
        ("POST", f"/api/incidents/{inc}/notices/send", {"smtp": "127.0.0.1:25"}),
        ("POST", f"/api/incidents/{inc}/notices/prepare", None),
        ("POST", f"/api/incidents/{inc}/risk", {"level": "none", "reason": "x"}),
        ("POST", "/api/recipients", {"name": "Viewer Vendor", "kind": "vendor"}),
        ("PUT", "/api/settings", {"mail_domains": ["x.example.it"]}),
        ("GET", f"/api/incidents/{inc}/people?reveal=true", None),
        ("GET", f"/api/incidents/{inc}/people.csv", None),
    ]
    for method, url, body in attempts:
        response = client.request(method, url, json=body, headers=h)  # type: ignore[attr-defined]
        assert response.status_code == 403, (method, url)
    page = client.get(f"/incidents/{inc}").text  # type: ignore[attr-defined]
    assert 'data-testid="send-notices"' not in page and 'data-testid="reveal-' not in page


def test_analyst_cannot_manage_users_settings_or_read_the_audit_log(
    client_for: Callable[[str], object],
) -> None:
    client = client_for("analyst")
    h = {CSRF_HEADER: csrf_of(client)}  # type: ignore[arg-type]
    for method, url, body in [
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"username": "x", "password": "y" * 12, "role": "admin"}),
        ("POST", "/api/users/viewer/disable", None),
        ("GET", "/api/audit", None),
        ("GET", "/api/settings", None),
        ("GET", "/users", None),
        ("GET", "/audit", None),
        ("GET", "/settings", None),
    ]:
        response = client.request(method, url, json=body, headers=h)  # type: ignore[attr-defined]
        assert response.status_code == 403, (method, url)


def test_security_headers_are_on_every_response(anon: object) -> None:
    for url in ("/signin", "/api/me", "/static/app.css", "/nothing-here"):
        headers = anon.get(url).headers  # type: ignore[attr-defined]
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_repeated_failures_make_the_name_wait_even_with_the_right_password(
    web: WebFixture,
) -> None:
    client = new_client(create_app(web.ws))
    for _ in range(5):
        assert sign_in(client, "analyst", "wrong password guess").status_code == 401
    blocked = sign_in(client, "analyst", PASSWORDS["analyst"])
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 60
    assert SESSION_COOKIE not in client.cookies
    assert sign_in(client, "viewer", PASSWORDS["viewer"]).status_code == 303


def test_sign_in_guard_forgets_after_the_window() -> None:

    guard = SignInGuard(per_user=2, per_address=3, window=60)
    guard.failed("a", "10.0.0.1", now=0)
    guard.failed("a", "10.0.0.1", now=1)
    assert guard.wait("A", "10.0.0.9", now=2) == 58
    assert guard.wait("b", "10.0.0.1", now=2) is None
    guard.failed("c", "10.0.0.1", now=3)
    assert guard.wait("b", "10.0.0.1", now=4) is not None  # the address is over its limit
    assert guard.wait("a", "10.0.0.2", now=61.5) is None
    guard.succeeded("a")
    assert guard.wait("a", "10.0.0.2", now=5) is None
