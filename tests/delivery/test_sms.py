from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr

from canarino.customers import load_customers
from canarino.delivery import (
    SmsProvider,
    in_doubt_notices,
    notice_states,
    prepare_notices,
    resolve_in_doubt,
    send_notices,
    send_sms,
    usable_phone,
)
from canarino.delivery.outbox import NOTICE_CONTEXT
from canarino.errors import DeliveryError, InvalidInput
from canarino.inbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_generic
from canarino.notices import sms_size

from .support import Case, RecordingSink, address_of, fast, free_port, notices_of

SECRET = "sms-signing-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Provider:
    """A real HTTP server on loopback playing an SMS provider, scriptable per request."""

    script: list[str] = field(default_factory=list)
    by_key: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def next_action(self, key: str) -> str:
        with self.lock:
            if self.by_key.get(key):
                return self.by_key[key].pop(0)
            return self.script.pop(0) if self.script else "ok"


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            action = provider.next_action(self.headers.get("Idempotency-Key", ""))
            with provider.lock:
                provider.received.append(Received(self.path, dict(self.headers.items()), body))
            if action == "drop":  # read the request, then hang up without a word
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if action == "slow":
                time.sleep(1.0)
            if action == "ok" or action == "slow":
                key = self.headers.get("Idempotency-Key") or body.decode()
                with provider.lock:
                    provider.delivered[key] += 1
                self._reply(201, {"sid": f"SM{len(provider.received):06d}", "status": "queued"})
            elif action == "429":
                self._reply(429, {"message": "too many requests"}, {"Retry-After": "0"})
            elif action == "503":
                self._reply(503, {"message": "try later"})
            elif action == "400":
                self._reply(400, {"message": "The 'To' number +39 347 555 0123 is not valid"})

        def _reply(
            self, code: int, data: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            raw = json.dumps(data).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the "slow" case)

    return Handler


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _json(provider: Provider, timeout: float = 5.0) -> SmsProvider:
    return SmsProvider(
        kind="json",
        url=provider.url + "/messages",
        sender="Esempio",
        token=SecretStr("bearer-token"),
        secret=SecretStr(SECRET),
        timeout=timeout,
    )


def _configure(case: Case, provider: Provider, when: str = "fallback") -> None:
    case.ws.settings = case.ws.settings.model_copy(
        update={
            "sms_provider": "json",
            "sms_url": provider.url + "/messages",
            "sms_from": "Esempio",
            "sms_token": SecretStr("bearer-token"),
            "sms_secret": SecretStr(SECRET),
            "sms_when": when,
        }
    )


def _payload(case: Case, row: Any) -> dict[str, Any]:
    return case.ws.vault.open(row.sealed, context=NOTICE_CONTEXT)


# --- preparing ---------------------------------------------------------------------------


def test_usable_phone_keeps_mobiles_in_e164_and_names_what_is_wrong() -> None:
    assert usable_phone("+39 347 555 0123", None) == ("+393475550123", None)
    assert usable_phone("0347 555 0123", "IT")[1] == "invalid phone number"
    assert usable_phone("(617) 253-1000", "US") == ("+16172531000", None)
    assert usable_phone("+1 617 253 1000", None) == ("+16172531000", None)
    assert usable_phone("+39 06 6982 0000", "IT") == (
        None,
        "phone number cannot receive text messages (landline)",
    )
    assert usable_phone("call me", "IT") == (None, "invalid phone number")
    assert usable_phone("   ", "IT") == (None, "no phone number")
    assert usable_phone("+39347555012345678901", None)[1] == "invalid phone number"


