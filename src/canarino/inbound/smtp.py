"""The inbound SMTP listener for the monitored mail domains (aiosmtpd).

Point the MX records of the canary domains here. The listener accepts a recipient only
when it is a canary address on one of the workspace's ``mail_domains``: another domain is
refused as relaying (550 5.7.1) and an unknown local part as an unknown user
(550 5.1.1, counted as noise, nothing kept), so the domains never look like accept-all
traps. Each accepted message becomes a sighting per canary with parsed evidence, its
raw bytes kept compressed. Limits: message size (``smtp_max_bytes``), simultaneous
connections (``smtp_max_connections``, 421 beyond) and messages per client IP per
minute (``smtp_rate_per_minute``, 450, or 421 at connect). When the database cannot
store a message the client gets 451 and retries later: nothing is lost.

Sessions run on an asyncio loop in a background thread; database work runs on one
worker thread with its own sessions, parsing (and DKIM look-ups) on two others, so a slow
DNS answer never stalls the SMTP dialogue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..errors import InvalidInput
from ..sightings import is_canary_email
from ..workspace import Workspace
from .evidence import DnsFunc
from .mail import MailIn, parse, record_mail

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RECIPIENTS = 100
IDLE_TIMEOUT = 120.0
# Lenient on long lines: real phishing often breaks the 1,000-byte rule, and refusing it
# would lose evidence. Memory stays bounded by the message size limit.
LINE_LIMIT = 1 << 16

TEMPFAIL = "451 4.3.0 Temporary failure storing the message, try again later"


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:25`` for IPv6) into host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"{text!r} is not HOST:PORT", hint="e.g. 0.0.0.0:25 or 127.0.0.1:2525")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context for STARTTLS from a PEM certificate chain and its key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{exc.filename}: no such file") from None
    except (ssl.SSLError, ValueError):
        raise InvalidInput(
            f"{cert} and {key} are not a PEM certificate and its private key",
            hint="give the full chain and the unencrypted key, e.g. from your ACME client",
        ) from None
    return context


class _Bucket:
    """Per-client token buckets: ``rate`` messages a minute, bursts up to ``rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._state: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._state.get(key, (float(self.rate), now))
        return min(float(self.rate), tokens + (now - last) * self.rate / 60.0)

    def has(self, key: str) -> bool:
        """Whether ``key`` may send now, without spending."""
        return self._tokens(key, time.monotonic()) >= 1.0

    def take(self, key: str) -> bool:
        """Spend one token of ``key``; False when it has none left."""
        now = time.monotonic()
        tokens = self._tokens(key, now)
        if len(self._state) > 50_000:
            # Forget clients whose bucket is full again: they are indistinguishable from new.
            self._state = {k: v for k, v in self._state.items() if v[0] < self.rate - 1}
        if tokens < 1.0:
            self._state[key] = (tokens, now)
            return False
        self._state[key] = (tokens - 1.0, now)
        return True


@dataclass
class ListenerStats:
    """What the listener did since it started."""

    connections: int = 0
    refused_connections: int = 0
    messages: int = 0
    sightings: int = 0
    evidence: int = 0
    unknown_recipients: int = 0
    relay_refused: int = 0
    rate_limited: int = 0
    temp_failures: int = 0


