"""One SMTP session to the company relay: STARTTLS, login, and what became of a message."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from ..errors import DeliveryError
from .outbox import _scrub


def _clean_error(code: int, reply: bytes | str, address: str) -> str:
    """An SMTP reply as stored text, with every e-mail address taken out."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {_scrub(text, address)}"[:300]


@dataclass(frozen=True)
class _SmtpConfig:
    host: str
    port: int
    timeout: float
    starttls: bool
    username: str | None
    password: SecretStr | None = field(repr=False)
    tls_context: ssl.SSLContext | None = field(repr=False)


@dataclass(frozen=True)
class _Outcome:
    """What the relay did with one message."""

    kind: Literal["sent", "refused", "uncertain", "not_sent"]
    code: int = 0
    reply: str = ""


class _Relay:
    """One SMTP connection to the company relay, reopened when it drops."""

    def __init__(self, cfg: _SmtpConfig) -> None:
        self.cfg = cfg
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> None:
        """Open, secure and log in; raise ``DeliveryError`` saying why that is impossible."""
        self.close()
        cfg = self.cfg
        where = f"SMTP server {cfg.host}:{cfg.port}"
        try:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DeliveryError(
                f"cannot connect to {where} ({reason})",
                hint="check --smtp and that the relay is running; notices stay queued",
            ) from None
        step = "STARTTLS"
        try:
            if cfg.starttls:
                smtp.ehlo()
                smtp.starttls(context=cfg.tls_context or ssl.create_default_context())
                smtp.ehlo()
            step = "AUTH"
            if cfg.username:
                secret = cfg.password.get_secret_value() if cfg.password else ""
                smtp.login(cfg.username, secret)
        except smtplib.SMTPNotSupportedError:
            smtp.close()
            hint = "check the relay" + (" or drop --starttls" if step == "STARTTLS" else "")
            if step == "AUTH" and not cfg.starttls:
                hint = "most relays offer AUTH only after STARTTLS: add --starttls"
            raise DeliveryError(f"{where} does not offer {step}", hint=hint) from None
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise DeliveryError(
                f"{where} refused the login ({exc.smtp_code})",
                hint="check the SMTP user name and password",
            ) from None
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            smtp.close()
            raise DeliveryError(
                f"cannot open a session on {where} at {step} ({type(exc).__name__})"
            ) from None
        self._smtp = smtp

    @property
    def connected(self) -> bool:
        """Whether a session is open (as far as we know without asking the server)."""
        return self._smtp is not None

    def send(self, sender: str, to: str, data: bytes) -> _Outcome:
        """Hand one message over, telling apart refused, sent, not sent and uncertain."""
        refused = self.envelope(sender, to)
        if refused is not None:
            return refused
        return self.data(to, data)

    def envelope(self, sender: str, to: str) -> _Outcome | None:
        """``MAIL FROM`` and ``RCPT TO``: ``None`` when the relay will take the message.

        Nothing is delivered yet: after this a caller may still :meth:`reset` and walk
        away, or go on with :meth:`data`.
        """
        if self._smtp is None:
            self.connect()
        smtp = self._smtp
        if smtp is None:
            return _Outcome("not_sent", 0, "no connection to the relay")
        international = not (to.isascii() and sender.isascii())
        try:
            smtp.ehlo_or_helo_if_needed()
            if international and not smtp.has_extn("smtputf8"):
                reason = "553 the relay does not accept international addresses (SMTPUTF8)"
                return _Outcome("refused", 553, reason)
            # smtplib's mail()/rcpt() re-parse each address (a third of our CPU per
            # message); these were validated when the notice was prepared.
            for command, arg, ok in (
                ("mail", f"FROM:<{sender}>" + (" SMTPUTF8" if international else ""), (250,)),
                ("rcpt", f"TO:<{to}>", (250, 251)),
            ):
                smtp.putcmd(command, arg)
                code, reply = smtp.getreply()
                if code not in ok:
                    self._after_refusal(code)
                    return _Outcome("refused", code, _clean_error(code, reply, to))
        except (OSError, smtplib.SMTPException) as exc:
            # Before DATA the relay cannot have taken the message: safe to try again.
            self._drop()
            return _Outcome("not_sent", 0, f"connection lost before DATA ({type(exc).__name__})")
        return None

    def data(self, to: str, data: bytes) -> _Outcome:
        """``DATA`` and the message, after a successful :meth:`envelope`."""
        smtp = self._smtp
        if smtp is None:
            return _Outcome("not_sent", 0, "no connection to the relay")
        try:
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                self._after_refusal(code)
                return _Outcome("refused", code, _clean_error(code, reply, to))
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return _Outcome("not_sent", 0, f"connection lost before DATA ({type(exc).__name__})")
        try:
            # Dot-stuffing (RFC 5321 §4.5.2): a line that starts with "." gets another.
            data = data.replace(b"\n.", b"\n..")
            if data.startswith(b"."):
                data = b"." + data
            smtp.send(data + b".\r\n")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return _Outcome(
                "uncertain",
                0,
                f"connection lost during DATA ({type(exc).__name__}): the relay may have the message",
            )
        if code == 250:
            return _Outcome("sent", code, "")
        self._after_refusal(code)
        return _Outcome("refused", code, _clean_error(code, reply, to))

    def reset(self) -> None:
        """Abandon the transaction begun by :meth:`envelope`; nothing is delivered."""
        self._after_refusal(0)

    def _after_refusal(self, code: int) -> None:
        if code == 421:
            self._drop()  # the server is closing the connection (RFC 5321 §3.8)
            return
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        """Say goodbye to the server, ignoring a connection that is already gone."""
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            self._smtp.close()
        self._smtp = None
