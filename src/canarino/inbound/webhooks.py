"""SMS and voice webhooks: verify who signed a request, then read it into a sighting.

Two forms are accepted. The generic one is JSON signed with HMAC-SHA256 under the
workspace's ``webhook_secret``::

    X-Canarino-Timestamp: 1764063000
    X-Canarino-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>

    {"from": "+44 20 7946 0000", "to": "+39 347 555 0001", "text": "…", "at": "2026-11-25T10:00:00Z"}

Twilio's form posts are signed with ``X-Twilio-Signature``: the base64 HMAC-SHA1, under
the account's auth token, of the full URL Twilio called followed by every POST parameter
sorted by name, each written as name then value with no separator.

Everything here is pure: no database, no network. Errors never quote the numbers or the
text of a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import InvalidInput, PermissionDenied
from ..normalize import IdentifierError, normalize_phone
from ..sightings import SightingIn
from .evidence import fold, simhash

MAX_BODY = 64 * 1024
REPLAY_WINDOW = 300
MAX_URLS = 50
MAX_TEXT = 10_000
TIMESTAMP_HEADER = "X-Canarino-Timestamp"
SIGNATURE_HEADER = "X-Canarino-Signature"
TWILIO_HEADER = "X-Twilio-Signature"
CHANNELS = ("sms", "voice")
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'()\[\]{}]+"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}/[^\s<>\"'()\[\]{}]*",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")
_TRAILING = ".,;:!?'\""


class SignatureError(PermissionDenied):
    """A webhook request that is unsigned, mis-signed, stale or replayed."""


class PayloadError(InvalidInput):
    """A webhook body that cannot be read as a message."""


class PayloadTooLarge(InvalidInput):
    """A webhook body over :data:`MAX_BODY` bytes."""


@dataclass(frozen=True)
class Inbound:
    """One message or call read from a webhook, ready for :func:`sightings.record_sightings`."""

    sighting: SightingIn
    evidence: dict[str, Any] = field(default_factory=dict)
    provider_id: str | None = None
    text: str = ""
    #: What identifies this very request, to refuse a replay of it.
    replay_key: str = ""


# --- signatures ----------------------------------------------------------------------------


def sign_generic(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Canarino-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds).

    >>> sign_generic(b"k", 1, b"{}")[:7]
    'sha256='
    """
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_generic(
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: datetime | None = None,
    window: int = REPLAY_WINDOW,
) -> int:
    """Check a generic webhook's signature and freshness; return its timestamp.

    Raises :class:`SignatureError` when a header is missing, the timestamp is further
    than ``window`` seconds from ``now``, or the signature does not match.
    """
    if not timestamp or not signature:
        raise SignatureError(
            "unsigned request",
            hint=f"send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}: sha256=<hex>",
        )
    if not re.fullmatch(r"\d{1,12}", timestamp.strip()):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix seconds")
    sent = int(timestamp.strip())
    current = (now or datetime.now(UTC)).timestamp()
    if abs(current - sent) > window:
        raise SignatureError(
            "stale request", hint=f"the timestamp must be within {window} s of the server clock"
        )
    expected = sign_generic(secret, timestamp.strip(), body)
    if not hmac.compare_digest(
        expected.encode(), signature.strip().lower().encode("ascii", "replace")
    ):
        raise SignatureError("signature does not match", hint="sign '<timestamp>.<raw body>'")
    return sent