def test_fallback_texts_everyone_no_email_reaches_next_to_the_letter(case: Case) -> None:
    report = prepare_notices(case.ws, case.incident_id, sms="fallback")
    texts = notices_of(case.ws, case.incident_id, "sms")
    no_email = case.people - case.emails
    assert report.sms == len(texts) == no_email
    assert report.letters == case.letters
    # The three people with neither e-mail nor postal address are reachable by text now.
    assert report.unreachable == 0 and not notices_of(case.ws, case.incident_id, "none")
    assert {r.state for r in texts} == {"queued"}
    emails = {r.customer_id for r in notices_of(case.ws, case.incident_id, "email")}
    assert emails.isdisjoint(r.customer_id for r in texts)
    for row in texts:
        payload = _payload(case, row)
        assert payload["to"].startswith("+") and row.reference in payload["text"]
        assert "/public/verify" in payload["text"]
        assert sms_size(payload["text"]).segments <= 3
        assert row.message_id and row.idempotency_key and row.route == "sms"
        assert payload["to"] not in (row.note or "")
    assert f"{no_email:,} text messages prepared" in report.summary()


def test_always_texts_every_person_with_a_mobile_and_never_by_default(case: Case) -> None:
    plain = prepare_notices(case.ws, case.incident_id)
    assert plain.sms == 0 and not notices_of(case.ws, case.incident_id, "sms")
    again = prepare_notices(case.ws, case.incident_id, sms="always")
    assert again.sms == 0  # prepared people are not prepared again


def test_always_adds_a_text_to_every_e_mail(case: Case) -> None:
    report = prepare_notices(case.ws, case.incident_id, sms="always")
    assert report.sms == case.people and report.prepared == case.emails
    by_person = Counter(r.customer_id for r in notices_of(case.ws, case.incident_id, "sms"))
    assert len(by_person) == case.people and set(by_person.values()) == {1}


def test_people_without_a_usable_mobile_are_counted_by_reason(case: Case) -> None:
    from sqlalchemy import select

    from canarino import models as m
    from canarino.customers import CUSTOMER_CONTEXT

    with case.ws.db.session() as s:
        rows = s.execute(select(m.Customer.id, m.Customer.sealed).order_by(m.Customer.id)).all()
        for number, (cid, sealed) in enumerate(rows[:3]):
            record = case.ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
            record["phone"] = ["", "12345", "+39 06 6982 0000"][number]
            new = case.ws.vault.seal(record, context=CUSTOMER_CONTEXT)
            s.execute(m.Customer.__table__.update().where(m.Customer.id == cid).values(sealed=new))
    report = prepare_notices(case.ws, case.incident_id, sms="always")
    assert report.no_sms == {
        "no phone number": 1,
        "invalid phone number": 1,
        "phone number cannot receive text messages (landline)": 1,
    }
    assert report.sms == case.people - 3
    failed = [r for r in notices_of(case.ws, case.incident_id, "sms") if r.state == "failed"]
    assert sorted(r.last_error or "" for r in failed) == [
        "invalid phone number",
        "phone number cannot receive text messages (landline)",
    ]
    lines = report.summary()
    assert "1 people get no text message: invalid phone number" in lines
    assert not any("12345" in line or "6982" in line for line in lines)


def test_unknown_sms_policy_is_refused(case: Case) -> None:
    with pytest.raises(InvalidInput, match="never, fallback or always"):
        prepare_notices(case.ws, case.incident_id, sms="sometimes")


# --- sending -----------------------------------------------------------------------------


