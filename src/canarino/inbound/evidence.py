"""Evidence in a raw e-mail: who sent it, through where, with which links and files.

Turns one RFC 5322 message into the shared ``evidence`` dict of a sighting (see
``models.Sighting``): sender domains and IP, the Received chain, DKIM (verified with
dkimpy) and SPF results, URLs and their domains, attachments' SHA-256, a SimHash of the
normalised text for template similarity, and which of the canary's own details the text
quotes. No storage here; the only I/O is DKIM's key look-up through ``dnsfunc`` (DNS by
default, a function in tests). Broken MIME, bad charsets and failed look-ups give a
partial result, never an exception.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import dkim

DnsFunc = Callable[..., bytes | None]

MAX_RECEIVED = 20
MAX_HOP_CHARS = 500
MAX_SUBJECT = 300
MAX_URLS = 50
MAX_URL_CHARS = 2_000
MAX_PARTS = 200
MAX_TEXT_CHARS = 2_000_000
MAX_DKIM_SIGNATURES = 5
DKIM_TIMEOUT = 5
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy")
REFERENCE_FIELDS = ("customer_id", "ticket_id", "order_id", "account_number", "contract_id")

_URL = re.compile(r"""(?i)\b(?:https?://|www\.)[^\s<>"'`{}|\\^\[\]]+""")
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]{3,45})\]")
_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)")
_AUTH_SPF = re.compile(r"\bspf\s*=\s*([a-z]+)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().\-/]{5,}\d")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class CanaryDetails:
    """What a canary's synthetic record says, to find which of it a message quotes."""

    names: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    address: str | None = None
    phone: str | None = None
    email: str | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> CanaryDetails:
        """Build the details from a canary record's canonical fields."""
        names = [fields.get(k, "") for k in ("full_name", "first_name", "last_name")]
        references = [fields.get(k, "") for k in REFERENCE_FIELDS]
        return cls(
            names=tuple(n for n in names if len(n.strip()) >= 3),
            references=tuple(r for r in references if len(r.strip()) >= 4),
            address=fields.get("address") or None,
            phone=fields.get("phone") or None,
            email=fields.get("email") or None,
        )


@dataclass
class ParsedMail:
    """A message's evidence and its normalised text (the text is never stored)."""

    evidence: dict[str, Any]
    text: str


def fold(text: str) -> str:
    """Lower-case ``text``, drop accents and collapse white space, for matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(plain.split())


class _HtmlText(HTMLParser):
    """Collects the visible text and the link targets of an HTML part."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.links: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note links; skip scripts and styles."""
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("href", "src", "action") and value:
                self.links.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        """Leave a script or style."""
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        """Keep visible text."""
        if not self._skip:
            self.chunks.append(data)


def _header(msg: Message, name: str) -> str:
    """A header decoded to text (RFC 2047), or ``""``; malformed encodings stay as sent."""
    try:
        raw = msg.get(name)
    except Exception:
        return ""
    if raw is None:
        return ""
    try:
        text = str(make_header(decode_header(str(raw))))
    except Exception:
        text = str(raw)
    return _CONTROL.sub(" ", text).strip()


def _all_headers(msg: Message, name: str) -> list[str]:
    try:
        return [str(v) for v in msg.get_all(name) or []]
    except Exception:
        return []


def _domain(address: str) -> str | None:
    _, addr = parseaddr(address)
    if "@" not in addr:
        return None
    domain = addr.rsplit("@", 1)[1].strip().strip(".>").lower()
    return domain or None


def _valid_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _received(msg: Message) -> list[str]:
    hops = _all_headers(msg, "Received")[:MAX_RECEIVED]
    return [" ".join(_CONTROL.sub(" ", h).split())[:MAX_HOP_CHARS] for h in hops]


def _ip_of_hops(hops: list[str]) -> str | None:
    """The client IP the topmost hop recorded (the hop our side of the chain added)."""
    for hop in hops:
        for candidate in _BRACKETED_IP.findall(hop):
            ip = _valid_ip(candidate)
            if ip is not None:
                return ip
    return None


