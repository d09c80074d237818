from __future__ import annotations

import logging
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from canarino.delivery import prepare_notices, send_notices
from canarino.errors import DeliveryError

from .support import Case, RecordingSink, free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class AuthSink(RecordingSink):
    """A relay that demands STARTTLS, then AUTH, like a company's submission server."""

    tls: ssl.SSLContext
    logins: list[str]

    def __enter__(self) -> AuthSink:
        self.mail_replies, self.rcpt_script, self.drop_during_data = [], {}, set()
        self.logins = []
        self.port = free_port()

        def check(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.password == b"s3cret-Pa55"
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok, handled=False)

        self._controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            tls_context=self.tls,
            require_starttls=True,
            authenticator=check,
            auth_require_tls=True,
        )
        self._controller.start()
        return self


def test_starttls_and_auth_and_the_password_is_never_logged(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    prepare_notices(case.ws, case.incident_id)
    caplog.set_level(logging.DEBUG)
    sink = AuthSink()
    sink.tls = server_tls
    with sink:
        with pytest.raises(DeliveryError, match="does not offer AUTH") as bad:
            send_notices(
                case.ws, case.incident_id, host=sink.host, port=sink.port, username="relay"
            )
        assert "s3cret" not in str(bad.value)
        with pytest.raises(DeliveryError, match=r"refused the login \(535\)") as wrong:
            send_notices(
                case.ws,
                case.incident_id,
                host=sink.host,
                port=sink.port,
                starttls=True,
                tls_context=client_tls,
                username="relay",
                password="wrong-Pa55",
            )
        assert "wrong-Pa55" not in str(wrong.value)
        report = send_notices(
            case.ws,
            case.incident_id,
            host=sink.host,
            port=sink.port,
            starttls=True,
            tls_context=client_tls,
            username="relay",
            password="s3cret-Pa55",
        )
    assert report.sent == case.emails and len(sink.messages) == case.emails
    assert set(sink.logins) == {"relay"}
    ours = [r for r in caplog.records if r.name.startswith("canarino")]
    assert ours and any("auth=yes" in r.getMessage() for r in ours)
    for record in ours:
        assert "s3cret" not in record.getMessage() and "wrong-Pa55" not in record.getMessage()
