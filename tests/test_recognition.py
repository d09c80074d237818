from __future__ import annotations

import csv
from pathlib import Path

import pytest

from canarino.recognition import CanaryRecognizer, Candidate, Monitored
from canarino.shares import ShareResult
from canarino.trace import run_trace
from canarino.workspace import Workspace

from .conftest import MAIL_DOMAINS

CANARIES = {
    7: {
        "first_name": "Dario",
        "last_name": "Fontana",
        "email": "dario.fontana@canary-mail.it",
        "phone": "+393475551234",
    },
    8: {
        "first_name": "Lucia",
        "last_name": "Greco",
        "email": "l.greco@canary-mail.it",
        "phone": "+393475559876",
    },
}
MONITORED = Monitored(["canary-mail.it"], ["+39347555"])


@pytest.mark.parametrize(
    ("email", "phone", "name", "canary", "how"),
    [
        ("dario.fontnaa@canary-mail.it", None, "Dario Fontana", 7, "email~"),  # typo
        ("dario.fontana@canary-mail.i", None, "DARIO FONTANA", 7, "email~"),  # truncated domain
        (None, "+39347555123", "Fontana Dario", 7, "phone~"),  # last digit cut
        (None, "+393475551284", "Dario Fontana", 7, "phone~"),  # one wrong digit
        ("l.grecco@canary-mail.it", None, "Lucía Greco", 8, "email~"),  # typo, accent
    ],
)
def test_damaged_canaries_are_recognised_with_their_name(
    email: str | None, phone: str | None, name: str, canary: int, how: str
) -> None:
    (hit,) = CanaryRecognizer(CANARIES, MONITORED).recognise([Candidate(3, email, phone, name)])
    assert (hit.row, hit.canary_id, hit.how) == (3, canary, how)


@pytest.mark.parametrize(
    ("email", "phone", "name"),
    [
        ("dario.fontnaa@canary-mail.it", None, ""),  # a fuzzy contact point alone
        ("dario.fontnaa@canary-mail.it", None, "Mario Rossi"),  # someone else's name
        ("completely.else@canary-mail.it", None, "Dario Fontana"),  # not close enough
        (None, "+393475550000", "Dario Fontana"),  # a different number in the range
        ("dario.fontana@gmail.com", None, "Dario Fontana"),  # not our domain
    ],
)
def test_weak_or_foreign_evidence_is_not_recognised(
    email: str | None, phone: str | None, name: str
) -> None:
    assert CanaryRecognizer(CANARIES, MONITORED).recognise([Candidate(0, email, phone, name)]) == []


def test_monitored_knows_our_domains_and_ranges() -> None:
    assert MONITORED.domain("Canary-Mail.IT") == "canary-mail.it"
    assert MONITORED.domain("canary-mial.it") == "canary-mail.it"
    assert MONITORED.domain("gmail.com") is None
    assert MONITORED.phone_range("0039 347 555 0000") == "39347555"
    assert MONITORED.points_at_us(None, "+39 333 1234567") is False


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fp:
        reader = csv.reader(fp)
        return next(reader), list(reader)


def test_trace_recognises_damaged_canaries_in_a_dump(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    header, rows = _rows(shared["Vendor B"].path)
    email_col, first_col = header.index("email"), header.index("first_name")
    canary_rows = [r for r in rows if r[email_col].split("@")[1] in MAIL_DOMAINS][:6]
    damaged = []
    for r in canary_rows:
        r = list(r)
        local, domain = r[email_col].split("@")
        r[email_col] = f"{local[:-2]}{local[-1]}{local[-2]}@{domain}"  # swap two letters
        r[header.index("phone")] = ""
        damaged.append(r)
    orphan = list(canary_rows[0])
    orphan[email_col] = orphan[email_col].replace("@", "x@")
    orphan[first_col] = "Nobody"
    orphan[header.index("last_name")] = "Atall"
    orphan[header.index("phone")] = ""
    dump = tmp_path / "damaged.csv"
    with dump.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(header)
        writer.writerows([*damaged, orphan])
    report = run_trace(loaded, dump)
    assert report.canaries_matched == 6
    assert report.suspects[0].recipient == "Vendor B" and report.suspects[0].canaries_seen == 6
