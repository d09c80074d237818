from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import select

from canarino import models as m
from canarino import users
from canarino.errors import InvalidInput, NotFound, PermissionDenied
from canarino.workspace import Workspace

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_hashes() -> Iterator[None]:
    saved = users.hasher
    users.hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    yield
    users.hasher = saved


def test_password_is_kept_only_as_an_argon2id_hash(ws: Workspace) -> None:
    users.add_user(ws, "dpo", PASSWORD, "admin")
    with ws.db.session() as s:
        stored = s.scalar(select(m.User.password_hash))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.authenticate(ws, "dpo", PASSWORD).role == "admin"


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("dpo", "short", "admin", "too short"),
        ("dpo", PASSWORD, "root", "unknown role"),
        ("", PASSWORD, "viewer", "user name"),
        ("-dash", PASSWORD, "viewer", "user name"),
        ("a b", PASSWORD, "viewer", "user name"),
        ("x" * 101, PASSWORD, "viewer", "user name"),
    ],
)
def test_bad_users_are_refused(
    ws: Workspace, name: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        users.add_user(ws, name, password, role)


def test_duplicate_user_is_refused(ws: Workspace) -> None:
    users.add_user(ws, "dpo", PASSWORD, "admin")
    with pytest.raises(InvalidInput, match="already exists"):
        users.add_user(ws, "dpo", PASSWORD, "viewer")


def test_wrong_unknown_and_disabled_all_get_the_same_refusal(ws: Workspace) -> None:
    users.add_user(ws, "dpo", PASSWORD, "admin")
    users.add_user(ws, "gone", PASSWORD, "viewer")
    users.disable_user(ws, "gone")
    messages = set()
    for name, password in (("dpo", "wrong password!"), ("nobody", PASSWORD), ("gone", PASSWORD)):
        with pytest.raises(PermissionDenied) as caught:
            users.authenticate(ws, name, password)
        messages.add(str(caught.value))
    assert len(messages) == 1


def test_roles_are_ordered() -> None:
    def who(role: str) -> users.UserInfo:
        return users.UserInfo(1, "x", role, False, m.utcnow())

    assert who("admin").may("analyst") and who("analyst").may("viewer")
    assert not who("viewer").may("analyst") and not who("analyst").may("admin")


def test_session_lives_until_expiry_and_ends_on_sign_out(ws: Workspace) -> None:
    user = users.add_user(ws, "dpo", PASSWORD, "admin")
    cookie, signed = users.start_session(ws, user)
    assert users.session_user(ws, cookie) == signed
    assert users.session_user(ws, cookie, now=signed.expires_at + timedelta(seconds=1)) is None
    assert users.session_user(ws, cookie) is None  # the expired row was deleted
    cookie, _ = users.start_session(ws, user)
    users.end_session(ws, cookie)
    assert users.session_user(ws, cookie) is None


def test_new_session_replaces_the_old_one(ws: Workspace) -> None:
    user = users.add_user(ws, "dpo", PASSWORD, "admin")
    old, _ = users.start_session(ws, user)
    new, _ = users.start_session(ws, user, replaces=old)
    assert old != new
    assert users.session_user(ws, old) is None and users.session_user(ws, new) is not None


def test_purge_removes_only_expired_sessions(ws: Workspace) -> None:
    user = users.add_user(ws, "dpo", PASSWORD, "admin")
    users.start_session(ws, user, now=m.utcnow() - timedelta(days=2))
    live, _ = users.start_session(ws, user)
    assert users.purge_sessions(ws) == 1
    assert users.session_user(ws, live) is not None


def test_token_is_shown_once_stored_as_digest_and_revocable(ws: Workspace) -> None:
    users.add_user(ws, "siem", PASSWORD, "viewer")
    secret, info = users.add_token(ws, "export", "siem")
    assert secret.startswith(users.TOKEN_PREFIX) and len(secret) > 40
    with ws.db.session() as s:
        assert s.scalar(select(m.ApiToken.digest)) == users.digest(secret)
    user = users.token_user(ws, secret)
    assert user is not None and user.username == "siem"
    assert users.list_tokens(ws)[0].last_used_at is not None
    users.revoke_token(ws, info.id)
    assert users.token_user(ws, secret) is None
    with pytest.raises(NotFound):
        users.revoke_token(ws, 999)


@pytest.mark.parametrize("secret", ["", "cnr_", "cnr_guess", "Bearer x", "x" * 500])
def test_forged_tokens_are_refused(ws: Workspace, secret: str) -> None:
    assert users.token_user(ws, secret) is None


def test_disabled_users_tokens_stop_working(ws: Workspace) -> None:
    users.add_user(ws, "siem", PASSWORD, "viewer")
    secret, _ = users.add_token(ws, "export", "siem")
    users.disable_user(ws, "siem")
    assert users.token_user(ws, secret) is None
    with pytest.raises(InvalidInput, match="disabled"):
        users.add_token(ws, "again", "siem")


def test_token_use_is_noted_once_a_minute_not_on_every_call(ws: Workspace) -> None:
    users.add_user(ws, "siem", "long-enough-password", "viewer")
    secret, _ = users.add_token(ws, "export", "siem")
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert users.token_user(ws, secret, now=start) is not None
    version = ws.db.data_version()
    assert users.token_user(ws, secret, now=start + timedelta(seconds=30)) is not None
    assert ws.db.data_version() == version
    assert users.list_tokens(ws)[0].last_used_at == start
    users.token_user(ws, secret, now=start + timedelta(minutes=2))
    assert users.list_tokens(ws)[0].last_used_at == start + timedelta(minutes=2)