def test_json_provider_gets_signed_requests_and_each_text_once(
    case: Case, provider: Provider
) -> None:
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    texts = notices_of(case.ws, case.incident_id, "sms")
    ticks: list[tuple[int, int]] = []
    report = send_sms(
        case.ws,
        case.incident_id,
        provider=_json(provider),
        progress=lambda d, t: ticks.append((d, t)),
    )
    assert report.sent == len(texts) and report.failed == report.in_doubt == 0
    assert ticks[-1] == (len(texts), len(texts))
    assert len(provider.received) == len(texts) == len(provider.delivered)
    by_key = {r.idempotency_key: r for r in texts}
    for got in provider.received:
        assert got.path == "/messages"
        assert got.headers["Authorization"] == "Bearer bearer-token"
        verify_generic(
            SECRET.encode(), got.headers[TIMESTAMP_HEADER], got.headers[SIGNATURE_HEADER], got.body
        )
        body = json.loads(got.body)
        row = by_key[got.headers["Idempotency-Key"]]
        assert body["idempotency_key"] == row.idempotency_key
        assert body["reference"] == row.reference and body["from"] == "Esempio"
        assert body["to"] == _payload(case, row)["to"] and row.reference in body["text"]
    rows = notices_of(case.ws, case.incident_id, "sms")
    assert {r.state for r in rows} == {"sent"} and all(r.attempts == 1 for r in rows)
    assert all((r.events or [])[-1]["event"] == "sms_accepted" for r in rows)
    again = send_sms(case.ws, case.incident_id, provider=_json(provider))
    assert again.sent == 0 and again.already_sent == len(texts)
    assert len(provider.received) == len(texts)


def test_twilio_provider_gets_a_messages_api_form_with_basic_auth(
    case: Case, provider: Provider
) -> None:
    case.ws.settings = case.ws.settings.model_copy(
        update={
            "sms_provider": "twilio",
            "sms_url": provider.url,
            "sms_account": "AC0123",
            "sms_token": SecretStr("auth-token"),
            "sms_from": "MG99",
        }
    )
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    report = send_sms(case.ws, case.incident_id)
    assert report.sent == case.people - case.emails
    got = provider.received[0]
    assert got.path == "/2010-04-01/Accounts/AC0123/Messages.json"
    assert (
        got.headers["Authorization"] == "Basic " + base64.b64encode(b"AC0123:auth-token").decode()
    )
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(got.body.decode())
    assert form["MessagingServiceSid"] == ["MG99"] and "From" not in form
    assert form["To"][0].startswith("+") and "/public/verify" in form["Body"][0]


def test_incomplete_provider_settings_are_refused_with_a_hint(case: Case) -> None:
    with pytest.raises(InvalidInput, match="no SMS provider"):
        send_sms(case.ws, case.incident_id)
    case.ws.settings = case.ws.settings.model_copy(
        update={"sms_provider": "twilio", "sms_from": "+15005550006"}
    )
    with pytest.raises(InvalidInput, match="sms_account"):
        SmsProvider.from_settings(case.ws.settings)


def test_429_and_5xx_are_retried_with_backoff(case: Case, provider: Provider) -> None:
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    n = case.people - case.emails
    provider.script = ["429", "503"]
    report = send_sms(case.ws, case.incident_id, provider=_json(provider), retry_backoff=0.05)
    assert report.sent == n and report.retried == 2 and report.failed == 0
    assert report.problems == {
        "provider answered 429: retried": 1,
        "provider answered 503: retried": 1,
    }
    assert len(provider.received) == n + 2 and set(provider.delivered.values()) == {1}
    assert sorted(r.attempts for r in notices_of(case.ws, case.incident_id, "sms"))[-1] >= 2


def test_5xx_until_max_attempts_fails_with_the_last_reason(case: Case, provider: Provider) -> None:
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    provider.by_key[notices_of(case.ws, case.incident_id, "sms")[0].idempotency_key] = ["503"] * 3
    report = send_sms(
        case.ws,
        case.incident_id,
        provider=_json(provider),
        workers=1,
        max_attempts=3,
        retry_backoff=0.01,
    )
    assert report.failed == 1 and report.sent == case.people - case.emails - 1
    failed = next(r for r in notices_of(case.ws, case.incident_id, "sms") if r.state == "failed")
    assert failed.attempts == 3
    assert (failed.last_error or "").startswith("gave up after 3 attempts; last: 503 try later")


