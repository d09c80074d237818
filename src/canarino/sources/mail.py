"""Mail: mbox mailboxes and single .eml messages, one row per address or phone found.

Addresses come from the address headers (with the display name), e-mails and phone
numbers from text bodies and text attachments; nested forwarded messages are read too.
An mbox is streamed message by message; a message too large to parse safely is
skipped and counted (see :meth:`MailSource._split`), and MIME nesting deeper than
``Limits.max_depth`` is refused.
"""

from __future__ import annotations

import email
import email.errors
import re
from collections.abc import Iterator
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses

from ..errors import InvalidInput
from .base import SOURCES, Batch, Source, Table, batched_rows, decode_head

HEADERS = ["message", "source", "email", "phone", "full name"]
ADDRESS_HEADERS = (
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Sender",
    "Delivered-To",
    "Return-Path",
    "X-Original-To",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "Disposition-Notification-To",
)
_MAIL_HEADERS = {
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "received",
    "mime-version",
    "return-path",
    "delivered-to",
    "content-type",
    "x-mailer",
    "reply-to",
}
# Lookbehinds anchor each match at the start of a run, which keeps the scans linear.
EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.){1,8}[A-Za-z]{2,24}(?![\w])"
)
PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\d(?:[ .\-]?\d){7,14}(?![\w])")
_TEXT_TYPES = {"application/csv", "application/json", "application/x-ndjson", "application/xml"}
# The stdlib parser raises these on hostile input; any of them means "cannot be read".
PARSE_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    LookupError,
    AttributeError,
    email.errors.MessageError,
)


class TooDeep(Exception):
    """MIME parts nested deeper than the limit."""


def text_contacts(text: str) -> Iterator[tuple[str, str]]:
    """``(email, phone)`` pairs, one side empty, found in free text."""
    for m in EMAIL.finditer(text):
        yield m[0], ""
    for m in PHONE.finditer(text):
        yield "", m[0]


def _decode(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("latin-1")


def message_contacts(msg: Message, max_depth: int, depth: int = 0) -> Iterator[list[str]]:
    """Rows ``[source, email, phone, full name]`` for one parsed message."""
    if depth > max_depth:
        raise TooDeep
    for header in ADDRESS_HEADERS:
        values = msg.get_all(header) or []
        try:
            pairs = getaddresses([str(v) for v in values])
        except PARSE_ERRORS:
            continue
        for display, address in pairs:
            if "@" in address:
                yield [header.lower(), address.strip(), "", display.strip()]
    yield from _part_contacts(msg, max_depth, depth)


def _part_contacts(part: Message, max_depth: int, depth: int) -> Iterator[list[str]]:
    if depth > max_depth:
        raise TooDeep
    if part.is_multipart():
        for sub in part.get_payload():
            if not isinstance(sub, Message):
                continue
            if sub.get_content_type() == "message/rfc822" or part.get_content_type() == (
                "message/rfc822"
            ):
                yield from message_contacts(sub, max_depth, depth + 1)
            else:
                yield from _part_contacts(sub, max_depth, depth + 1)
        return
    ctype = part.get_content_type()
    if part.get_content_maintype() != "text" and ctype not in _TEXT_TYPES:
        return
    source = "attachment" if part.get_filename() else "body"
    for address, phone in text_contacts(_decode(part)):
        yield [source, address, phone, ""]


def contacts(raw: bytes, number: int, max_depth: int, name: str) -> list[list[str]]:
    """Parse one raw message into unique rows ``[message, source, email, phone, name]``."""
    try:
        msg = email.message_from_bytes(raw, policy=compat32)
        rows = list(message_contacts(msg, max_depth))
    except (TooDeep, RecursionError):
        raise InvalidInput(
            f"{name}: message {number:,} nests MIME parts deeper than {max_depth} levels"
        ) from None
    except PARSE_ERRORS:
        raise InvalidInput(f"{name}: message {number:,} cannot be parsed") from None
    seen: set[tuple[str, ...]] = set()
    out: list[list[str]] = []
    for row in rows:
        key = tuple(row[:3])
        if key not in seen:
            seen.add(key)
            out.append([str(number), *row])
    return out


class MailSource(Source):
    """Shared layout, message splitting and batching of the mail formats."""

    MBOX = False
    position = 0

    def layout(self) -> Table:
        """Fixed columns: message number, where it was found, e-mail, phone, name."""
        return Table(list(HEADERS), len(HEADERS), "mail", "")

    def _split(self) -> Iterator[tuple[int, bytes | None]]:
        """Yield ``(number, raw message)``, or ``None`` for a message past the limits.

        The stdlib parser needs several times a message's size in memory, and far more
        for one endless line, so a message larger than a quarter of
        ``max_block_bytes`` or with a line longer than ``max_line_bytes`` is not parsed.
        """
        limit = self.limits.max_block_bytes // 4
        line_limit = self.limits.max_line_bytes
        number = 1
        current = bytearray()
        too_big = False
        at_start = True
        line = 0
        with self.path.open("rb") as fp:
            while True:
                piece = fp.readline(1 << 16)
                boundary = self.MBOX and at_start and piece.startswith(b"From ")
                if not piece or boundary:
                    if current or too_big:
                        yield number, None if too_big else bytes(current)
                        number += 1
                    if not piece:
                        break
                    current.clear()
                    too_big = False
                else:
                    line = 0 if at_start else line
                    line += len(piece)
                    if not too_big:
                        current += piece
                        if len(current) > limit or line > line_limit:
                            too_big = True
                            current.clear()
                at_start = piece.endswith(b"\n")
                self.position = fp.tell()

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(message number, cells)`` for each address or phone found."""
        skipped = 0
        for number, raw in self._split():
            if raw is None:
                skipped += 1
                if not self.MBOX:
                    raise InvalidInput(
                        f"{self.name}: the message is larger than "
                        f"{self.limits.max_block_bytes // 4:,} bytes or has a line longer "
                        f"than {self.limits.max_line_bytes:,} bytes",
                        hint="raise max_block_bytes or max_line_bytes if it is genuine",
                    )
                continue
            for row in contacts(raw, number, self.limits.max_depth, self.name):
                yield number, row
        self.skipped_rows = skipped

    def batches(self) -> Iterator[Batch]:
        """Stream the contacts found as Arrow batches of string columns."""
        yield from batched_rows(
            self.rows(), len(HEADERS), self.limits.batch_rows, lambda: self.position
        )


@SOURCES.register("mbox")
class MboxSource(MailSource):
    """A Unix mbox mailbox (Thunderbird, Google Takeout, mutt)."""

    NAME = "mbox"
    SUFFIXES = (".mbox", ".mbx")
    PRIORITY = 15
    MBOX = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Starts with an mbox ``From `` separator line followed by mail headers."""
        return head.startswith(b"From ") and EmlSource.sniff(head.partition(b"\n")[2])


@SOURCES.register("eml")
class EmlSource(MailSource):
    """One RFC 822 message (.eml), as saved by mail programs."""

    NAME = "eml"
    SUFFIXES = (".eml",)
    PRIORITY = 16

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Starts with a block of header lines, two or more of them common mail headers."""
        known = 0
        lines = decode_head(head[:16384]).splitlines()
        if not lines or not re.match(r"[A-Za-z0-9-]+:", lines[0]):
            return False
        for line in lines[:200]:
            if not line.strip():
                break
            if line[:1] in " \t":
                continue
            field, colon, _ = line.partition(":")
            if not colon or not re.fullmatch(r"[A-Za-z0-9-]+", field):
                return False
            known += field.lower() in _MAIL_HEADERS
        return known >= 2
