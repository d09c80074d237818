"""The public "Was I affected?" check: verify, then tell.

Anyone may type an e-mail address or a phone number into the public page, and the page
always gives the same neutral answer in the same time. The contact is looked up for every
request; when it belongs to a customer, a job for the :class:`PublicMailer` is queued, and
when it does not, an empty job is queued, so the request path does the same work either
way. The worker writes only to the e-mail address the company holds for that customer,
with a signed link that expires and works once (:func:`issue_link`, :func:`consume_link`);
the link shows that person's situation in each open incident (:func:`situation`).

The pieces every public form shares live here too: signed double-submit form tokens
(:func:`issue_form_token`, :func:`check_form_token`) and a per-address
:class:`RateLimiter`. Nothing here logs or returns personal data, and nothing says whether
a contact is a customer or a canary: canaries are never written to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import queue
import secrets
import smtplib
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from cryptography.exceptions import InvalidTag
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from . import models as m
from .customers import load_customers
from .errors import InvalidInput
from .normalize import IdentifierError, normalize_email, normalize_phone
from .notices import catalogs, choose_language, ordered_fields
from .workspace import Workspace

log = logging.getLogger("canarino.public")

LANGUAGES = ("it", "en")
MAX_CONTACT = 254  # the longest e-mail address SMTP allows (RFC 5321 §4.5.3.1.3)
LINK_TTL = timedelta(hours=24)
FORM_TOKEN_TTL = timedelta(hours=2)
LINK_CONTEXT = "selfcheck link"
CLOSED = "closed"

_STEPS = (
    ("step_phone", {"phone"}),
    ("step_iban", {"iban"}),
    ("step_identity", {"tax_code", "birth_date"}),
    ("step_password", {"password"}),
)


class LinkError(InvalidInput):
    """A self-check link that is malformed, expired or already used."""


# --- contacts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """A normalised contact: its kind, keyed pseudonym, and the customers holding it."""

    kind: str
    digest: bytes
    customer_ids: tuple[int, ...]


def clean_text(value: str, limit: int) -> str:
    """``value`` without control characters and with runs of spaces folded, cut to ``limit``."""
    kept = "".join(
        " " if unicodedata.category(c).startswith("C") else c for c in value[: limit * 4]
    )
    return " ".join(kept.split())[:limit]


def normalize_contact(value: str, region: str | None) -> tuple[str, str]:
    """Return ``("email"|"phone", normalised value)``; errors never quote the value."""
    if len(value) > MAX_CONTACT:
        raise InvalidInput(
            f"that is longer than {MAX_CONTACT} characters",
            hint="type one e-mail address or one phone number",
        )
    if any(unicodedata.category(c) == "Cc" for c in value.strip()):
        raise InvalidInput(
            "that contains control characters", hint="type the address or number again"
        )
    text = value.strip()
    if not text:
        raise InvalidInput("nothing was typed", hint="type an e-mail address or a phone number")
    try:
        if "@" in text:
            return "email", normalize_email(text)
        return "phone", normalize_phone(text, region)
    except IdentifierError:
        kind = "an e-mail address" if "@" in text else "a phone number"
        raise InvalidInput(
            f"that is not {kind} we can read",
            hint="check it, e.g. name@example.it or +39 347 123 4567",
        ) from None


def lookup_contact(ws: Workspace, value: str) -> Lookup:
    """Normalise ``value`` and find the customers (never canaries) who hold it."""
    kind, normal = normalize_contact(value, ws.settings.establishment)
    digest = ws.vault.pseudonyms.digest(kind, normal)
    with ws.db.session() as s:
        ids = s.scalars(
            select(m.Pseudonym.customer_id)
            .where(
                m.Pseudonym.digest == digest,
                m.Pseudonym.kind == kind,
                m.Pseudonym.customer_id.is_not(None),
            )
            .order_by(m.Pseudonym.customer_id)
        ).all()
    return Lookup(kind, digest, tuple(i for i in ids if i is not None))


def choose_page_language(accept_language: str | None, asked: str | None = None) -> str:
    """``asked`` when it is a page language, else the best match of ``Accept-Language``."""
    if asked in LANGUAGES:
        return str(asked)
    best, best_q = "en", 0.0
    for part in (accept_language or "")[:500].split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


# --- keys, form tokens and rate limits -----------------------------------------------------


def _key(ws: Workspace, purpose: str) -> bytes:
    # An HMAC under the pseudonym key is a PRF: a fresh key per purpose, no extra secret.
    return ws.vault.pseudonyms.digest("key", f"canarino {purpose} v1")


def issue_form_token(ws: Workspace, now: datetime | None = None) -> str:
    """A signed token for a public form: set as a cookie and as a hidden field."""
    issued = int((now or datetime.now(UTC)).timestamp())
    body = f"{issued}.{secrets.token_hex(16)}"
    mac = hmac.new(_key(ws, "public forms"), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def check_form_token(
    ws: Workspace, cookie: str | None, sent: str | None, now: datetime | None = None
) -> bool:
    """Whether a form came from our page: cookie and field equal, signed, not too old."""
    if not cookie or not sent or len(sent) > 200 or not hmac.compare_digest(cookie, sent):
        return False
    issued, _, rest = sent.partition(".")
    nonce, _, mac = rest.partition(".")
    if not issued.isdigit() or not nonce or not mac:
        return False
    body = f"{issued}.{nonce}"
    expected = hmac.new(_key(ws, "public forms"), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        return False
    age = (now or datetime.now(UTC)).timestamp() - int(issued)
    return -60 <= age <= FORM_TOKEN_TTL.total_seconds()


class RateLimiter:
    """At most ``limit`` hits per key in a sliding ``window`` of seconds, in memory.

    Keys are client addresses; only their count and times are kept, and keys whose hits
    have all expired are dropped, so memory stays bounded by the recent callers.
    """

    def __init__(self, limit: int, window: float = 3600.0, max_keys: int = 100_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Count one hit; return ``None`` if allowed, else the seconds until the next one is."""
        at = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._prune(at)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= at - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window - at)
            hits.append(at)
            return None

    def _prune(self, at: float) -> None:
        stale = [k for k, v in self._hits.items() if not v or v[-1] <= at - self.window]
        for k in stale:
            del self._hits[k]
        if len(self._hits) >= self.max_keys:
            # Still full of live callers: forget the oldest rather than grow without bound.
            oldest = sorted(self._hits, key=lambda k: self._hits[k][-1])[: self.max_keys // 10]
            for k in oldest:
                del self._hits[k]


# --- the link and what it shows ------------------------------------------------------------


def issue_link(
    ws: Workspace,
    customer_ids: Sequence[int],
    language: str,
    *,
    now: datetime | None = None,
    ttl: timedelta = LINK_TTL,
) -> str:
    """A sealed token naming ``customer_ids``, valid for ``ttl``; opaque to its holder."""
    if not customer_ids:
        raise ValueError("a self-check link needs at least one customer")
    expires = (now or datetime.now(UTC)) + ttl
    payload = {
        "c": sorted(set(customer_ids)),
        "l": language if language in LANGUAGES else "en",
        "e": int(expires.timestamp()),
    }
    sealed = ws.vault.seal(payload, context=LINK_CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


@dataclass(frozen=True)
class Link:
    """What a valid link names."""

    customer_ids: tuple[int, ...]
    language: str
    expires_at: datetime
    target: str


_EXPIRED = "this link has expired or was already used"
_ASK_AGAIN = "ask again on the self-check page; a new link will be sent to you"


def read_link(ws: Workspace, token: str, *, now: datetime | None = None) -> Link:
    """Check a link without using it up; raise :class:`LinkError` if it cannot be used."""
    if not token or len(token) > 1000:
        raise LinkError("this link is not valid", hint=_ASK_AGAIN)
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = ws.vault.open(sealed, context=LINK_CONTEXT)
        ids = tuple(int(i) for i in data["c"])
        expires = datetime.fromtimestamp(int(data["e"]), UTC)
        language = str(data["l"])
    except (binascii.Error, InvalidTag, ValueError, KeyError, TypeError):
        raise LinkError("this link is not valid", hint=_ASK_AGAIN) from None
    if expires <= (now or datetime.now(UTC)):
        raise LinkError(_EXPIRED, hint=_ASK_AGAIN)
    target = "selfcheck-link:" + hashlib.sha256(token.encode()).hexdigest()[:40]
    with ws.db.session() as s:
        if _opened(s, target):
            raise LinkError(_EXPIRED, hint=_ASK_AGAIN)
    return Link(ids, language if language in LANGUAGES else "en", expires, target)


def _opened(s: Session, target: str) -> int:
    found = s.scalar(
        select(func.count()).select_from(m.AuditEvent).where(m.AuditEvent.target == target)
    )
    return found or 0


_consume_lock = threading.Lock()


def consume_link(ws: Workspace, token: str, *, now: datetime | None = None) -> Link:
    """Use a link up: record the reading in the audit log, or refuse a second use."""
    link = read_link(ws, token, now=now)
    # The audit entry is also the single-use marker. It is written first and the entries
    # counted after: the write takes SQLite's one writer lock, so a second process counts
    # two; PostgreSQL gets the same order from a lock on the link; the thread lock covers
    # the threads of this process.
    with _consume_lock, ws.db.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(
                bytes.fromhex(link.target.rpartition(":")[2][:16]), "big", signed=True
            )
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        s.add(
            m.AuditEvent(
                actor="public self-check",
                action="view",
                target=link.target,
                detail={"customers": list(link.customer_ids)},
            )
        )
        s.flush()
        if _opened(s, link.target) > 1:
            raise LinkError(_EXPIRED, hint=_ASK_AGAIN)
    return link


@dataclass(frozen=True)
class IncidentStatus:
    """One open incident as one person sees it."""

    incident_id: int
    aware_on: date
    occurred_on: date | None
    affected: bool
    fields: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    reference: str | None = None


@dataclass(frozen=True)
class Situation:
    """A person's situation: each open incident, affected or not, and whom to ask."""

    language: str
    company_name: str
    company_email: str
    dpo_contact: str
    incidents: tuple[IncidentStatus, ...] = ()

    @property
    def affected(self) -> bool:
        """Whether any open incident affects the person."""
        return any(i.affected for i in self.incidents)


def situation(ws: Workspace, customer_ids: Sequence[int], language: str) -> Situation:
    """The situation of the customers ``customer_ids`` (one person, one contact point)."""
    lang, _ = choose_language(language)
    catalog = catalogs()[lang]
    company = ws.settings.company_name
    with ws.db.session() as s:
        open_incidents = s.execute(
            select(m.Incident.id, m.Incident.aware_at, m.Incident.occurred_at)
            .where(m.Incident.status != CLOSED)
            .order_by(m.Incident.aware_at.desc())
        ).all()
        exposed: dict[int, set[str]] = {}
        for incident_id, fields in s.execute(
            select(m.IncidentPerson.incident_id, m.IncidentPerson.fields).where(
                m.IncidentPerson.customer_id.in_(list(customer_ids))
            )
        ):
            exposed.setdefault(incident_id, set()).update(f for f in fields.split(",") if f)
        references = dict(
            s.execute(
                select(m.Notice.incident_id, m.Notice.reference).where(
                    m.Notice.customer_id.in_(list(customer_ids)), m.Notice.reference.is_not(None)
                )
            ).all()
        )
    out = []
    for incident_id, aware_at, occurred_at in open_incidents:
        names = ordered_fields([f for f in exposed.get(incident_id, ()) if f in catalog.fields])
        steps = ["step_wary", "step_suspicious"] + [k for k, f in _STEPS if f & set(names)]
        out.append(
            IncidentStatus(
                incident_id=incident_id,
                aware_on=aware_at.date(),
                occurred_on=occurred_at.date() if occurred_at else None,
                affected=incident_id in exposed,
                fields=tuple(names),
                labels=tuple(catalog.fields[f] for f in names),
                steps=tuple(catalog.texts[k].format(company=company) for k in steps)
                if incident_id in exposed
                else (),
                reference=references.get(incident_id),
            )
        )
    return Situation(lang, company, ws.settings.company_email, ws.settings.dpo_contact, tuple(out))


# --- mail: one worker, off the request path ------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """A message to one person, in their language."""

    subject: str
    text: str


Composer = Callable[[Workspace, Sequence[int], str, datetime], Mail | None]


@dataclass(frozen=True)
class MailJob:
    """Write to the held addresses of ``customer_ids`` (none: nothing to do)."""

    customer_ids: tuple[int, ...]
    language: str
    compose: Composer | None = None


_CHECK_MAIL = {
    "en": Mail(
        "{company}: the check you asked for",
        "Hello,\n\n"
        "someone, probably you, asked on the {company} website whether this e-mail address "
        "is affected by a data incident.\n\n"
        "Open this link to see your situation. It works once and only until {expires} (UTC):\n"
        "{url}\n\n"
        "If you did not ask, you can ignore this message: nobody else can see your "
        "situation, and this message went only to you.\n\n"
        "We will never ask you for passwords, card numbers or codes by e-mail or phone.\n"
        "Questions: {email}. Data Protection Officer: {dpo}.\n\n{company}\n",
    ),
    "it": Mail(
        "{company}: la verifica che ha chiesto",
        "Gentile cliente,\n\n"
        "qualcuno, probabilmente Lei, ha chiesto sul sito di {company} se questo indirizzo "
        "e-mail è coinvolto in un incidente sui dati.\n\n"
        "Apra questo link per vedere la Sua situazione. Funziona una sola volta e solo fino "
        "al {expires} (UTC):\n{url}\n\n"
        "Se non è stato Lei, può ignorare questo messaggio: nessun altro può vedere la Sua "
        "situazione, e questo messaggio è arrivato solo a Lei.\n\n"
        "Non Le chiederemo mai password, numeri di carta o codici per e-mail o telefono.\n"
        "Domande: {email}. Responsabile della protezione dei dati: {dpo}.\n\n{company}\n",
    ),
}


def compose_check_mail(
    ws: Workspace, customer_ids: Sequence[int], language: str, now: datetime
) -> Mail:
    """The message with a fresh self-check link for ``customer_ids``."""
    lang = language if language in LANGUAGES else "en"
    token = issue_link(ws, customer_ids, lang, now=now)
    template = _CHECK_MAIL[lang]
    values = {
        "company": ws.settings.company_name,
        "email": ws.settings.company_email,
        "dpo": ws.settings.dpo_contact,
        "url": f"{ws.settings.public_url.rstrip('/')}/public/check/open/{token}",
        "expires": (now + LINK_TTL).strftime("%Y-%m-%d %H:%M"),
    }
    return Mail(template.subject.format(**values), template.text.format(**values))


def check_job(lookup: Lookup, language: str) -> MailJob:
    """The job a self-check request queues: a link for a customer, else nothing."""
    return MailJob(lookup.customer_ids, language, compose_check_mail)


def _relay(ws: Workspace) -> tuple[str, int] | None:
    relay = ws.settings.smtp_relay
    if not relay:
        return None
    host, _, port = relay.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


@dataclass
class MailerStats:
    """What the worker has done since it started; counts only."""

    jobs: int = 0
    sent: int = 0
    throttled: int = 0
    failed: int = 0
    no_address: int = 0


@dataclass
class PublicMailer:
    """A background thread that writes the public pages' messages through ``smtp_relay``.

    Requests only :meth:`submit` a job; the worker opens the customers' sealed records,
    writes to each distinct e-mail address held for them (at most ``per_address`` messages
    per address per hour, so nobody can flood a customer's mailbox) and forgets the job.
    Each job waits a random 0.5–3 s before it runs, so its work never lands on the
    response of the request that queued it. A job lost in a restart costs a visitor one
    more request; the page says to ask again.
    """

    ws: Workspace
    per_address: int = 3
    max_queue: int = 10_000
    delay: tuple[float, float] = (0.5, 3.0)
    stats: MailerStats = field(default_factory=MailerStats)
    _queue: queue.Queue[tuple[float, MailJob] | None] = field(init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _limits: RateLimiter = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._queue = queue.Queue(self.max_queue)
        self._limits = RateLimiter(self.per_address, 3600.0)

    def start(self) -> None:
        """Start the worker thread (again after :meth:`stop`)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="canarino-public-mailer", daemon=True
                )
                self._thread.start()

    def submit(self, job: MailJob) -> None:
        """Queue a job; the same cost whether it has work in it or not.

        The job waits a random ``delay`` first: work done right after a request would slow
        that request's own response, and an attacker could time the difference.
        """
        self.start()
        low, high = self.delay
        wait = low + (high - low) * secrets.randbelow(1_000_001) / 1_000_000
        try:
            self._queue.put_nowait((time.monotonic() + wait, job))
        except queue.Full:
            log.warning("public mailer queue full: a request was dropped")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job is done (tests, shutdown); whether it finished."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs and end the thread."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                not_before, job = item
                pause = not_before - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.stats.jobs += 1
                if job.customer_ids and job.compose is not None:
                    self._deliver(job)
            except Exception as exc:  # the worker must outlive any one job
                self.stats.failed += 1
                log.warning("public mailer: a job failed (%s)", type(exc).__name__)
            finally:
                self._queue.task_done()

    def _deliver(self, job: MailJob) -> None:
        assert job.compose is not None
        records = load_customers(self.ws, list(job.customer_ids))
        addresses: dict[str, list[int]] = {}
        for cid in job.customer_ids:
            email = records.get(cid, {}).get("email", "").strip()
            if email:
                addresses.setdefault(email, []).append(cid)
        if not addresses:
            self.stats.no_address += 1
            return
        relay = _relay(self.ws)
        if relay is None:
            self.stats.failed += 1
            log.warning("public mailer: smtp_relay is not set; a self-service answer was not sent")
            return
        now = datetime.now(UTC)
        for address, ids in addresses.items():
            key = self.ws.vault.pseudonyms.digest("email", address).hex()
            if self._limits.hit(key) is not None:
                self.stats.throttled += 1
                continue
            mail = job.compose(self.ws, ids, job.language, now)
            if mail is None:
                continue
            try:
                send_mail(relay, self.ws.settings.company_email, address, mail)
                self.stats.sent += 1
            except (OSError, smtplib.SMTPException) as exc:
                self.stats.failed += 1
                log.warning("public mailer: the relay refused a message (%s)", type(exc).__name__)


def send_mail(relay: tuple[str, int], sender: str, to: str, mail: Mail) -> None:
    """Hand one plain-text message to the relay."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(mail.text)
    with smtplib.SMTP(relay[0], relay[1], timeout=30) as smtp:
        smtp.send_message(msg)