class _SMTP(SMTP):
    """aiosmtpd's session with a connection limit and a per-IP rate limit at connect."""

    line_length_limit = LINE_LIMIT

    def __init__(self, listener: SmtpListener, **kwargs: Any) -> None:
        super().__init__(listener, **kwargs)
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection."""
        if self.transport is None:
            self._listener._active.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        """Forget the connection."""
        self._listener._active.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        # Refusing before the greeting (RFC 5321 §3.1 allows 421 there) keeps a flood from
        # holding sessions open.
        listener, peer = self._listener, self.session.peer if self.session else None
        ip = peer[0] if isinstance(peer, tuple) else str(peer)
        reason = None
        if len(listener._active) > listener.max_connections:
            reason = "421 4.7.0 Too many connections, try again later"
        elif not listener._bucket.has(ip):
            reason = "421 4.7.1 Too many messages from your address, try again later"
            listener.stats.rate_limited += 1
        if reason is not None:
            listener.stats.refused_connections += 1
            await self.push(reason)
            if self.transport is not None:
                self.transport.close()
            return
        listener.stats.connections += 1
        await super()._handle_client()


class SmtpListener:
    """A running SMTP listener for canary mail: ``.port``, ``.stats``, ``.stop()``."""

    def __init__(
        self,
        ws: Workspace,
        host: str,
        port: int,
        *,
        on_sightings: Callable[[], None] | None = None,
        dnsfunc: DnsFunc | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        settings = ws.settings
        self.tls = tls_context
        self.ws = ws
        self.host = host
        self.port = port
        self.domains = {d.lower() for d in settings.mail_domains}
        self.max_connections = settings.smtp_max_connections
        self.max_bytes = settings.smtp_max_bytes
        self.stats = ListenerStats()
        self._on_sightings = on_sightings
        self._dnsfunc = dnsfunc
        self._bucket = _Bucket(settings.smtp_rate_per_minute)
        self._active: set[_SMTP] = set()
        self._inflight = 0
        self._notify_pending = threading.Lock()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="canarino-smtp-db")
        self._parser = ThreadPoolExecutor(2, thread_name_prefix="canarino-smtp-parse")
        self._notifier = ThreadPoolExecutor(1, thread_name_prefix="canarino-smtp-notify")
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> SmtpListener:
        """Bind and serve in a background thread; raise if the address cannot be used."""
        self._thread = threading.Thread(target=self._run, name="canarino-smtp", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join()
            self._shutdown_pools()
            raise InvalidInput(
                f"cannot listen on {self.host}:{self.port}: {self._error}",
                hint="choose another address with smtp_listen, or free the port",
            )
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(self._factory, host=self.host, port=self.port)
            )
        except Exception as exc:
            self._error = exc
            self._loop.close()
            self._ready.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _factory(self) -> _SMTP:
        return _SMTP(
            self,
            data_size_limit=self.max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=socket.gethostname(),
            ident="ESMTP",
            timeout=IDLE_TIMEOUT,
            tls_context=self.tls,
            loop=self._loop,
        )

    @property
    def running(self) -> bool:
        """Whether the listener still serves."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let messages being stored finish, then close every session."""
        if not self.running:
            return
        server = self._server
        if server is not None:
            self._loop.call_soon_threadsafe(server.close)
        deadline = time.monotonic() + timeout
        while self._inflight and time.monotonic() < deadline:
            time.sleep(0.02)
        self._loop.call_soon_threadsafe(self._close_all)
        if self._thread is not None:
            self._thread.join(timeout)
        self._shutdown_pools()

    def _close_all(self) -> None:
        for session in list(self._active):
            if session.transport is not None:
                session.transport.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.call_soon(self._loop.stop)

    def _shutdown_pools(self) -> None:
        for pool in (self._parser, self._db, self._notifier):
            pool.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> SmtpListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- SMTP hooks (run on the listener's loop) ------------------------------------

    async def _in(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(pool, functools.partial(fn, *args))

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept a sender unless its IP is over the rate limit."""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        if not self._bucket.take(peer):
            self.stats.rate_limited += 1
            return "450 4.7.1 Too many messages from your address, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept canary addresses on the monitored domains; refuse everything else."""
        domain = address.rsplit("@", 1)[-1].strip().lower() if "@" in address else ""
        if domain not in self.domains:
            self.stats.relay_refused += 1
            return "550 5.7.1 Relaying denied"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        # Refused probes spend the client's allowance too: guessing addresses one RCPT
        # after another is as limited as sending messages.
        if not self._bucket.has(peer):
            self.stats.rate_limited += 1
            return "450 4.7.1 Too many attempts from your address, try again later"
        try:
            check = functools.partial(is_canary_email, count_unknown=True)
            known = await self._in(self._db, check, self.ws, address)
        except Exception as exc:
            log.warning("recipient check failed: %s", type(exc).__name__)
            self.stats.temp_failures += 1
            return "451 4.3.0 Temporary failure, try again later"
        if not known:
            self.stats.unknown_recipients += 1
            self._bucket.take(peer)
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message's sightings and raw bytes; 451 if they cannot be stored."""
        peer = session.peer[0] if isinstance(session.peer, tuple) else None
        raw = envelope.original_content or b""
        mail = MailIn(
            raw=raw,
            recipients=tuple(envelope.rcpt_tos),
            received_at=datetime.now(UTC),
            provider="smtp",
            peer_ip=peer,
            mail_from=envelope.mail_from if envelope.mail_from not in (None, "<>") else "",
        )
        self._inflight += 1
        try:
            parsed = await self._in(
                self._parser, functools.partial(parse, dnsfunc=self._dnsfunc), mail
            )
            result = await self._in(
                self._db, functools.partial(record_mail, parsed=parsed), self.ws, mail
            )
        except Exception as exc:
            # Never the message or its addresses in the log: only what kind of failure.
            log.warning("could not store an inbound message: %s", type(exc).__name__)
            self.stats.temp_failures += 1
            return TEMPFAIL
        finally:
            self._inflight -= 1
        self.stats.messages += 1
        self.stats.sightings += result.report.recorded
        self.stats.evidence += result.report.evidence
        if result.report.evidence:
            self._notify()
        return "250 2.0.0 Message accepted"

    async def handle_exception(self, error: Exception) -> str:
        """An unexpected error in a session: a temporary failure, details only in the log."""
        log.warning("SMTP session error: %s", type(error).__name__)
        return "451 4.3.0 Temporary failure, try again later"

    def _notify(self) -> None:
        """Call ``on_sightings`` off the loop; calls that pile up are merged into one."""
        if self._on_sightings is None or not self._notify_pending.acquire(blocking=False):
            return
        callback = self._on_sightings

        def run() -> None:
            self._notify_pending.release()
            try:
                callback()
            except Exception as exc:
                log.warning("on_sightings failed: %s", type(exc).__name__)

        try:
            self._notifier.submit(run)
        except RuntimeError:
            self._notify_pending.release()


def start_listener(
    ws: Workspace,
    host: str,
    port: int,
    *,
    on_sightings: Callable[[], None] | None = None,
    dnsfunc: DnsFunc | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> SmtpListener:
    """Start the SMTP listener for ``ws`` on ``host:port`` (0: any free port) in a thread.

    ``on_sightings`` is called (on a worker thread) after new evidence was stored, e.g. to
    raise alerts; ``dnsfunc`` replaces DNS for DKIM keys (tests); ``tls_context`` (see
    :func:`load_tls`) offers STARTTLS. Stop it with ``.stop()``.
    """
    # aiosmtpd logs every recipient at INFO: that would write canary addresses to logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    listener = SmtpListener(
        ws, host, port, on_sightings=on_sightings, dnsfunc=dnsfunc, tls_context=tls_context
    )
    return listener.start()
