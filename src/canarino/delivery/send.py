"""Sending notices: workers over SMTP sessions, a group-committed journal, retries."""

from __future__ import annotations

import base64
import logging
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, bindparam, select, update

from .. import models as m
from ..errors import DeliveryError, InvalidInput
from ..notices import reference_token
from ..workspace import Workspace
from .dkim import DkimKey, _dkim_sign
from .letters import _queue_letter
from .outbox import (
    EMAIL,
    FAILED,
    MAX_ATTEMPTS,
    NOTICE_CONTEXT,
    QUEUED,
    SENDING,
    SENT,
    Progress,
    SendReport,
    _Run,
    opening_report,
    retry_delay,
)
from .routing import _Scheduler
from .sms import _queue_sms
from .smtp import _Outcome, _Relay, _SmtpConfig

log = logging.getLogger(__name__)


# Built once: building an UPDATE costs more than running it on SQLite.
_CLAIM = (
    update(m.Notice)
    .where(m.Notice.id.in_(bindparam("b_ids", expanding=True)), m.Notice.state == QUEUED)
    .values(
        state=SENDING,
        attempts=m.Notice.attempts + 1,
        lease_until=bindparam("b_lease"),
        lease_owner=bindparam("b_owner"),
        updated_at=bindparam("b_now"),
    )
    .returning(m.Notice.id, m.Notice.attempts)
)
# What a worker reads before it claims a notice; reading changes nothing.
_PEEK = select(m.Notice.sealed, m.Notice.reference, m.Notice.state).where(
    m.Notice.id == bindparam("b_id")
)
_MARK_SENT = (
    update(m.Notice)
    .where(m.Notice.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        state=SENT,
        sent_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        lease_until=None,
        last_error=None,
    )
)


_DATE: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """The ``Date`` header line of this second (formatted once a second, not per message)."""
    global _DATE
    second = int(time.time())
    if _DATE[0] != second:
        stamp = datetime.fromtimestamp(second, UTC)
        _DATE = (second, b"Date: " + format_datetime(stamp).encode() + b"\r\n")
    return _DATE[1]


class _Statements:
    """The three statements sent for every message: read, claim, mark sent.

    Through SQLAlchemy on any database. On SQLite, where SQLAlchemy's work per
    statement costs more CPU than the statement itself, the same SQL goes straight to
    the driver (:class:`_SqliteStatements`).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def peek(self, notice_id: int) -> Any:
        row = self.conn.execute(_PEEK, {"b_id": notice_id}).first()
        self.conn.rollback()  # end the read: the writes run in their own transactions
        return row

    def commit_group(
        self, sent: list[int], claims: list[int], now: datetime, lease: datetime, owner: str
    ) -> dict[int, int]:
        """Mark ``sent`` and claim ``claims`` in one transaction; the claimed attempts."""
        rows: dict[int, int] = {}
        with self.conn.begin():
            if sent:
                self.conn.execute(_MARK_SENT, {"b_ids": sent, "b_now": now})
            if claims:
                found = self.conn.execute(
                    _CLAIM, {"b_ids": claims, "b_now": now, "b_lease": lease, "b_owner": owner}
                )
                rows = {row[0]: row[1] for row in found}
        return rows


class _SqliteStatements(_Statements):
    """The same statements written for SQLite's driver, datetimes stored as SQLAlchemy does."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.raw: Any = conn.connection.dbapi_connection
        stamp = m.Notice.__table__.c.updated_at.type.bind_processor(conn.dialect)
        self.stamp = stamp or (lambda value: value)

    def peek(self, notice_id: int) -> Any:
        return self.raw.execute(
            "SELECT sealed, reference, state FROM notices WHERE id = ?", (notice_id,)
        ).fetchone()

    def commit_group(
        self, sent: list[int], claims: list[int], now: datetime, lease: datetime, owner: str
    ) -> dict[int, int]:
        at = self.stamp(now)
        rows: dict[int, int] = {}
        try:
            if sent:
                self.raw.execute(
                    "UPDATE notices SET state = ?, sent_at = ?, updated_at = ?, "
                    "lease_until = NULL, last_error = NULL "
                    f"WHERE id IN ({','.join('?' * len(sent))})",
                    (SENT, at, at, *sent),
                )
            if claims:
                found = self.raw.execute(
                    "UPDATE notices SET state = ?, attempts = attempts + 1, lease_until = ?, "
                    f"lease_owner = ?, updated_at = ? WHERE id IN ({','.join('?' * len(claims))}) "
                    "AND state = ? RETURNING id, attempts",
                    (SENDING, self.stamp(lease), owner, at, *claims, QUEUED),
                ).fetchall()
                rows = dict(found)
            self.raw.commit()
        except BaseException:
            self.raw.rollback()
            raise
        return rows