def _dkim(raw: bytes, msg: Message, dnsfunc: DnsFunc | None) -> tuple[str, str | None]:
    """DKIM result (``pass``/``fail``/``none``) and the signing domain (d=)."""
    signatures = _all_headers(msg, "DKIM-Signature")
    if not signatures:
        return "none", None
    domains = []
    for sig in signatures:
        found = _DKIM_D.search(" ".join(sig.split()))
        domains.append(found.group(1).lower().strip(".") if found else None)
    for idx in range(min(len(signatures), MAX_DKIM_SIGNATURES)):
        try:
            checker = dkim.DKIM(raw, timeout=DKIM_TIMEOUT)
            ok = (
                checker.verify(idx=idx, dnsfunc=dnsfunc)
                if dnsfunc is not None
                else checker.verify(idx=idx)
            )
        except Exception:
            # A DNS failure, a malformed signature or key: not verified, never a crash.
            ok = False
        if ok:
            return "pass", domains[idx]
    return "fail", next((d for d in domains if d), None)


def _spf(msg: Message) -> str:
    for value in _all_headers(msg, "Received-SPF")[:1]:
        word = value.strip().split(maxsplit=1)[0].lower() if value.strip() else ""
        if word in SPF_RESULTS:
            return word
    for value in _all_headers(msg, "Authentication-Results")[:1]:
        found = _AUTH_SPF.search(value)
        if found and found.group(1).lower() in SPF_RESULTS:
            return found.group(1).lower()
    return "none"


def _charset(part: Message) -> str:
    try:
        name = part.get_content_charset() or "utf-8"
        "".encode(name)
    except (LookupError, ValueError, TypeError):
        return "utf-8"
    return name


def _parts(msg: Message) -> Iterator[Message]:
    """Leaf parts, at most ``MAX_PARTS``; a structure too deep to walk ends the walk."""
    count = 0
    try:
        for part in msg.walk():
            if part.is_multipart():
                continue
            count += 1
            if count > MAX_PARTS:
                return
            yield part
    except RecursionError:
        return


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
        maintype = part.get_content_maintype()
        filename = part.get_filename()
    except Exception:
        return False
    return disposition == "attachment" or bool(filename) or maintype not in ("text", "message")


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
        name = str(make_header(decode_header(name))) if name else ""
    except Exception:
        name = ""
    return _CONTROL.sub("", name).strip()[:200]


def _clean_urls(candidates: list[str]) -> tuple[list[str], list[str]]:
    urls: list[str] = []
    domains: set[str] = set()
    for candidate in candidates:
        url = candidate.strip().rstrip(".,;:!?)'\"")[:MAX_URL_CHARS]
        if url.lower().startswith("www."):
            url = "http://" + url
        if not url.lower().startswith(("http://", "https://")):
            continue
        try:
            host = urlsplit(url).hostname
        except ValueError:
            continue
        if not host or url in urls:
            continue
        if len(urls) < MAX_URLS:
            urls.append(url)
        domains.add(host.lower().strip("."))
    return urls, sorted(domains)


