from __future__ import annotations

import base64
import hashlib
from email.message import EmailMessage
from functools import cache

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from faker import Faker

from canarino.inbound.evidence import (
    MAX_RECEIVED,
    MAX_SUBJECT,
    MAX_URLS,
    CanaryDetails,
    canary_uses,
    fold,
    hamming,
    parse_mail,
    recipients_in_headers,
    simhash,
)


@cache
def _key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _dns(records: dict[bytes, bytes]):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def _message(body: str = "Hello", *, html: str | None = None, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Support <support@phish.example>")
    msg["To"] = headers.pop("To", "dana.rossi@canary-mail.it")
    msg["Subject"] = headers.pop("Subject", "Your ticket")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def _signed(raw: bytes, domain: str = "mailer.vendor.example") -> bytes:
    private, _ = _key()
    sig = dkim.sign(raw, b"s1", domain.encode(), private, include_headers=[b"from", b"subject"])
    return sig + raw


def test_sender_domains_hops_ip_and_subject_are_read() -> None:
    raw = _message(
        Subject="=?utf-8?q?Rimborso_=C3=A8_pronto?=",
        Return_Path="<bounce@bulk.example>",
        Received="from mx.bad.example (mx.bad.example [203.0.113.7]) by us; Tue, 1 Dec 2026",
    )
    ev = parse_mail(raw, provider="imap").evidence
    assert ev["from_domain"] == "phish.example"
    assert ev["return_path_domain"] == "bulk.example"
    assert ev["sender_ip"] == "203.0.113.7"
    assert ev["received"][0].startswith("from mx.bad.example")
    assert ev["subject"] == "Rimborso è pronto"
    assert ev["provider"] == "imap"
    assert (ev["dkim_result"], ev["dkim_domain"], ev["spf_result"]) == ("none", None, "none")


def test_the_smtp_session_wins_over_what_headers_claim() -> None:
    raw = _message(Received="from x ([198.51.100.1]) by y", Return_Path="<a@forged.example>")
    ev = parse_mail(raw, peer_ip="192.0.2.44", mail_from="bounce@real.example").evidence
    assert ev["sender_ip"] == "192.0.2.44"
    assert ev["return_path_domain"] == "real.example"


def test_a_valid_dkim_signature_passes_with_its_domain() -> None:
    _, record = _key()
    raw = _signed(_message("Dear customer"))
    dns = _dns({b"s1._domainkey.mailer.vendor.example.": record})
    ev = parse_mail(raw, dnsfunc=dns).evidence
    assert (ev["dkim_result"], ev["dkim_domain"]) == ("pass", "mailer.vendor.example")


@pytest.mark.parametrize(
    ("tamper", "records"),
    [
        pytest.param(lambda r: r.replace(b"Dear customer", b"Dear victim"), "good", id="altered"),
        pytest.param(lambda r: r, {}, id="no-key-in-dns"),
        pytest.param(lambda r: r, {b"s1._domainkey.mailer.vendor.example.": b"v=DKIM1; p=!!"}),
        pytest.param(lambda r: r.replace(b"d=mailer", b"d=;;mailer"), "good", id="bad-tag"),
    ],
)
def test_a_bad_dkim_signature_fails_and_never_crashes(tamper, records) -> None:  # type: ignore[no-untyped-def]
    _, record = _key()
    if records == "good":
        records = {b"s1._domainkey.mailer.vendor.example.": record}
    raw = tamper(_signed(_message("Dear customer")))
    ev = parse_mail(raw, dnsfunc=_dns(records)).evidence
    assert ev["dkim_result"] == "fail"


def test_a_dns_error_during_dkim_is_a_failure_not_a_crash() -> None:
    def broken(name: bytes, timeout: int = 5) -> bytes:
        raise OSError("resolver unreachable")

    ev = parse_mail(_signed(_message()), dnsfunc=broken).evidence
    assert ev["dkim_result"] == "fail" and ev["dkim_domain"] == "mailer.vendor.example"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Received_SPF": "Pass (mx: domain of x designates 1.2.3.4)"}, "pass"),
        ({"Received_SPF": "softfail (no)"}, "softfail"),
        ({"Authentication_Results": "mx.example; dkim=none; spf=fail smtp.mailfrom=x"}, "fail"),
        ({"Received_SPF": "banana"}, "none"),
        ({}, "none"),
    ],
)
def test_spf_comes_from_the_receivers_headers(headers: dict[str, str], expected: str) -> None:
    assert parse_mail(_message(**headers)).evidence["spf_result"] == expected


