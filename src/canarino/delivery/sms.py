"""Text messages (SMS): a short pointer to the notice, sent through an HTTP provider.

An SMS row is an outbox row like any other (channel ``sms``): one per (incident,
person), with its idempotency key, lease and states. It is claimed (``sending``,
committed) before the provider is called, and ``sent`` is committed right after the
provider's 2xx answer. A 429 or 5xx answer is retried with backoff (``Retry-After``
respected); any other 4xx fails the notice with the provider's reason. A request that
may have reached the provider (timeout or connection lost after it was written) leaves
the row in doubt, listed by :func:`~canarino.delivery.in_doubt_notices` and never resent
silently; the JSON provider gets the notice's idempotency key in ``Idempotency-Key``, so
a resend after a person's decision is recognisable.

Two providers: ``json`` posts ``{"to", "from", "text", "reference", "idempotency_key"}``
with a bearer token and the ``X-Canarino-Timestamp``/``X-Canarino-Signature`` pair of our
own webhooks (HMAC-SHA256 under ``sms_secret``); ``twilio`` posts a form to
``/2010-04-01/Accounts/<sid>/Messages.json`` (``To``, ``From`` or
``MessagingServiceSid``, ``Body``) with basic auth.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import phonenumbers
from pydantic import SecretStr
from sqlalchemy import Connection, insert, select, update

from .. import models as m
from ..customers import load_customers
from ..errors import DeliveryError, InvalidInput
from ..inbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_generic
from ..notices import idempotency_key, notice_reference, render_sms
from ..settings import Settings
from ..workspace import Workspace
from .outbox import (
    FAILED,
    MAX_ATTEMPTS,
    NOTICE_CONTEXT,
    QUEUED,
    SENDING,
    SENT,
    Progress,
    SendReport,
    _append_event,
    _event,
    _row,
    _Run,
    _scrub,
    _spec_context,
    opening_report,
    retry_delay,
)
from .routing import _Scheduler

log = logging.getLogger(__name__)

SMS = "sms"
NO_PHONE = "no phone number"
INVALID_PHONE = "invalid phone number"
LANDLINE = "phone number cannot receive text messages (landline)"
TOO_LONG = "text message longer than the segment limit"
SMS_POLICIES = ("never", "fallback", "always")
TWILIO_API = "https://api.twilio.com"
_DIGITS = re.compile(r"\+?\d[\d ()./-]{5,}\d")


def usable_phone(raw: str, country: str | None) -> tuple[str | None, str | None]:
    """``raw`` as an E.164 mobile number, or ``None`` and why it cannot take a text message.

    A number without ``+`` is read in the person's ``country``. A number the numbering
    plan calls fixed-line cannot receive SMS; one that may be either (the US) is kept.

    >>> usable_phone("347 555 0123", "IT"), usable_phone("", "IT")[1]
    (('+393475550123', None), 'no phone number')
    >>> usable_phone("+39 06 6982 0000", None)[1], usable_phone("12", "IT")[1]
    ('phone number cannot receive text messages (landline)', 'invalid phone number')
    """
    text = (raw or "").strip()
    if not text:
        return None, NO_PHONE
    try:
        number = phonenumbers.parse(text, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None, INVALID_PHONE
    if not phonenumbers.is_valid_number(number):
        return None, INVALID_PHONE
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE:
        return None, LANDLINE
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _scrub_reply(text: str) -> str:
    """A provider's reply on one line with phone numbers and addresses taken out."""
    return _scrub(_DIGITS.sub("<number>", text))[:200]


def _sms_row(
    ws: Workspace,
    incident_id: int,
    customer_id: int,
    spec: Mapping[str, Any],
    phone: str,
    now: datetime,
    note: str | None,
) -> dict[str, Any]:
    """The outbox row of one text message; ``failed`` when the text does not fit."""
    reference = notice_reference(idempotency_key(incident_id, customer_id, SMS))
    sms = render_sms(_spec_context(spec["ctx"], reference), forbidden=spec.get("forbidden", ()))
    payload = {
        "to": phone,
        "text": sms.text,
        "render": {**spec, "ctx": {**spec["ctx"], "reference": reference}},
    }
    extra: dict[str, Any] = {"route": SMS, "note": note}
    if not sms.fits:
        extra.update(
            state=FAILED,
            last_error=f"{TOO_LONG} ({sms.size.segments} {sms.size.encoding} segments)",
        )
    return _row(ws, incident_id, customer_id, SMS, sms.language, payload, now, **extra)