def test_4xx_fails_the_text_with_the_reason_without_the_number(
    case: Case, provider: Provider
) -> None:
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    provider.script = ["400"]
    report = send_sms(case.ws, case.incident_id, provider=_json(provider), workers=1)
    assert report.failed == 1 and report.problems == {"refused by the SMS provider (400)": 1}
    failed = next(r for r in notices_of(case.ws, case.incident_id, "sms") if r.state == "failed")
    assert failed.attempts == 1
    assert failed.last_error == "400 The 'To' number <number> is not valid"
    again = send_sms(case.ws, case.incident_id, provider=_json(provider))
    assert again.sent == 0  # a refused text is not retried


@pytest.mark.parametrize("action", ["drop", "slow"])
def test_no_answer_leaves_the_text_in_doubt_never_resent_without_a_decision(
    case: Case, provider: Provider, action: str
) -> None:
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    n = case.people - case.emails
    provider.script = [action]
    report = send_sms(
        case.ws,
        case.incident_id,
        provider=_json(provider, timeout=0.4),
        workers=1,
        lease_seconds=0,
    )
    assert report.in_doubt == 1 and report.sent == n - 1
    assert report.problems == {"no answer from the SMS provider: delivery uncertain": 1}
    doubt = in_doubt_notices(case.ws, case.incident_id)
    assert len(doubt) == 1 and doubt[0].channel == "sms"
    assert "may have the message" in (doubt[0].last_error or "")
    resumed = send_sms(case.ws, case.incident_id, provider=_json(provider))
    assert resumed.sent == 0 and resumed.in_doubt == 1  # listed, not resent
    assert len(provider.received) == n
    assert resolve_in_doubt(case.ws, case.incident_id, "resend") == 1
    final = send_sms(case.ws, case.incident_id, provider=_json(provider))
    assert final.sent == 1 and notice_states(case.ws, case.incident_id)["sent"] >= n
    # The resend carries the same idempotency key; nothing else reached the provider twice.
    keys = Counter(r.headers["Idempotency-Key"] for r in provider.received)
    assert len(keys) == n and sum(keys.values()) == n + 1
    assert [k for k, c in keys.items() if c > 1] == [
        next(
            r.idempotency_key
            for r in notices_of(case.ws, case.incident_id, "sms")
            if r.id == doubt[0].notice_id
        )
    ]


def test_unreachable_provider_raises_and_every_text_stays_queued(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id, sms="fallback")
    dead = SmsProvider(kind="json", url=f"http://127.0.0.1:{free_port()}/x", sender="E")
    with pytest.raises(DeliveryError, match="cannot reach the SMS provider"):
        send_sms(case.ws, case.incident_id, provider=dead)
    rows = notices_of(case.ws, case.incident_id, "sms")
    assert {r.state for r in rows} == {"queued"} and all(r.attempts == 0 for r in rows)


def test_refused_e_mail_queues_a_text_next_to_the_letter(
    case: Case, smtp: RecordingSink, provider: Provider
) -> None:
    _configure(case, provider)
    prepare_notices(case.ws, case.incident_id)
    before = len(notices_of(case.ws, case.incident_id, "sms"))
    victim = notices_of(case.ws, case.incident_id, "email")[0]
    address = address_of(case.ws, victim)
    smtp.reject[address.lower()] = f"550 5.1.1 <{address}>: no such user"
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, **fast())
    assert report.letters_queued == 1 and report.sms_queued == 1
    assert report.problems == {"refused 550 5.1.1; letter queued; text queued": 1}
    texts = notices_of(case.ws, case.incident_id, "sms")
    assert len(texts) == before + 1
    new = next(r for r in texts if r.customer_id == victim.customer_id)
    assert new.state == "queued" and "550 5.1.1" in (new.note or "")
    phone = load_customers(case.ws, [victim.customer_id])[victim.customer_id]["phone"]
    assert _payload(case, new)["to"] == usable_phone(phone, None)[0]
    assert send_sms(case.ws, case.incident_id).sent == len(texts)