def test_urls_from_text_and_html_with_their_domains() -> None:
    raw = _message(
        "Pay at https://pay.phish.example/x?id=1, or www.Other.example/login.",
        html='<p>Click <a href="https://CDN.phish.example/a">here</a></p>'
        '<script>var u="https://hidden.example/"</script><img src="http://img.example/p.png">',
    )
    ev = parse_mail(raw).evidence
    assert "https://pay.phish.example/x?id=1" in ev["urls"]
    assert "http://www.Other.example/login" in ev["urls"]
    assert "https://CDN.phish.example/a" in ev["urls"]
    assert ev["url_domains"] == [
        "cdn.phish.example",
        "img.example",
        "pay.phish.example",
        "www.other.example",
    ]


def test_attachments_are_hashed_not_kept() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b.example", "c@canary-mail.it", "invoice"
    msg.set_content("see attached")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="f.pdf")
    ev = parse_mail(msg.as_bytes()).evidence
    (att,) = ev["attachments"]
    assert att["name"] == "f.pdf" and att["size"] == 13
    assert att["sha256"] == hashlib.sha256(b"%PDF-1.4 fake").hexdigest()
    assert "see attached" not in str(ev)


def test_caps_hold_on_huge_headers_and_link_farms() -> None:
    hops = "".join(f"Received: from h{i} ([192.0.2.{i % 250}]) by x\r\n" for i in range(200))
    links = " ".join(f"https://l{i}.example/" for i in range(500))
    raw = (
        hops.encode()
        + b"Subject: "
        + b"S" * 5000
        + b"\r\nFrom: x@y.example\r\n\r\n"
        + links.encode()
    )
    ev = parse_mail(raw).evidence
    assert len(ev["received"]) == MAX_RECEIVED
    assert len(ev["subject"]) == MAX_SUBJECT
    assert len(ev["urls"]) == MAX_URLS
    assert len(ev["url_domains"]) == 500


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xff\xfe garbage \r\n\r\n\x80\x81", id="binary"),
        pytest.param(
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain;'
            b' charset="no-such-charset"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notb64'
            b"\r\n--b\r\nContent-Type: text/html\r\n\r\n<a href='http://[bad'>x</a><<<>",
            id="bad-charset-base64-html-no-end",
        ),
        pytest.param(
            b"Subject: =?utf-8?b?broken?=\r\nFrom: <<<@@>>>\r\nReturn-Path: \r\n"
            b"DKIM-Signature: v=1; garbage\r\nContent-Type: multipart/alternative\r\n\r\nbody",
            id="bad-headers-no-boundary",
        ),
        pytest.param(
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b'--b\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' * 3000,
            id="deep-nesting",
        ),
    ],
)
def test_broken_mime_gives_partial_evidence_never_an_exception(raw: bytes) -> None:
    parsed = parse_mail(raw)
    assert parsed.evidence["dkim_result"] in ("none", "fail")
    assert len(parsed.evidence["simhash"]) == 16


def test_simhash_is_close_for_one_template_and_far_for_another() -> None:
    fake = Faker("it_IT")
    fake.seed_instance(3)
    template = (
        "Gentile {name}, la sua pratica {n} risulta sospesa. Per evitare il blocco del conto "
        "confermi i suoi dati entro 24 ore al link https://{d}/verifica. Il servizio clienti"
    )
    a = simhash(fold(template.format(name=fake.name(), n=12345, d="a.example")))
    b = simhash(fold(template.format(name=fake.name(), n=99881, d="b.example")))
    other = simhash(fold(fake.paragraph(nb_sentences=6)))
    assert hamming(a, b) <= 12 < hamming(a, other)
    assert simhash("") == "0" * 16


def test_canary_uses_finds_the_details_a_message_quotes() -> None:
    details = CanaryDetails.from_fields(
        {
            "first_name": "Danièla",
            "last_name": "Rossetti",
            "full_name": "Danièla Rossetti",
            "ticket_id": "TK-448812",
            "address": "Via Garibaldi 12",
            "phone": "+39 347 555 0123",
            "email": "d.rossetti@canary-mail.it",
        }
    )
    text = fold(
        "Gentile DANIELA, riguardo al ticket tk-448812 e alla consegna in via  Garibaldi, 12: "
        "la richiameremo al 347 5550123 (d.rossetti@canary-mail.it)."
    )
    assert canary_uses(text, details) == ["name", "reference", "address", "phone", "email"]
    assert canary_uses(fold("Dear customer, your account is locked."), details) == []
    # Parts of words and other numbers do not count.
    assert canary_uses(fold("rossettino tk-4488120 347 555 0124"), details) == []


def test_recipients_in_headers_lists_delivery_addresses_once() -> None:
    raw = _message(
        To="A <a@canary-mail.it>, b@canary-mail.it", Delivered_To="A@canary-mail.it", Cc="bad"
    )
    assert recipients_in_headers(raw) == ["A@canary-mail.it", "b@canary-mail.it"]
