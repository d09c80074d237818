from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from canarino.inbound.webhooks import (
    MAX_BODY,
    MAX_URLS,
    PayloadError,
    PayloadTooLarge,
    ReplayGuard,
    SignatureError,
    find_urls,
    form_params,
    parse_generic,
    parse_twilio,
    read_webhook,
    sign_generic,
    text_evidence,
    twilio_signature,
    verify_generic,
    verify_twilio,
)

SECRET = b"s3cret-webhook-key"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
STAMP = str(int(NOW.timestamp()))


def _sms(**extra: object) -> bytes:
    body = {
        "from": "+44 20 7946 0000",
        "to": "+39 347 555 0001",
        "text": "Gentile cliente, il pacco 12345 è fermo: https://poste-verifica.example/p?id=9",
        "at": "2026-11-25T09:59:30Z",
    }
    body.update(extra)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


# --- generic signature ------------------------------------------------------------------


def test_generic_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = _sms()
    expected = hmac.new(SECRET, STAMP.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sign_generic(SECRET, STAMP, body) == f"sha256={expected}"
    assert verify_generic(SECRET, STAMP, f"sha256={expected}", body, now=NOW) == int(STAMP)


@pytest.mark.parametrize(
    ("stamp", "signature", "message"),
    [
        (None, "sha256=00", "unsigned"),
        (STAMP, None, "unsigned"),
        ("", "", "unsigned"),
        ("yesterday", "sha256=00", "Unix seconds"),
        (STAMP, "sha256=" + "0" * 64, "does not match"),
        (STAMP, "md5=abc", "does not match"),
        (STAMP, "sha256=ü", "does not match"),
    ],
)
def test_unsigned_or_forged_generic_requests_are_refused(
    stamp: str | None, signature: str | None, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_generic(SECRET, stamp, signature, _sms(), now=NOW)


def test_a_signature_made_with_another_key_or_body_is_refused() -> None:
    body = _sms()
    forged = sign_generic(b"guessed-key", STAMP, body)
    with pytest.raises(SignatureError, match="does not match"):
        verify_generic(SECRET, STAMP, forged, body, now=NOW)
    tampered = body.replace(b"0001", b"0002")
    with pytest.raises(SignatureError, match="does not match"):
        verify_generic(SECRET, STAMP, sign_generic(SECRET, STAMP, body), tampered, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_stale_or_future_timestamps_are_refused_even_when_signed(skew: int) -> None:
    stamp = str(int(NOW.timestamp()) + skew)
    body = _sms()
    with pytest.raises(SignatureError, match="stale"):
        verify_generic(SECRET, stamp, sign_generic(SECRET, stamp, body), body, now=NOW)


def test_timestamps_inside_the_window_are_accepted() -> None:
    for skew in (-300, 0, 299):
        stamp = str(int(NOW.timestamp()) + skew)
        body = _sms()
        verify_generic(SECRET, stamp, sign_generic(SECRET, stamp, body), body, now=NOW)


def test_replay_guard_refuses_a_replay_within_the_window_and_forgets_after() -> None:
    guard = ReplayGuard(window=300)
    key = sign_generic(SECRET, STAMP, _sms())
    assert not guard.seen(key, NOW)
    guard.remember(key, NOW)
    assert guard.seen(key, NOW + timedelta(seconds=299))
    assert not guard.seen(key, NOW + timedelta(seconds=301))
    guard.remember(key, NOW)
    guard.forget(key)  # a request that could not be stored may come again
    assert not guard.seen(key, NOW)


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(window=300, capacity=3)
    for i in range(10):
        guard.remember(str(i), NOW)
    assert [guard.seen(str(i), NOW) for i in range(10)] == [False] * 7 + [True] * 3


# --- Twilio signature -------------------------------------------------------------------

# Twilio's documented example: full URL + parameters sorted by name, HMAC-SHA1, base64.
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]


def test_twilio_signature_matches_the_documented_examples() -> None:
    assert twilio_signature(b"12345", TWILIO_URL, TWILIO_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    # The example of Twilio's PHP library documentation (other caller numbers).
    php = [(k, v.replace("+12349013030", "+14158675309")) for k, v in TWILIO_PARAMS]
    assert twilio_signature(b"12345", TWILIO_URL, php) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # Order of the posted parameters does not matter: they are sorted by name.
    shuffled = list(reversed(TWILIO_PARAMS))
    verify_twilio(b"12345", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", [TWILIO_URL], shuffled)


def test_twilio_signature_computed_independently_verifies() -> None:
    url = "https://canarino.example.it/hooks/sms"
    params = [("To", "+393475550001"), ("Body", "Ciao"), ("From", "+447946000000")]
    data = url + "BodyCiao" + "From+447946000000" + "To+393475550001"
    signature = base64.b64encode(hmac.new(b"tok", data.encode(), hashlib.sha1).digest()).decode()
    verify_twilio(b"tok", signature, [url], params)
    # Twilio may have called the URL with its default port, or the app sees one.
    verify_twilio(b"tok", signature, ["https://canarino.example.it:443/hooks/sms"], params)


@pytest.mark.parametrize(
    ("token", "signature", "params"),
    [
        (b"12345", None, TWILIO_PARAMS),
        (b"12345", "", TWILIO_PARAMS),
        (b"wrong", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", TWILIO_PARAMS),
        (b"12345", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", [*TWILIO_PARAMS, ("Body", "x")]),
        (b"12345", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", TWILIO_PARAMS[1:]),
        (b"12345", "not base64 at all ✗", TWILIO_PARAMS),
    ],
)
def test_forged_twilio_requests_are_refused(
    token: bytes, signature: str | None, params: list[tuple[str, str]]
) -> None:
    with pytest.raises(SignatureError):
        verify_twilio(token, signature, [TWILIO_URL], params)


def test_twilio_signature_binds_the_url() -> None:
    with pytest.raises(SignatureError, match="public_url"):
        verify_twilio(
            b"12345",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            ["https://mycompany.com/other.php?foo=1&bar=2"],
            TWILIO_PARAMS,
        )


# --- bodies -----------------------------------------------------------------------------


def test_generic_sms_becomes_a_sighting_with_evidence() -> None:
    inbound = parse_generic("sms", _sms(id="gw-81"))
    s = inbound.sighting
    assert (s.channel, s.contact, s.caller_id) == ("sms", "+393475550001", "+44 20 7946 0000")
    assert s.seen_at == datetime(2026, 11, 25, 9, 59, 30, tzinfo=UTC)
    ev = inbound.evidence
    assert ev["provider"] == "generic" and ev["caller"] == "+44 20 7946 0000"
    assert ev["urls"] == ["https://poste-verifica.example/p?id=9"]
    assert ev["url_domains"] == ["poste-verifica.example"]
    assert len(ev["simhash"]) == 16
    assert inbound.provider_id == "generic:gw-81" == inbound.sighting.message_id
    assert inbound.sighting.evidence == ev


def test_generic_voice_takes_an_optional_transcript() -> None:
    body = json.dumps(
        {"from": "+390212345678", "to": "+33 6 79 12 00 01", "at": "2026-11-25T10:00+01:00"}
    )
    inbound = parse_generic("voice", body.encode())
    assert inbound.sighting.channel == "voice" and inbound.sighting.contact == "+33679120001"
    assert "urls" not in inbound.evidence and "simhash" not in inbound.evidence
    with_text = json.dumps(
        {
            "to": "+33679120001",
            "at": "2026-11-25T10:00Z",
            "transcript": "Call www.fake-bank.example now",
        }
    )
    assert parse_generic("voice", with_text.encode()).evidence["url_domains"] == [
        "www.fake-bank.example"
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (_sms(to=None), "'to' is missing"),
        (_sms(at=None), "'at' is missing"),
        (_sms(to=12345), "'to' must be"),
        (_sms(to="mario.rossi@example.it"), "not an international phone number"),
        (_sms(to="347 555 0001"), "not an international phone number"),
        (_sms(at="tomorrow"), "not an ISO 8601"),
        (_sms(at="2026-11-25T10:00:00"), "no time zone"),
        (_sms(at=1764064800), "'at' must be"),
        (_sms(text=["a"]), "'text' must be a string"),
        (_sms(**{"from": 39}), "'from' must be a string"),
        (_sms(id={"a": 1}), "'id' must be"),
        (_sms(txt="typo"), "unknown key"),
        (_sms(transcript="voice only"), "unknown key"),
    ],
)
def test_malformed_generic_bodies_are_refused_without_quoting_numbers(
    body: bytes, message: str
) -> None:
    with pytest.raises(PayloadError, match=message) as info:
        parse_generic("sms", body)
    assert "347" not in str(info.value) and "mario" not in str(info.value)


def test_twilio_sms_and_voice_posts_are_read() -> None:
    body = urlencode(
        {
            "MessageSid": "SM0123456789abcdef",
            "From": "+447946000000",
            "To": "+393475550001",
            "Body": "Your account is locked, verify at bit.ly/x1 or https://secure-login.example",
            "NumMedia": "0",
        }
    ).encode()
    params = form_params(body)
    inbound = parse_twilio("sms", params, now=NOW)
    assert inbound.sighting.seen_at == NOW and inbound.provider_id == "twilio:SM0123456789abcdef"
    assert inbound.evidence["provider"] == "twilio"
    assert inbound.evidence["url_domains"] == ["bit.ly", "secure-login.example"]
    call = [("CallSid", "CA42"), ("From", "+390612345678"), ("To", "+14155550123")]
    voice = parse_twilio("voice", call, now=NOW)
    assert voice.sighting.channel == "voice" and voice.evidence["caller"] == "+390612345678"


@pytest.mark.parametrize(
    ("channel", "params", "message"),
    [
        ("sms", [("From", "+1"), ("To", "+393475550001")], "MessageSid"),
        ("voice", [("MessageSid", "SM1"), ("To", "+393475550001")], "CallSid"),
        ("sms", [("MessageSid", "SM1")], "'To' is missing"),
        ("sms", [("MessageSid", "SM1"), ("To", "client:alice")], "international"),
    ],
)
def test_malformed_twilio_posts_are_refused(
    channel: str, params: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_twilio(channel, params, now=NOW)


@pytest.mark.parametrize("body", [b"\xff\xfe", b"a=1&&&=", b"=x"])
def test_broken_form_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(PayloadError, match="form post"):
        form_params(body)


def test_oversized_bodies_are_refused_before_they_are_read() -> None:
    big = _sms(text="x" * MAX_BODY)
    with pytest.raises(PayloadTooLarge, match="larger than 65536 bytes"):
        parse_generic("sms", big)
    with pytest.raises(PayloadTooLarge):
        form_params(b"Body=" + b"y" * MAX_BODY)
    # Exactly at the limit is still read.
    parse_generic("sms", _sms(text="x" * (MAX_BODY - len(_sms(text="")))))


def test_an_unknown_channel_is_a_programmer_error() -> None:
    with pytest.raises(ValueError, match="channel"):
        parse_generic("fax", _sms())


# --- text -------------------------------------------------------------------------------


def test_one_template_hashes_close_and_another_far() -> None:
    template = "Gentile {}, il suo pacco {} è in giacenza presso il centro: paghi su https://{}/p"
    a = text_evidence(template.format("Mario Rossi", 1234, "a.example"))["simhash"]
    b = text_evidence(template.format("Anna Bianchi", 98765, "b.example"))["simhash"]
    c = text_evidence("Your bank account has been suspended, call us at once to restore it")
    assert (
        (int(a, 16) ^ int(b, 16)).bit_count()
        <= 12
        < (int(a, 16) ^ int(c["simhash"], 16)).bit_count()
    )
    assert "simhash" not in text_evidence("") and "simhash" not in text_evidence("  ...  ")


def test_url_lists_are_capped_and_deduplicated() -> None:
    text = " ".join(f"https://x{i}.example/a" for i in range(200)) + " https://x0.example/a"
    urls = find_urls(text)
    assert len(urls) == MAX_URLS and len(set(urls)) == MAX_URLS
    assert text_evidence("no links, just words")["simhash"]
    assert find_urls("see (https://a.example/p).") == ["https://a.example/p"]


def test_read_webhook_picks_the_form_by_its_signature_header() -> None:
    body = _sms()
    headers = {
        "X-Canarino-Timestamp": STAMP,
        "X-Canarino-Signature": sign_generic(SECRET, STAMP, body),
    }
    keys = {"urls": [TWILIO_URL], "webhook_secret": SECRET, "twilio_token": b"12345", "now": NOW}
    generic = read_webhook("sms", body, headers, **keys)
    assert generic.replay_key == "generic:" + headers["X-Canarino-Signature"]
    form = urlencode(TWILIO_PARAMS).encode()
    twilio = read_webhook(
        "voice", form, {"X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}, **keys
    )
    assert twilio.replay_key == "twilio:CA1234567890ABCDE" and twilio.sighting.seen_at == NOW
    with pytest.raises(SignatureError, match="not enabled"):
        read_webhook("sms", body, headers, **{**keys, "webhook_secret": None})
    with pytest.raises(SignatureError, match="not enabled"):
        read_webhook("voice", form, {"X-Twilio-Signature": "x"}, **{**keys, "twilio_token": None})
    with pytest.raises(SignatureError, match="unsigned"):
        read_webhook("sms", body, {}, **keys)