def _queue_sms(
    ws: Workspace, conn: Connection, notice_id: int, reason: str, now: datetime
) -> str | None:
    """Queue a text message after a failed e-mail when the settings want one.

    Returns ``"queued"``, ``"exists"``, or the reason none can be sent; ``None`` when
    text messages are not used as a fallback.
    """
    if ws.settings.sms_when == "never" or ws.settings.sms_provider is None:
        return None
    row = conn.execute(
        select(m.Notice.incident_id, m.Notice.customer_id, m.Notice.sealed).where(
            m.Notice.id == notice_id
        )
    ).one()
    incident_id, customer_id, sealed = row
    key = idempotency_key(incident_id, customer_id, SMS)
    if conn.execute(select(m.Notice.id).where(m.Notice.idempotency_key == key)).first():
        return "exists"
    spec = ws.vault.open(sealed, context=NOTICE_CONTEXT).get("render")
    country = conn.execute(
        select(m.Customer.country).where(m.Customer.id == customer_id)
    ).scalar_one_or_none()
    record = load_customers(ws, [customer_id]).get(customer_id, {})
    phone, why = usable_phone(record.get("phone", ""), country or record.get("country"))
    if spec is None or phone is None:
        why = why or "no stored notice to shorten"
        _append_event(conn, notice_id, _event("no_sms", now, reason=why))
        return why
    values = _sms_row(
        ws, incident_id, customer_id, spec, phone, now, f"instead of e-mail: {reason}"
    )
    conn.execute(insert(m.Notice), [values])
    _append_event(conn, notice_id, _event("sms_queued", now, reason=reason))
    return "queued"


# --- the provider -------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsProvider:
    """Where and how text messages are posted."""

    kind: Literal["json", "twilio"]
    url: str
    sender: str
    token: SecretStr | None = field(default=None, repr=False)
    secret: SecretStr | None = field(default=None, repr=False)
    account: str | None = None
    timeout: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 15.0) -> SmsProvider:
        """The provider the workspace settings describe; a clear error when incomplete."""
        kind = settings.sms_provider
        if kind is None:
            raise InvalidInput(
                "no SMS provider is configured",
                hint="set sms_provider (json or twilio), sms_url, sms_token and sms_from",
            )
        if not settings.sms_from:
            raise InvalidInput("sms_from is not set", hint="the sender number, ID or MG… SID")
        if kind == "json":
            if not settings.sms_url:
                raise InvalidInput("sms_url is not set", hint="the provider's HTTPS endpoint")
            url = settings.sms_url
        else:
            if not settings.sms_account or settings.sms_token is None:
                raise InvalidInput(
                    "a Twilio provider needs sms_account (account SID) and sms_token (auth token)"
                )
            base = (settings.sms_url or TWILIO_API).rstrip("/")
            url = f"{base}/2010-04-01/Accounts/{settings.sms_account}/Messages.json"
        if not url.startswith(("https://", "http://")):
            raise InvalidInput("sms_url must be an http(s) URL")
        return cls(
            kind=kind,
            url=url,
            sender=settings.sms_from,
            token=settings.sms_token,
            secret=settings.sms_secret,
            account=settings.sms_account,
            timeout=timeout,
        )


@dataclass(frozen=True)
class _Result:
    kind: Literal["sent", "refused", "retry", "uncertain", "not_sent"]
    code: int = 0
    reason: str = ""
    provider_id: str | None = None
    retry_after: float | None = None


