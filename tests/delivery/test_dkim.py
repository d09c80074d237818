from __future__ import annotations

import pytest

from canarino.delivery import DkimKey, prepare_notices, send_notices
from canarino.errors import DeliveryError

from .support import Case, RecordingSink


def test_dkim_signature_verifies_against_the_published_key(case: Case, smtp: RecordingSink) -> None:
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    prepare_notices(case.ws, case.incident_id)
    key = DkimKey("notice2026", "canary-mail.it", pem)
    assert "PRIVATE" not in repr(key)
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, dkim_key=key)
    assert report.sent == case.emails
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    for msg in smtp.messages[:5]:
        assert msg.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(msg.data, dnsfunc=dns)
        tampered = msg.data.replace(b"Example S.p.A.</p>", b"Exemplary S.p.A.</p>")
        assert tampered != msg.data and not dkim.verify(tampered, dnsfunc=dns)
    assert set(asked) == {b"notice2026._domainkey.canary-mail.it."}
    with pytest.raises(DeliveryError, match="DKIM key for selector 'bad' cannot sign"):
        send_notices(
            case.ws,
            case.incident_id,
            host=smtp.host,
            port=smtp.port,
            dkim_key=DkimKey("bad", "canary-mail.it", b"not a key"),
        )