def twilio_signature(token: bytes, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature`` for a POST of ``params`` to ``url``.

    Parameters are sorted by name (repeated names by value) and appended as name+value.

    >>> twilio_signature(b"12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
    ...     [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
    ...      ("From", "+12349013030"), ("To", "+18005551212")])
    '0/KCTR6DLpKmkAf8muzZqo1nDgQ='
    """
    data = url + "".join(name + value for name, value in sorted(params))
    mac = hmac.new(token, data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    bare = urlunsplit(parts._replace(netloc=prefix + host))
    out = [url, bare]
    if parts.port is None and default is not None:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return list(dict.fromkeys(out))


def verify_twilio(
    token: bytes, signature: str | None, urls: Sequence[str], params: Sequence[tuple[str, str]]
) -> None:
    """Check ``X-Twilio-Signature`` against any of the URLs the request may have been sent to.

    Twilio signs the URL exactly as configured; behind a proxy the app sees another one,
    so the public URL and the request's own URL are both tried, with and without port.
    """
    if not signature:
        raise SignatureError("unsigned request", hint=f"Twilio sends {TWILIO_HEADER}")
    given = signature.strip().encode("ascii", "replace")
    ok = False
    for url in urls:
        for variant in _port_variants(url):
            expected = twilio_signature(token, variant, params).encode()
            ok |= hmac.compare_digest(expected, given)
    if not ok:
        raise SignatureError(
            "signature does not match",
            hint="check twilio_auth_token and that public_url is the address Twilio calls",
        )


class ReplayGuard:
    """Remembers recently accepted signatures and message ids, to refuse replays.

    Bounded (oldest entries are forgotten first) and kept for ``window`` seconds, the
    span in which a generic signature is still fresh.
    """

    def __init__(self, window: int = REPLAY_WINDOW, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at <= self.window and len(self._seen) <= self.capacity:
                break
            del self._seen[key]

    def seen(self, key: str, now: datetime | None = None) -> bool:
        """Whether ``key`` was accepted within the window."""
        t = (now or datetime.now(UTC)).timestamp()
        self._expire(t)
        return key in self._seen

    def forget(self, key: str) -> None:
        """Drop ``key``, e.g. when the request it came with could not be stored."""
        self._seen.pop(key, None)

    def remember(self, key: str, now: datetime | None = None) -> None:
        """Record ``key`` as accepted (after the message was stored)."""
        t = (now or datetime.now(UTC)).timestamp()
        self._seen[key] = t
        self._seen.move_to_end(key)
        self._expire(t)


# --- message text -------------------------------------------------------------------------


def find_urls(text: str) -> list[str]:
    """The links a message carries, in order, without duplicates, at most :data:`MAX_URLS`."""
    out: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)[:2000]
        if url and url not in out:
            out.append(url)
        if len(out) == MAX_URLS:
            break
    return out


def url_domain(url: str) -> str | None:
    """The host name of ``url`` (scheme optional), lower-case, or ``None``."""
    target = url if "://" in url else "http://" + url
    try:
        host = urlsplit(target).hostname
    except ValueError:
        return None
    if not host or "." not in host:
        return None
    return host.strip(".").lower()


def text_evidence(text: str) -> dict[str, Any]:
    """The evidence keys a message's text gives: ``urls``, ``url_domains``, ``simhash``.

    SMS links often come without a scheme (``bit.ly/x``), so they are found here rather
    than with the mail door's stricter pattern.
    """
    urls = find_urls(text)
    evidence: dict[str, Any] = {}
    if urls:
        evidence["urls"] = urls
        evidence["url_domains"] = sorted({d for u in urls if (d := url_domain(u))})
    folded = fold(text)
    if _WORD.search(folded):
        # The SimHash the mail door uses too, so one template compares across doors.
        evidence["simhash"] = simhash(folded)
    return evidence


# --- bodies ---------------------------------------------------------------------------------


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")


def _check_size(body: bytes) -> None:
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(
            f"the body is larger than {MAX_BODY} bytes", hint="send one message per request"
        )


def _canary_number(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"'{name}' must be the number that was contacted, as a string")
    try:
        return normalize_phone(value, None)
    except IdentifierError:
        raise PayloadError(
            f"'{name}' is not an international phone number", hint="use E.164, e.g. +39…"
        ) from None


def _when(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PayloadError("'at' must be an ISO 8601 time with a zone, e.g. 2026-11-25T10:00Z")
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError("'at' is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise PayloadError("'at' has no time zone", hint="add Z or an offset such as +01:00")
    return when


def _evidence(provider: str, caller: str | None, text: str) -> dict[str, Any]:
    evidence: dict[str, Any] = {"provider": provider}
    if caller:
        evidence["caller"] = caller[:64]
    evidence.update(text_evidence(text))
    return evidence


def parse_generic(channel: str, body: bytes) -> Inbound:
    """Read a generic JSON webhook: ``{"from","to","text","at"}`` (SMS) or ``transcript`` (voice)."""
    _check_channel(channel)
    _check_size(body)
    allowed = {"from", "to", "at", "id", "text" if channel == "sms" else "transcript"}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    extra = set(data) - allowed
    if extra:
        raise PayloadError(
            f"unknown key(s) {', '.join(sorted(map(str, extra)))[:200]}",
            hint=f"{channel} webhooks take {', '.join(sorted(allowed))}",
        )
    for key in ("to", "at"):
        if key not in data:
            raise PayloadError(f"'{key}' is missing")
    contact = _canary_number(data["to"], "to")
    seen_at = _when(data["at"])
    caller = data.get("from")
    if caller is not None and not isinstance(caller, str):
        raise PayloadError("'from' must be a string")
    text_key = "text" if channel == "sms" else "transcript"
    text = data.get(text_key) or ""
    if not isinstance(text, str):
        raise PayloadError(f"'{text_key}' must be a string")
    ident = data.get("id")
    if ident is not None and not isinstance(ident, str | int):
        raise PayloadError("'id' must be a string or a number")
    text = text[:MAX_TEXT]
    provider_id = f"generic:{str(ident)[:100]}" if ident is not None else None
    evidence = _evidence("generic", caller, text)
    sighting = SightingIn(
        channel,
        contact,
        seen_at,
        caller_id=caller or None,
        evidence=evidence,
        message_id=provider_id,
    )
    return Inbound(sighting, evidence, provider_id, text)


def form_params(body: bytes) -> list[tuple[str, str]]:
    """The name/value pairs of an ``application/x-www-form-urlencoded`` body."""
    _check_size(body)
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("the body is not a form post") from None
    if any(not name for name, _ in pairs):
        raise PayloadError("the body is not a form post: a parameter has no name")
    return pairs


def parse_twilio(
    channel: str, params: Sequence[tuple[str, str]], *, now: datetime | None = None
) -> Inbound:
    """Read a Twilio form post (From, To, Body, MessageSid / CallSid) received at ``now``."""
    _check_channel(channel)
    form: Mapping[str, str] = dict(params)
    sid_key = "MessageSid" if channel == "sms" else "CallSid"
    sid = form.get(sid_key) or form.get("SmsSid" if channel == "sms" else "CallSid")
    if not sid:
        raise PayloadError(f"'{sid_key}' is missing; is this a Twilio {channel} webhook?")
    if "To" not in form:
        raise PayloadError("'To' is missing")
    contact = _canary_number(form["To"], "To")
    caller = form.get("From") or form.get("Caller") or None
    text = (form.get("Body") if channel == "sms" else form.get("TranscriptionText")) or ""
    text = text[:MAX_TEXT]
    # Twilio retries a webhook with the same sid: that id, not the time, makes it unique.
    provider_id = f"twilio:{sid[:100]}"
    evidence = _evidence("twilio", caller, text)
    sighting = SightingIn(
        channel,
        contact,
        now or datetime.now(UTC),
        caller_id=caller,
        evidence=evidence,
        message_id=provider_id,
    )
    return Inbound(sighting, evidence, provider_id, text)


def read_webhook(
    channel: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    urls: Sequence[str],
    webhook_secret: bytes | None,
    twilio_token: bytes | None,
    now: datetime | None = None,
) -> Inbound:
    """Verify and read one webhook request, in whichever form it came.

    ``headers`` is case-insensitive (as web frameworks give them) or uses the names as
    spelled here; ``urls`` are the addresses Twilio may have signed. A key that is not
    configured refuses its form.
    """
    now = now or datetime.now(UTC)
    if TWILIO_HEADER in headers:
        if twilio_token is None:
            raise SignatureError("Twilio webhooks are not enabled on this server")
        params = form_params(body)
        verify_twilio(twilio_token, headers.get(TWILIO_HEADER), urls, params)
        inbound = parse_twilio(channel, params, now=now)
        return replace(inbound, replay_key=str(inbound.provider_id))
    if webhook_secret is None:
        raise SignatureError("signed webhooks are not enabled on this server")
    signature = headers.get(SIGNATURE_HEADER)
    verify_generic(webhook_secret, headers.get(TIMESTAMP_HEADER), signature, body, now=now)
    return replace(parse_generic(channel, body), replay_key=f"generic:{signature}")