def _request(provider: SmsProvider, to: str, text: str, key: str, reference: str) -> httpx.Request:
    if provider.kind == "twilio":
        sender = "MessagingServiceSid" if provider.sender.startswith("MG") else "From"
        form = {"To": to, sender: provider.sender, "Body": text}
        secret = provider.token.get_secret_value() if provider.token else ""
        auth = httpx.BasicAuth(provider.account or "", secret)
        request = httpx.Request("POST", provider.url, data=form)
        return next(auth.auth_flow(request))
    body = json.dumps(
        {
            "to": to,
            "from": provider.sender,
            "text": text,
            "reference": reference,
            "idempotency_key": key,
        },
        ensure_ascii=False,
    ).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if provider.token is not None:
        headers["Authorization"] = "Bearer " + provider.token.get_secret_value()
    if provider.secret is not None:
        stamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign_generic(
            provider.secret.get_secret_value().encode(), stamp, body
        )
    return httpx.Request("POST", provider.url, content=body, headers=headers)


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(float(value.strip()), 300.0)
    return None


def _post(
    client: httpx.Client,
    provider: SmsProvider,
    payload: Mapping[str, Any],
    key: str,
    reference: str,
) -> _Result:
    request = _request(provider, payload["to"], payload["text"], key, reference)
    try:
        reply = client.send(request)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # The request never left: the provider cannot have the message.
        return _Result("not_sent", 0, f"cannot reach the SMS provider ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return _Result(
            "uncertain",
            0,
            f"no answer from the SMS provider ({type(exc).__name__}): it may have the message",
        )
    code = reply.status_code
    if 200 <= code < 300:
        provider_id = None
        try:
            data = reply.json()
            provider_id = str(data.get("sid") or data.get("id") or "")[:64] or None
        except (ValueError, AttributeError):
            pass
        return _Result("sent", code, "", provider_id)
    detail = ""
    try:
        data = reply.json()
        detail = (
            str(data.get("message") or data.get("error") or "") if isinstance(data, dict) else ""
        )
    except ValueError:
        detail = reply.text[:200]
    reason = f"{code} {_scrub_reply(detail or reply.reason_phrase)}".strip()
    if code == 429 or code >= 500:
        return _Result(
            "retry", code, reason, retry_after=_retry_after(reply.headers.get("Retry-After"))
        )
    return _Result("refused", code, reason)


# --- sending ------------------------------------------------------------------------------


class _SmsRun(_Run):
    """One run sending an incident's text messages: claim, post, record, one at a time."""

    def __init__(
        self,
        ws: Workspace,
        provider: SmsProvider,
        scheduler: _Scheduler,
        report: SendReport,
        *,
        lease: timedelta,
        max_attempts: int,
        retry_backoff: float | None,
        total: int,
        progress: Progress | None,
    ) -> None:
        super().__init__(scheduler, report, total, progress)
        self.ws, self.provider = ws, provider
        self.lease, self.max_attempts, self.retry_backoff = lease, max_attempts, retry_backoff

    def work(self) -> None:
        try:
            with (
                httpx.Client(timeout=self.provider.timeout) as client,
                self.ws.db.engine.connect() as conn,
            ):
                while (job := self.scheduler.take()) is not None:
                    self._deliver(conn, client, *job)
        except BaseException as exc:  # handed to the main thread, which raises it
            with self.lock:
                self.errors.append(exc)
            self.scheduler.close()

    def _deliver(self, conn: Connection, client: httpx.Client, notice_id: int, route: str) -> None:
        now = datetime.now(UTC)
        with conn.begin():
            claimed = conn.execute(
                update(m.Notice)
                .where(m.Notice.id == notice_id, m.Notice.state == QUEUED)
                .values(
                    state=SENDING,
                    attempts=m.Notice.attempts + 1,
                    lease_until=now + self.lease,
                    lease_owner=self.owner,
                    updated_at=now,
                )
                .returning(
                    m.Notice.sealed, m.Notice.idempotency_key, m.Notice.reference, m.Notice.attempts
                )
            ).first()
        if claimed is None:  # another run took it or a person settled it meanwhile
            self._settle(None)
            return
        sealed, key, reference, attempts = claimed
        try:
            payload = self.ws.vault.open(sealed, context=NOTICE_CONTEXT)
            if not (isinstance(payload["to"], str) and isinstance(payload["text"], str)):
                raise TypeError("not a text message")
        except (ValueError, KeyError, TypeError) as exc:
            error = f"cannot read the stored text message ({type(exc).__name__})"
            self._update(conn, notice_id, state=FAILED, lease_until=None, last_error=error)
            self._settle("failed", error)
            return
        result = _post(client, self.provider, payload, key, reference or "")
        if result.kind == "sent":
            at = datetime.now(UTC)
            with conn.begin():
                conn.execute(
                    update(m.Notice)
                    .where(m.Notice.id == notice_id)
                    .values(
                        state=SENT, sent_at=at, updated_at=at, lease_until=None, last_error=None
                    )
                )
                if result.provider_id:
                    _append_event(
                        conn, notice_id, _event("sms_accepted", at, id=result.provider_id)
                    )
            self._settle("sent")
        elif result.kind == "uncertain":
            problem = "no answer from the SMS provider: delivery uncertain"
            self._in_doubt(conn, notice_id, result.reason, problem)
        elif result.kind == "not_sent":
            self._requeue(conn, notice_id, result.reason, attempts=attempts - 1)
            self._settle("retry_later", result.reason)
        elif result.kind == "retry" and attempts < self.max_attempts:
            self._requeue(conn, notice_id, result.reason)
            status = f"provider answered {result.code}"
            if self.retry_backoff is None:
                self._settle("retry_later", f"{status}: left for a later run")
                return
            delay = max(retry_delay(self.retry_backoff, attempts), result.retry_after or 0.0)
            self._count("retried", f"{status}: retried")
            self.scheduler.retry(notice_id, route, delay, slow_down=result.code == 429)
        else:
            error = result.reason
            if result.kind == "retry":
                error = f"gave up after {attempts} attempts; last: {error}"[:300]
            self._update(
                conn, notice_id, state=FAILED, lease_until=None, lease_owner=None, last_error=error
            )
            log.warning("text message %d failed: %s", notice_id, error)
            self._settle("failed", f"refused by the SMS provider ({result.code})")