def _statements(conn: Connection) -> _Statements:
    if conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite":
        return _SqliteStatements(conn)
    return _Statements(conn)


class _Claim:
    """A worker's request to claim one notice, answered by the journal."""

    __slots__ = ("attempts", "done", "journal")

    def __init__(self, journal: _Journal) -> None:
        self.journal = journal
        self.done = threading.Event()
        self.attempts: int | None = None

    def wait(self) -> int | None:
        """Wait until the claim is committed: the notice's attempts, or ``None`` if taken."""
        self.done.wait()
        if self.journal.error is not None:
            raise self.journal.error
        return self.attempts


class _Journal:
    """Group commit of the busy state changes of a run: claims and ``sent``.

    Each claim is committed before the worker sends the message, and each ``sent`` in
    the next commit after the relay's 250 reply: nothing waits for a batch of messages.
    What all workers ask for while one commit runs goes into the next one, which saves
    most of the per-message cost of a transaction. Each claim has its own event, so a
    commit wakes only the workers it answers.
    """

    # SQLite folds its write-ahead log into the database every this many pages; each
    # message rewrites a few pages twice, so a longer log folds the two writes into one
    # and syncs the disk less often (the default is 1,000 pages).
    _CHECKPOINT_PAGES = 16_000

    def __init__(self, ws: Workspace, owner: str, lease: timedelta) -> None:
        self._engine, self._owner, self._lease = ws.db.engine, owner, lease
        self._cv = threading.Condition()
        self._claims: dict[int, _Claim] = {}
        self._sent: list[int] = []
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="canarino-journal", daemon=True)
        self._thread.start()

    def claim(self, notice_id: int) -> _Claim:
        """Ask to claim ``notice_id`` (``sending`` with a lease); returns at once.

        The claim is committed by the journal's thread; :meth:`_Claim.wait` says when,
        so a worker can talk to the relay meanwhile, up to the point where the relay
        could take the message.
        """
        request = _Claim(self)
        with self._cv:
            if self.error is not None:
                request.done.set()
                return request
            self._claims[notice_id] = request
            self._cv.notify()
        return request

    def sent(self, notice_id: int) -> None:
        """Record that the relay accepted ``notice_id``; committed with the next group."""
        with self._cv:
            self._sent.append(notice_id)
            self._cv.notify()

    def close(self) -> None:
        """Commit what is pending, stop, and raise what went wrong if anything did."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        with self._engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={self._CHECKPOINT_PAGES}")
                conn.commit()
            try:
                self._loop(conn)
            finally:
                if sqlite:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")
                    conn.commit()

    def _loop(self, conn: Connection) -> None:
        statements = _statements(conn)
        while True:
            with self._cv:
                while not (self._claims or self._sent or self._closed):
                    self._cv.wait()
                if not (self._claims or self._sent):
                    return
                claims, self._claims = self._claims, {}
                sent, self._sent = self._sent, []
            try:
                now = datetime.now(UTC)
                rows = statements.commit_group(
                    sent, list(claims), now, now + self._lease, self._owner
                )
            except BaseException as exc:
                with self._cv:
                    self.error = exc
                    pending = [*claims.values(), *self._claims.values()]
                    self._claims.clear()
                for request in pending:
                    request.done.set()
                return
            for notice_id, request in claims.items():
                request.attempts = rows.get(notice_id)
                request.done.set()


@dataclass
class _RunParams:
    sender: str
    envelope_local: str
    envelope_domain: str
    verp: bool
    lease: timedelta
    max_attempts: int
    retry_backoff: float | None
    dkim: DkimKey | None


class _SendRun(_Run):
    """One sending run: workers, scheduler, report and progress."""

    def __init__(
        self,
        ws: Workspace,
        incident_id: int,
        cfg: _SmtpConfig,
        params: _RunParams,
        scheduler: _Scheduler,
        report: SendReport,
        total: int,
        progress: Progress | None,
    ) -> None:
        super().__init__(scheduler, report, total, progress)
        self.ws, self.incident_id, self.cfg, self.params = ws, incident_id, cfg, params
        self.journal = _Journal(ws, self.owner, params.lease)
        self.alive = 0

    # the worker ----------------------------------------------------------------------

    def work(self, relay: _Relay) -> None:
        """Send notices until none are left or the relay cannot be reached any more."""
        try:
            with self.ws.db.engine.connect() as conn:
                statements = _statements(conn)
                while (job := self.scheduler.take()) is not None:
                    notice_id, route = job
                    if not self._ensure_connected(relay):
                        self.scheduler.retry(notice_id, route, 0.0, slow_down=False)
                        break
                    self._deliver(conn, statements, relay, notice_id, route)
        except BaseException as exc:  # handed to the main thread, which raises it
            with self.lock:
                self.errors.append(exc)
            self.scheduler.close()
        finally:
            relay.close()
            with self.lock:
                self.alive -= 1
                last = self.alive == 0
            if last:
                self.scheduler.close()

    def _ensure_connected(self, relay: _Relay) -> bool:
        if relay.connected:
            return True
        error: DeliveryError | None = None
        for pause in (0.0, 0.2, 0.5, 1.0, 2.0):
            time.sleep(pause)
            try:
                relay.connect()
                return True
            except DeliveryError as exc:
                error = exc
        with self.lock:
            if error is not None:
                self.errors.append(error)
        return False

    def _message(self, sealed: bytes, reference: str | None) -> tuple[str, str, bytes]:
        """Envelope sender, recipient and signed bytes of a claimed notice."""
        p = self.params
        payload = self.ws.vault.open(sealed, context=NOTICE_CONTEXT)
        data = _date_header() + zlib.decompress(base64.b64decode(payload["mime"]))
        if p.dkim:
            data = _dkim_sign(data, p.dkim) + data
        envelope = p.sender
        if p.verp and reference:
            envelope = f"{p.envelope_local}+{reference_token(reference)}@{p.envelope_domain}"
        return envelope, payload["to"], data

    def _deliver(
        self, conn: Connection, statements: _Statements, relay: _Relay, notice_id: int, route: str
    ) -> None:
        """Claim and send one notice, and record what became of it.

        The claim (``sending`` with a lease) is committed while the relay answers
        ``MAIL FROM`` and ``RCPT TO``, and always before ``DATA``: the relay cannot have
        a message whose claim is not on disk. A claim lost to another run resets the
        SMTP transaction, so nothing is sent.
        """
        peeked = statements.peek(notice_id)
        if peeked is None or peeked[2] != QUEUED:  # a person or another run settled it
            self._settle(None)
            return
        sealed, reference, _ = peeked
        try:
            envelope, to, data = self._message(sealed, reference)
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            if self.journal.claim(notice_id).wait() is None:
                self._settle(None)
                return
            error = f"cannot read the stored notice ({type(exc).__name__})"
            self._update(conn, notice_id, state=FAILED, lease_until=None, last_error=error)
            self._settle("failed", error)
            return
        claim = self.journal.claim(notice_id)
        refused = relay.envelope(envelope, to)
        attempts = claim.wait()
        if attempts is None:  # another run took it or a person settled it meanwhile
            if refused is None:
                relay.reset()
            self._settle(None)
            return
        outcome = refused or relay.data(to, data)
        if outcome.kind == "sent":
            self.journal.sent(notice_id)
            self._settle("sent")
        elif outcome.kind == "uncertain":
            problem = "connection lost during DATA: delivery uncertain"
            self._in_doubt(conn, notice_id, outcome.reply, problem)
        elif outcome.kind == "not_sent":
            # Not an attempt at the recipient: give the attempt back and queue it again.
            self._requeue(conn, notice_id, outcome.reply, attempts=attempts - 1)
            self.scheduler.retry(notice_id, route, 0.0, slow_down=False)
        else:
            self._refused(conn, notice_id, route, attempts, outcome)

    def _refused(
        self, conn: Connection, notice_id: int, route: str, attempts: int, outcome: _Outcome
    ) -> None:
        p = self.params
        code, error = outcome.code, outcome.reply
        status = " ".join(error.split()[:2])
        temporary = 400 <= code < 500
        if temporary and attempts < p.max_attempts:
            self._requeue(conn, notice_id, error)
            if p.retry_backoff is None:
                self._settle("retry_later", f"temporary refusal {status}: left for a later run")
                return
            delay = retry_delay(p.retry_backoff, attempts)
            self._count("retried", f"temporary refusal {status}: retried")
            log.info("notice %d: %s; retrying in %.1f s", notice_id, error, delay)
            self.scheduler.retry(notice_id, route, delay, slow_down=True)
            return
        if temporary:
            error = f"gave up after {attempts} temporary refusals; last: {error}"[:300]
        now = datetime.now(UTC)
        with conn.begin():
            conn.execute(
                update(m.Notice)
                .where(m.Notice.id == notice_id)
                .values(
                    state=FAILED,
                    lease_until=None,
                    lease_owner=None,
                    last_error=error,
                    updated_at=now,
                )
            )
            queued = _queue_letter(self.ws, conn, notice_id, error, now)
            texted = _queue_sms(self.ws, conn, notice_id, error, now) == "queued"
        if queued:
            self._count("letters_queued")
        if texted:
            self._count("sms_queued")
        log.warning("notice %d failed: %s", notice_id, error)
        then = "; ".join(
            what for what, done in (("letter queued", queued), ("text queued", texted)) if done
        )
        self._settle("failed", f"refused {status}" + (f"; {then}" if then else ""))


def send_notices(
    ws: Workspace,
    incident_id: int,
    *,
    host: str,
    port: int,
    progress: Progress | None = None,
    timeout: float = 30,
    starttls: bool = False,
    username: str | None = None,
    password: str | SecretStr | None = None,
    tls_context: ssl.SSLContext | None = None,
    workers: int = 4,
    rate_per_provider: float | None = None,
    burst: float = 10,
    max_attempts: int = MAX_ATTEMPTS,
    retry_backoff: float | None = 2.0,
    dkim_key: DkimKey | None = None,
    verp: bool = True,
    lease_seconds: float | None = None,
) -> SendReport:
    """Send an incident's queued e-mail notices through the SMTP relay at ``host:port``.

    ``workers`` connections send in parallel; ``rate_per_provider`` caps messages per
    second to each mailbox provider (gmail.com and googlemail.com are one provider), and
    a provider that answers 4xx is slowed down. A 4xx reply is retried in this run after
    ``retry_backoff`` seconds, doubling, until ``max_attempts``; a 5xx reply fails the
    notice and queues a letter. With ``starttls`` the session is encrypted before any
    ``username``/``password`` login; the password is never logged. The envelope sender
    carries the notice reference (``privacy+<ref>@…``) so bounces map back (``verp``).
    Raises ``DeliveryError`` if the relay cannot be reached; unsent notices stay queued.
    """
    started = time.perf_counter()
    if workers < 1:
        raise InvalidInput("workers must be at least 1")
    if dkim_key is not None:
        try:
            _dkim_sign(b"From: check@example.invalid\r\nSubject: key check\r\n\r\nx\r\n", dkim_key)
        except Exception as exc:  # dkimpy raises several unrelated types for a bad key
            raise DeliveryError(
                f"the DKIM key for selector {dkim_key.selector!r} cannot sign ({type(exc).__name__})",
                hint="give a PEM RSA or Ed25519 private key",
            ) from None
    now = datetime.now(UTC)
    lease = timedelta(seconds=lease_seconds if lease_seconds is not None else 2 * timeout + 30)
    with ws.db.session() as s:
        report = opening_report(s, incident_id, EMAIL, now)
        jobs = s.execute(
            select(m.Notice.id, m.Notice.route)
            .where(
                m.Notice.incident_id == incident_id,
                m.Notice.channel == EMAIL,
                m.Notice.state == QUEUED,
            )
            .order_by(m.Notice.id)
        ).all()
    total = len(jobs)
    if not jobs:
        if progress:
            progress(0, 0)
        return report
    sender = ws.settings.company_email
    local, _, sender_domain = sender.rpartition("@")
    secret = (
        password if isinstance(password, SecretStr) or password is None else SecretStr(password)
    )
    cfg = _SmtpConfig(host, port, timeout, starttls, username, secret, tls_context)
    params = _RunParams(
        sender=sender,
        envelope_local=local,
        envelope_domain=sender_domain,
        verp=verp,
        lease=lease,
        max_attempts=max_attempts,
        retry_backoff=retry_backoff,
        dkim=dkim_key,
    )
    log.info(
        "sending %d notices of incident %d via %s:%d (starttls=%s, auth=%s, workers=%d)",
        total,
        incident_id,
        host,
        port,
        starttls,
        "yes" if username else "no",
        workers,
    )
    first = _Relay(cfg)
    first.connect()  # fail fast, before any notice is claimed
    scheduler = _Scheduler(((nid, route or "-") for nid, route in jobs), rate_per_provider, burst)
    run = _SendRun(ws, incident_id, cfg, params, scheduler, report, total, progress)
    relays = [first] + [_Relay(cfg) for _ in range(min(workers, total) - 1)]
    run.alive = len(relays)
    threads = [
        threading.Thread(target=run.work, args=(relay,), name=f"canarino-send-{i}", daemon=True)
        for i, relay in enumerate(relays)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.journal.close()
    report.problems.update(run.problems)
    report.seconds = round(time.perf_counter() - started, 3)
    left = scheduler.outstanding
    for error in run.errors:
        if not isinstance(error, DeliveryError):
            raise error
    if run.errors and left:
        raise DeliveryError(
            f"{run.errors[0].args[0]} while sending; {left} notices stay queued",
            hint="run send again when the relay is back; check in-doubt notices first",
        )
    return report
