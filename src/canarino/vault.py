"""The workspace secret and what is derived from it: pseudonym and encryption keys.

One random 32-byte secret lives in a file outside the database (created 0600). HKDF
derives independent keys from it, so the pseudonym key and the encryption key never
coincide and either can be rotated by changing its label.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import WorkspaceError
from .normalize import Pseudonymizer

_NONCE = 12


def create_secret(path: Path) -> None:
    """Write a new random secret to ``path`` with owner-only permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fp:
        fp.write(secrets.token_hex(32) + "\n")


def read_secret(path: Path) -> bytes:
    """Read the workspace secret; refuse one other users can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise WorkspaceError(
            f"workspace secret {path} is missing",
            hint="restore it from your key backup; without it stored data cannot be read",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WorkspaceError(
            f"workspace secret {path} is readable by other users", hint=f"run: chmod 600 {path}"
        )
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise WorkspaceError(f"workspace secret {path} is not a hex key") from None
    if len(secret) < 32:
        raise WorkspaceError(f"workspace secret {path} is too short (needs 32 bytes)")
    return secret


def _derive(secret: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(secret)


class Vault:
    """Keyed pseudonyms and authenticated encryption of records at rest."""

    def __init__(self, secret: bytes) -> None:
        self.pseudonyms = Pseudonymizer(_derive(secret, "canarino pseudonyms v1"))
        self._aead = AESGCM(_derive(secret, "canarino records v1"))

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    def seal(self, record: dict[str, Any], *, context: str) -> bytes:
        """Encrypt a JSON-able record; ``context`` binds it to its table."""
        nonce = secrets.token_bytes(_NONCE)
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        return nonce + self._aead.encrypt(nonce, data, context.encode())

    def open(self, sealed: bytes, *, context: str) -> dict[str, Any]:
        """Decrypt a record sealed with :meth:`seal` under the same ``context``."""
        nonce, body = sealed[:_NONCE], sealed[_NONCE:]
        result: dict[str, Any] = json.loads(self._aead.decrypt(nonce, body, context.encode()))
        return result
