"""People and machines that use the web app: users, roles, sessions and API tokens.

Passwords are kept as argon2id hashes; session cookies and API tokens are random
secrets of which only the SHA-256 is stored, so a copy of the database opens nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models as m
from .errors import InvalidInput, NotFound, PermissionDenied
from .workspace import Workspace

# Ordered by power: each role may do everything the roles before it may.
ROLES = ("viewer", "analyst", "admin")
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = 12
TOKEN_PREFIX = "cnr_"
# How precisely a token's last use is recorded.
TOKEN_USE_PRECISION = timedelta(minutes=1)
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
# argon2id with the library's RFC 9106 "low memory" defaults; tests swap in a cheap one.
hasher = PasswordHasher()
_dummy: list[tuple[PasswordHasher, str]] = []


def _dummy_hash() -> str:
    """A hash verified when the user does not exist, so both answers take the same time."""
    if not _dummy or _dummy[0][0] is not hasher:
        _dummy[:] = [(hasher, hasher.hash(secrets.token_urlsafe(16)))]
    return _dummy[0][1]


@dataclass(frozen=True)
class UserInfo:
    """A user as shown to people; never carries the password hash."""

    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime

    def may(self, role: str) -> bool:
        """Whether this user's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class TokenInfo:
    """An API token as shown to people; the secret itself is shown once, at creation."""

    id: int
    name: str
    username: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class SignedIn:
    """A live browser session: who, its CSRF token and when it ends."""

    user: UserInfo
    csrf_token: str
    expires_at: datetime


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a cookie or token secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_role(role: str) -> str:
    """Return ``role`` if it is one of :data:`ROLES`."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    return role


def _info(u: m.User) -> UserInfo:
    return UserInfo(u.id, u.username, u.role, u.disabled, u.created_at)


def _get(s: Session, username: str) -> m.User:
    found = s.scalar(select(m.User).where(m.User.username == username))
    if found is None:
        raise NotFound(f"no user named {username!r}", hint="list them with 'canarino users list'")
    return found


def add_user(ws: Workspace, username: str, password: str, role: str) -> UserInfo:
    """Create a user with an argon2id password hash."""
    username = username.strip()
    if not _USERNAME.match(username):
        raise InvalidInput(
            "a user name has 1 to 100 letters, digits or . _ @ - and starts with a letter or digit"
        )
    check_role(role)
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password is too short: use at least {MIN_PASSWORD} characters")
    with ws.db.session() as s:
        row = m.User(username=username, password_hash=hasher.hash(password), role=role)
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise InvalidInput(f"a user named {username!r} already exists") from None
        return _info(row)


def list_users(ws: Workspace) -> list[UserInfo]:
    """Every user, by name."""
    with ws.db.session() as s:
        return [_info(u) for u in s.scalars(select(m.User).order_by(m.User.username))]


def get_user(ws: Workspace, username: str) -> UserInfo:
    """The user called ``username``."""
    with ws.db.session() as s:
        return _info(_get(s, username))


def disable_user(ws: Workspace, username: str) -> UserInfo:
    """Disable a user: their sessions end at once and their tokens stop working."""
    with ws.db.session() as s:
        user = _get(s, username)
        user.disabled = True
        s.execute(delete(m.WebSession).where(m.WebSession.user_id == user.id))
        s.flush()
        return _info(user)


def authenticate(ws: Workspace, username: str, password: str) -> UserInfo:
    """Return the user if the password is right; one error for every failure."""
    refused = PermissionDenied(
        "wrong user name or password, or the account is disabled",
        hint="ask an administrator to check your account",
    )
    with ws.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == username.strip()))
        try:
            hasher.verify(user.password_hash if user else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            raise refused from None
        if user is None or user.disabled:
            raise refused
        if hasher.check_needs_rehash(user.password_hash):
            user.password_hash = hasher.hash(password)
        return _info(user)


# --- sessions ------------------------------------------------------------------------------


def start_session(
    ws: Workspace, user: UserInfo, *, now: datetime | None = None, replaces: str | None = None
) -> tuple[str, SignedIn]:
    """Open a session for ``user``; returns the cookie value (shown once) and the session.

    A fresh random value every time, so a value planted before sign-in is worthless;
    ``replaces`` (the cookie the browser had) is ended.
    """
    now = now or m.utcnow()
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + SESSION_LIFETIME
    with ws.db.session() as s:
        if replaces:
            s.execute(delete(m.WebSession).where(m.WebSession.digest == digest(replaces)))
        s.add(
            m.WebSession(
                digest=digest(cookie),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
    return cookie, SignedIn(user, csrf, expires)


def session_user(ws: Workspace, cookie: str, *, now: datetime | None = None) -> SignedIn | None:
    """The live session behind a cookie value, or ``None`` (unknown, expired, disabled)."""
    now = now or m.utcnow()
    with ws.db.session() as s:
        row = s.execute(
            select(m.WebSession, m.User)
            .join(m.User, m.User.id == m.WebSession.user_id)
            .where(m.WebSession.digest == digest(cookie))
        ).first()
        if row is None:
            return None
        sess, user = row
        if sess.expires_at <= now or user.disabled:
            s.execute(delete(m.WebSession).where(m.WebSession.id == sess.id))
            return None
        return SignedIn(_info(user), sess.csrf_token, sess.expires_at)


def current_session(ws: Workspace, cookie: str, *, now: datetime | None = None) -> SignedIn | None:
    """:func:`session_user`, reused until data changes (sign-out, disabling, a role change).

    A session found earlier is checked against the clock each time; once expired it is
    looked up again, which ends it.
    """
    now = now or m.utcnow()
    found = ws.db.cached(("session", digest(cookie)), lambda: session_user(ws, cookie, now=now))
    if found is not None and found.expires_at <= now:
        return session_user(ws, cookie, now=now)
    return found


def end_session(ws: Workspace, cookie: str) -> None:
    """Sign out: the cookie value stops working."""
    with ws.db.session() as s:
        s.execute(delete(m.WebSession).where(m.WebSession.digest == digest(cookie)))


def purge_sessions(ws: Workspace, *, now: datetime | None = None) -> int:
    """Delete expired sessions; returns how many."""
    with ws.db.session() as s:
        result = s.execute(
            delete(m.WebSession).where(m.WebSession.expires_at <= (now or m.utcnow()))
        )
        return int(getattr(result, "rowcount", 0) or 0)


# --- API tokens ----------------------------------------------------------------------------


def add_token(ws: Workspace, name: str, username: str) -> tuple[str, TokenInfo]:
    """Create an API token acting as ``username``; the secret is returned once, never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a token name must have 1 to 100 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with ws.db.session() as s:
        user = _get(s, username)
        if user.disabled:
            raise InvalidInput(f"user {username!r} is disabled; enable or choose another user")
        row = m.ApiToken(user_id=user.id, name=name, digest=digest(secret))
        s.add(row)
        s.flush()
        return secret, TokenInfo(row.id, row.name, user.username, row.created_at, None, False)


