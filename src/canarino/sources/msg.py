"""Outlook .msg messages, read with the optional ``extract-msg`` package.

Rows are the same as for :mod:`canarino.sources.mail`: sender and recipients with their
display names, the transport headers when saved, and e-mails and phones in the text and
HTML bodies, text attachments and attached messages.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.policy import compat32
from email.utils import getaddresses
from typing import Any

from ..errors import InvalidInput
from .base import SOURCES
from .mail import PARSE_ERRORS, MailSource, TooDeep, message_contacts, text_contacts
from .spreadsheet import cfb_names

_RECIPIENT_KINDS = {1: "to", 2: "cc", 3: "bcc"}
_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".xml", ".html", ".htm", ".vcf", ".eml")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def msg_contacts(msg: Any, max_depth: int, depth: int = 0) -> Iterator[list[str]]:
    """Rows ``[source, email, phone, full name]`` for one extract-msg message."""
    if depth > max_depth:
        raise TooDeep
    header_text = _text(getattr(msg, "headerText", None))
    if header_text:
        yield from message_contacts(
            email.message_from_string(header_text, policy=compat32), max_depth, depth + 1
        )
    for display, address in getaddresses([_text(getattr(msg, "sender", None))]):
        if "@" in address:
            yield ["from", address, "", display]
    for recipient in getattr(msg, "recipients", None) or []:
        address = _text(getattr(recipient, "email", None))
        if "@" in address:
            kind = _RECIPIENT_KINDS.get(getattr(recipient, "type", 1), "to")
            yield [kind, address, "", _text(getattr(recipient, "name", None))]
    for body in (getattr(msg, "body", None), getattr(msg, "htmlBody", None)):
        for address, phone in text_contacts(_text(body)):
            yield ["body", address, phone, ""]
    for attachment in getattr(msg, "attachments", None) or []:
        data = getattr(attachment, "data", None)
        if data is not None and hasattr(data, "recipients"):
            yield from msg_contacts(data, max_depth, depth + 1)
            continue
        filename = _text(getattr(attachment, "longFilename", None) or "").lower()
        mimetype = _text(getattr(attachment, "mimetype", None) or "").lower()
        if isinstance(data, bytes) and (
            mimetype.startswith("text/") or filename.endswith(_TEXT_SUFFIXES)
        ):
            for address, phone in text_contacts(_text(data)):
                yield ["attachment", address, phone, ""]


@SOURCES.register("msg")
class MsgSource(MailSource):
    """One Outlook message (.msg); needs ``pip install 'canarino[msg]'``."""

    NAME = "msg"
    SUFFIXES = (".msg",)
    PRIORITY = 11

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """An OLE2 compound file holding MAPI property streams."""
        return any(n.startswith("__substg1.0_") for n in cfb_names(head))

    def _rows(self) -> list[list[str]]:
        try:
            import extract_msg  # an optional dependency with a large tree of its own
        except ImportError:
            raise InvalidInput(
                f"{self.name}: reading Outlook .msg files needs the extract-msg package",
                hint="pip install 'canarino[msg]'",
            ) from None
        if self.size > self.limits.max_block_bytes:
            raise InvalidInput(
                f"{self.name}: the message is {self.size:,} bytes, more than the limit of "
                f"{self.limits.max_block_bytes:,}"
            )
        try:
            msg = extract_msg.openMsg(str(self.path), delayAttachments=False)
        except Exception:
            # extract-msg raises many unrelated types on damaged files; none carry data here.
            raise InvalidInput(f"{self.name}: not a readable Outlook message") from None
        try:
            rows = list(msg_contacts(msg, self.limits.max_depth))
        except (TooDeep, RecursionError):
            raise InvalidInput(
                f"{self.name}: attached messages nest deeper than {self.limits.max_depth} levels"
            ) from None
        except PARSE_ERRORS:
            raise InvalidInput(f"{self.name}: the Outlook message is damaged") from None
        finally:
            msg.close()
        seen: set[tuple[str, ...]] = set()
        out: list[list[str]] = []
        for row in rows:
            key = tuple(row[:3])
            if key not in seen:
                seen.add(key)
                out.append(["1", *row])
        return out

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(1, cells)`` for each address or phone found in the message."""
        self.position = self.size
        for row in self._rows():
            yield 1, row
