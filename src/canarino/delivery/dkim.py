"""DKIM signing of outgoing notices with dkimpy."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: selector, signing domain and PEM private key (RSA or Ed25519)."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)


def _dkim_sign(data: bytes, key: DkimKey) -> bytes:
    import dkim  # type: ignore[import-untyped]

    headers = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]
    signature: bytes = dkim.sign(
        data, key.selector.encode(), key.domain.encode(), key.private_key, include_headers=headers
    )
    return signature
