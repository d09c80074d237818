from __future__ import annotations

import builtins
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from canarino.errors import InvalidInput
from canarino.sources import Limits, MsgSource, XlsSource, open_source
from canarino.sources.msg import msg_contacts
from canarino.sources.spreadsheet import cfb_names

CFB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def compound_head(*names: str) -> bytes:
    """The header and first directory sector of an OLE2 file holding ``names``."""
    header = bytearray(512)
    header[:8] = CFB
    header[30:32] = (9).to_bytes(2, "little")
    header[48:52] = (0).to_bytes(4, "little")
    directory = bytearray()
    for name in ("Root Entry", *names):
        entry = bytearray(128)
        raw = name.encode("utf-16-le") + b"\0\0"
        entry[: len(raw)] = raw
        entry[64:66] = len(raw).to_bytes(2, "little")
        directory += entry
    return bytes(header + directory.ljust(512, b"\0"))


def test_outlook_messages_and_workbooks_are_told_apart_by_their_streams() -> None:
    msg = compound_head("__substg1.0_0037001F", "__properties_version1.0")
    xls = compound_head("Workbook")
    assert "__substg1.0_0037001F" in cfb_names(msg)
    assert MsgSource.sniff(msg) and not XlsSource.sniff(msg)
    assert XlsSource.sniff(xls) and not MsgSource.sniff(xls)


def _message(**fields: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "headerText": None,
        "sender": None,
        "recipients": [],
        "body": None,
        "htmlBody": None,
        "attachments": [],
    }
    return SimpleNamespace(**(base | fields))


def test_msg_contacts_reads_people_bodies_and_attachments() -> None:
    inner = _message(sender="Luca <luca@x.it>")
    msg = _message(
        headerText="Delivered-To: anna@x.it\nSubject: s\n",
        sender='"Mario Rossi" <mario@x.it>',
        recipients=[SimpleNamespace(email="carla@x.it", name="Carla", type=2)],
        body="chiama +39 347 123 4567",
        htmlBody=b"<a href='mailto:dario@x.it'>",
        attachments=[
            SimpleNamespace(data=b"e@x.it", longFilename="list.csv", mimetype=None),
            SimpleNamespace(data=b"f@x.it", longFilename="photo.jpg", mimetype="image/jpeg"),
            SimpleNamespace(data=inner, longFilename=None, mimetype=None),
        ],
    )
    inner.recipients = []
    rows = list(msg_contacts(msg, 64))
    assert ["delivered-to", "anna@x.it", "", ""] in rows
    assert ["from", "mario@x.it", "", "Mario Rossi"] in rows
    assert ["cc", "carla@x.it", "", "Carla"] in rows
    assert ["body", "", "+39 347 123 4567", ""] in rows
    assert ["body", "dario@x.it", "", ""] in rows
    assert ["attachment", "e@x.it", "", ""] in rows
    assert ["from", "luca@x.it", "", "Luca"] in rows
    assert not any("f@x.it" in r for r in rows)


def test_a_damaged_msg_is_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("extract_msg")
    path = tmp_path / "bad.msg"
    path.write_bytes(compound_head("__substg1.0_0037001F"))
    source = open_source(path, Limits())
    assert isinstance(source, MsgSource)
    with pytest.raises(InvalidInput, match="not a readable Outlook message") as info:
        list(source.batches())
    assert str(path) in str(info.value)


def test_without_extract_msg_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_extract_msg(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "extract_msg":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extract_msg)
    path = tmp_path / "m.msg"
    path.write_bytes(compound_head("__substg1.0_0037001F"))
    with pytest.raises(InvalidInput, match=r"needs the extract-msg package.*canarino\[msg\]"):
        list(open_source(path, Limits()).rows())