def parse_mail(
    raw: bytes,
    *,
    peer_ip: str | None = None,
    mail_from: str | None = None,
    provider: str = "smtp",
    dnsfunc: DnsFunc | None = None,
) -> ParsedMail:
    """Read the evidence in ``raw``.

    ``peer_ip`` and ``mail_from`` are what the SMTP session saw (the connecting client and
    the envelope sender); without them the topmost Received hop and Return-Path are used.
    ``dnsfunc(name, timeout=…)`` returns a DKIM key record; the default asks DNS.
    """
    msg = message_from_bytes(raw)
    hops = _received(msg)
    dkim_result, dkim_domain = _dkim(raw, msg, dnsfunc)
    subject = _header(msg, "Subject")[:MAX_SUBJECT]
    texts: list[str] = [subject]
    link_candidates: list[str] = []
    attachments: list[dict[str, Any]] = []
    size = len(subject)
    for part in _parts(msg):
        data = _payload(part)
        try:
            ctype = part.get_content_type()
        except Exception:
            ctype = "application/octet-stream"
        if _is_attachment(part) and ctype not in ("text/plain", "text/html"):
            attachments.append(
                {
                    "name": _filename(part),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                }
            )
            continue
        if size >= MAX_TEXT_CHARS:
            continue
        text = data[: MAX_TEXT_CHARS - size].decode(_charset(part), errors="replace")
        if ctype == "text/html":
            html = _HtmlText()
            try:
                html.feed(text)
                html.close()
            except Exception:
                pass
            link_candidates += html.links
            text = " ".join(html.chunks)
        size += len(text)
        texts.append(text)
    body = "\n".join(texts)
    link_candidates += _URL.findall(body)
    urls, url_domains = _clean_urls(link_candidates)
    sender = mail_from if mail_from is not None else _header(msg, "Return-Path")
    evidence: dict[str, Any] = {
        "provider": provider,
        "from_domain": _domain(_header(msg, "From")),
        "return_path_domain": _domain(sender) if sender else None,
        "sender_ip": (_valid_ip(peer_ip) if peer_ip else None) or _ip_of_hops(hops),
        "dkim_domain": dkim_domain,
        "dkim_result": dkim_result,
        "spf_result": _spf(msg),
        "received": hops,
        "subject": subject,
        "urls": urls,
        "url_domains": url_domains,
        "attachments": attachments,
    }
    text = fold(body)
    evidence["simhash"] = simhash(text)
    return ParsedMail(evidence, text)


def recipients_in_headers(raw: bytes) -> list[str]:
    """Addresses a message was delivered to, as its headers say (for mailbox polling)."""
    msg = message_from_bytes(raw)
    values: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc"):
        values += _all_headers(msg, name)
    out: list[str] = []
    for _, addr in getaddresses(values):
        addr = addr.strip()
        if "@" in addr and addr.lower() not in (a.lower() for a in out):
            out.append(addr)
    return out[:100]


def simhash(text: str) -> str:
    """64-bit SimHash (16 hex digits) of word 3-shingles; near-identical texts are close.

    URLs and digits are masked first, so the same template sent with other links,
    amounts or ticket numbers hashes alike.
    """
    masked = re.sub(r"\d", "0", _URL.sub(" url ", text))
    words = _WORD.findall(masked)
    if not words:
        return "0" * 16
    shingles = (
        [" ".join(words[i : i + 3]) for i in range(len(words) - 2)] if len(words) >= 3 else words
    )
    weights = [0] * 64
    for shingle, count in Counter(shingles).items():
        h = int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "big")
        for bit in range(64):
            weights[bit] += count if h >> bit & 1 else -count
    value = sum(1 << bit for bit in range(64) if weights[bit] > 0)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """How many bits two SimHashes differ in."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _has_phrase(text: str, phrase: str) -> bool:
    words = _WORD.findall(fold(phrase))
    if not words:
        return False
    pattern = r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)"
    return re.search(pattern, text) is not None


def _has_phone(text: str, phone: str) -> bool:
    wanted = re.sub(r"\D", "", phone)[-9:]
    if len(wanted) < 6:
        return False
    return any(re.sub(r"\D", "", run).endswith(wanted) for run in _DIGIT_RUN.findall(text))


def canary_uses(text: str, details: CanaryDetails) -> list[str]:
    """Which of the canary's details the (folded) ``text`` quotes (name, reference, …).

    Quoting them is strong evidence: only someone holding the record knows them.
    """
    uses = []
    if any(_has_phrase(text, name) for name in details.names):
        uses.append("name")
    if any(_has_phrase(text, ref) for ref in details.references):
        uses.append("reference")
    if details.address and _has_phrase(text, details.address):
        uses.append("address")
    if details.phone and _has_phone(text, details.phone):
        uses.append("phone")
    if details.email and fold(details.email) in text:
        uses.append("email")
    return uses