def list_tokens(ws: Workspace) -> list[TokenInfo]:
    """Every API token (never the secret), newest first."""
    with ws.db.session() as s:
        rows = s.execute(
            select(m.ApiToken, m.User.username)
            .join(m.User, m.User.id == m.ApiToken.user_id)
            .order_by(m.ApiToken.id.desc())
        ).all()
        return [
            TokenInfo(t.id, t.name, u, t.created_at, t.last_used_at, t.revoked) for t, u in rows
        ]


def revoke_token(ws: Workspace, token_id: int) -> TokenInfo:
    """Revoke token ``token_id``: it stops working at once."""
    with ws.db.session() as s:
        token = s.get(m.ApiToken, token_id)
        if token is None:
            raise NotFound(f"no API token {token_id}", hint="list them with 'canarino tokens list'")
        token.revoked = True
        user = s.get(m.User, token.user_id)
        s.flush()
        return TokenInfo(
            token.id,
            token.name,
            user.username if user else "",
            token.created_at,
            token.last_used_at,
            True,
        )


def token_user(ws: Workspace, secret: str, *, now: datetime | None = None) -> UserInfo | None:
    """The user an API token acts as, or ``None`` (unknown, revoked, user disabled)."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    with ws.db.session() as s:
        row = s.execute(
            select(m.ApiToken, m.User)
            .join(m.User, m.User.id == m.ApiToken.user_id)
            .where(m.ApiToken.digest == digest(secret))
        ).first()
        if row is None or row[0].revoked or row[1].disabled:
            return None
        # Noted to the minute: a write per call would make every kept page be read again.
        now = now or m.utcnow()
        last = row[0].last_used_at
        if last is None or not now - TOKEN_USE_PRECISION < last <= now:
            s.execute(update(m.ApiToken).where(m.ApiToken.id == row[0].id).values(last_used_at=now))
        return _info(row[1])