def send_sms(
    ws: Workspace,
    incident_id: int,
    *,
    provider: SmsProvider | None = None,
    progress: Progress | None = None,
    workers: int = 2,
    rate: float | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    retry_backoff: float | None = 2.0,
    lease_seconds: float | None = None,
) -> SendReport:
    """Send an incident's queued text messages through the HTTP provider.

    ``provider`` defaults to the one the settings describe. ``rate`` caps messages per
    second (providers limit each sender number). Each message is claimed and committed
    before it is posted and marked ``sent`` right after the provider accepts it; a 429
    or 5xx is retried after ``retry_backoff`` seconds, doubling, up to ``max_attempts``;
    other 4xx answers fail the message with the reason. Raises ``DeliveryError`` when
    the provider cannot be reached at all; unsent messages stay queued.
    """
    started = time.perf_counter()
    if workers < 1:
        raise InvalidInput("workers must be at least 1")
    provider = provider or SmsProvider.from_settings(ws.settings)
    now = datetime.now(UTC)
    lease = timedelta(
        seconds=lease_seconds if lease_seconds is not None else 2 * provider.timeout + 30
    )
    with ws.db.session() as s:
        report = opening_report(s, incident_id, SMS, now)
        jobs = s.scalars(
            select(m.Notice.id)
            .where(
                m.Notice.incident_id == incident_id,
                m.Notice.channel == SMS,
                m.Notice.state == QUEUED,
            )
            .order_by(m.Notice.id)
        ).all()
    if not jobs:
        if progress:
            progress(0, 0)
        return report
    scheduler = _Scheduler(((nid, SMS) for nid in jobs), rate, burst=max(1.0, rate or 1.0))
    run = _SmsRun(
        ws,
        provider,
        scheduler,
        report,
        lease=lease,
        max_attempts=max_attempts,
        retry_backoff=retry_backoff,
        total=len(jobs),
        progress=progress,
    )
    threads = [
        threading.Thread(target=run.work, name=f"canarino-sms-{i}", daemon=True)
        for i in range(min(workers, len(jobs)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.problems.update(run.problems)
    report.seconds = round(time.perf_counter() - started, 3)
    for error in run.errors:
        raise error
    unreachable = report.problems.get("cannot reach the SMS provider (ConnectError)", 0)
    if unreachable and unreachable == len(jobs):
        raise DeliveryError(
            f"cannot reach the SMS provider at {httpx.URL(provider.url).host}; "
            f"{len(jobs)} text messages stay queued",
            hint="check sms_url and the network, then run again",
        )
    return report
