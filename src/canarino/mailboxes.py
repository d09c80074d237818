"""The mailbox pool: single mailboxes the company provisioned at consumer providers.

Most customers use a handful of consumer providers (gmail.com, libero.it, …), where a
company cannot own a whole domain but can open single mailboxes. Registered here, each
mailbox is given to exactly one canary, ever (a sighting must name one canary): when a
canary is drawn like a customer at gmail.com, it takes an unused gmail.com mailbox, so
the canaries' provider mix follows the customers'. Mail reaches these mailboxes at the
provider and is read with the IMAP poller (``canarino imap poll``), which recognises
pool addresses as recipients.

Addresses are sealed; the table keeps the provider's domain in clear and the address's
e-mail pseudonym, the same one the canary gets once it takes the mailbox.
"""

from __future__ import annotations

import csv
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from random import Random  # noqa: TID251 - only the type; the default is SystemRandom

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .canaries import CONSUMER_PROVIDERS, Mailbox, Profile, propose_mailboxes
from .customers import CUSTOMER_CONTEXT, select_customers
from .errors import InvalidInput
from .models import utcnow
from .normalize import IdentifierError, contacts_by_pseudonym, normalize_email
from .workspace import Workspace

POOL_CONTEXT = "mailbox"
COLUMNS = ("address", "first_name", "last_name", "birth_year", "country")
MAX_FILE_ROWS = 100_000


@dataclass(frozen=True)
class ProviderPool:
    """How many mailboxes the pool holds at one provider, and how many are unused."""

    domain: str
    total: int
    free: int


def check_mailbox(box: Mailbox, mail_domains: Iterable[str]) -> Mailbox:
    """``box`` with its address normalised; a clear error if it cannot be a pool mailbox."""
    try:
        address = normalize_email(box.address)
    except IdentifierError as exc:
        raise InvalidInput(f"{exc}", hint="give a full address such as name@gmail.com") from None
    domain = address.rpartition("@")[2]
    if domain in {d.lower() for d in mail_domains}:
        raise InvalidInput(
            f"{domain} is already a monitored mail domain: its addresses need no pool",
            hint="canaries get addresses there on their own; add only mailboxes at providers",
        )
    if bool(box.first_name) != bool(box.last_name):
        raise InvalidInput(
            "give both first_name and last_name, or neither",
            hint="the canary that takes the mailbox takes this name",
        )
    if box.birth_year is not None and not 1900 <= box.birth_year <= 2030:
        raise InvalidInput(f"birth_year {box.birth_year} is not a plausible year")
    country = (box.country or "").strip().upper() or None
    if country is not None and not (len(country) == 2 and country.isalpha()):
        raise InvalidInput(f"country {box.country!r} is not a two-letter ISO code")
    return Mailbox(address, box.first_name.strip(), box.last_name.strip(), box.birth_year, country)


def read_mailbox_file(path: Path) -> list[Mailbox]:
    """Mailboxes from a CSV file with an ``address`` column.

    The other columns of :data:`COLUMNS` are optional; ``canarino canaries mailboxes
    propose`` writes them all.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as fp:
            reader = csv.DictReader(fp)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            if "address" not in header:
                raise InvalidInput(
                    f"{path}: no 'address' column",
                    hint=f"the first line names the columns: {','.join(COLUMNS)}",
                )
            reader.fieldnames = header
            boxes = []
            for line, row in enumerate(reader, start=2):
                if line > MAX_FILE_ROWS + 1:
                    raise InvalidInput(f"{path}: more than {MAX_FILE_ROWS:,} mailboxes")
                year_text = (row.get("birth_year") or "").strip()
                if year_text and not year_text.isdigit():
                    raise InvalidInput(f"{path}, line {line}: birth_year is not a year")
                boxes.append(
                    Mailbox(
                        (row.get("address") or "").strip(),
                        (row.get("first_name") or "").strip(),
                        (row.get("last_name") or "").strip(),
                        int(year_text) if year_text else None,
                        (row.get("country") or "").strip() or None,
                    )
                )
    except FileNotFoundError:
        raise InvalidInput(f"no file {path}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: not a UTF-8 CSV file ({type(exc).__name__})") from None
    return boxes


def add_mailboxes(ws: Workspace, boxes: Iterable[Mailbox]) -> int:
    """Register provisioned mailboxes; all or none. Returns how many were added.

    Refused: malformed addresses, addresses on monitored domains, an address twice, one
    already in the pool, a customer's or a canary's address.
    """
    ps = ws.vault.pseudonyms
    checked: dict[bytes, Mailbox] = {}
    position: dict[bytes, int] = {}
    for i, box in enumerate(boxes, start=1):
        try:
            good = check_mailbox(box, ws.settings.mail_domains)
        except InvalidInput as exc:
            raise InvalidInput(f"mailbox {i}: {exc.args[0]}", hint=exc.hint) from None
        digest = ps.digest("email", good.address)
        if digest in checked:
            raise InvalidInput(f"mailbox {i}: the same address as mailbox {position[digest]}")
        checked[digest], position[digest] = good, i
    if not checked:
        raise InvalidInput("no mailbox given", hint="give an address or --file")
    with ws.db.session() as s:
        wanted = list(checked)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for digest in s.scalars(
                select(m.PoolMailbox.digest).where(m.PoolMailbox.digest.in_(chunk))
            ):
                raise InvalidInput(f"mailbox {position[digest]}: already in the mailbox pool")
            for digest in s.scalars(
                select(m.Pseudonym.digest).where(m.Pseudonym.digest.in_(chunk))
            ):
                # Whose address it is, a customer's or a canary's, is not said.
                raise InvalidInput(
                    f"mailbox {position[digest]}: the address is already a customer's or "
                    "a canary's",
                    hint="provision a new mailbox; mail to a known address cannot name a leak",
                )
        s.add_all(
            m.PoolMailbox(
                digest=digest,
                domain=box.domain,
                country=box.country,
                sealed=ws.vault.seal(_fields(box), context=POOL_CONTEXT),
            )
            for digest, box in checked.items()
        )
    return len(checked)


def _fields(box: Mailbox) -> dict[str, str | int | None]:
    return {
        "address": box.address,
        "first_name": box.first_name,
        "last_name": box.last_name,
        "birth_year": box.birth_year,
        "country": box.country,
    }


def _open(ws: Workspace, sealed: bytes) -> Mailbox:
    data = ws.vault.open(sealed, context=POOL_CONTEXT)
    year = data.get("birth_year")
    return Mailbox(
        str(data["address"]),
        str(data.get("first_name") or ""),
        str(data.get("last_name") or ""),
        int(year) if year else None,
        data.get("country") or None,
    )


def mark_used(s: Session, taken: Iterable[tuple[bytes, int]]) -> None:
    """Record that the canaries took the mailboxes with these e-mail pseudonyms.

    ``taken`` pairs each new canary's e-mail pseudonym with its id; pseudonyms that are
    not pool mailboxes are ignored.
    """
    by_digest = dict(taken)
    if not by_digest:
        return
    now = utcnow()
    for box in s.scalars(select(m.PoolMailbox).where(m.PoolMailbox.digest.in_(list(by_digest)))):
        box.canary_id, box.used_at = by_digest[box.digest], now


def unused_mailboxes(ws: Workspace, s: Session) -> list[Mailbox]:
    """The mailboxes no canary has taken yet."""
    sealed = s.scalars(select(m.PoolMailbox.sealed).where(m.PoolMailbox.used_at.is_(None)))
    return [_open(ws, blob) for blob in sealed]


def pool_summary(ws: Workspace) -> list[ProviderPool]:
    """Per provider: mailboxes in the pool and how many are still unused."""
    with ws.db.session() as s:
        rows = s.execute(select(m.PoolMailbox.domain, m.PoolMailbox.used_at)).all()
    total = Counter(d for d, _ in rows)
    free = Counter(d for d, used in rows if used is None)
    return [ProviderPool(d, total[d], free[d]) for d in sorted(total)]


def list_mailboxes(ws: Workspace) -> list[tuple[Mailbox, bool]]:
    """Every pool mailbox and whether a canary has taken it, by provider and address."""
    with ws.db.session() as s:
        boxes = _all(ws, s)
    return sorted(boxes, key=lambda b: (b[0].domain, b[0].address))


def pool_addresses(ws: Workspace, addresses: Iterable[str]) -> list[str]:
    """Those of ``addresses`` that are pool mailboxes (used or not), as given."""
    digests = contacts_by_pseudonym(ws.vault.pseudonyms, "email", addresses)
    if not digests:
        return []
    with ws.db.session() as s:
        found = set(
            s.scalars(select(m.PoolMailbox.digest).where(m.PoolMailbox.digest.in_(list(digests))))
        )
    return [a for d, given in digests.items() if d in found for a in given]


def propose(
    ws: Workspace,
    count: int,
    *,
    providers: Iterable[str] | None = None,
    customer_filter: str = "",
    rng: Random | None = None,
) -> list[Mailbox]:
    """Mailboxes to provision so that canaries at providers look like the customers.

    Proposals follow the customers (matched by ``customer_filter``) at ``providers``
    (default: well-known consumer providers): providers and countries in their
    proportions, names and ages drawn like canaries', local parts built with their
    recipes. Nothing is stored; register the mailboxes once they exist.
    """
    if count < 1:
        raise InvalidInput("--count must be at least 1")
    wanted = sorted({p.strip().lower() for p in providers} if providers else CONSUMER_PROVIDERS)
    with ws.db.session() as s:
        real = [
            ws.vault.open(sealed, context=CUSTOMER_CONTEXT)
            for _, sealed in s.execute(select_customers(customer_filter))
        ]
        pooled = [box.address for box, _ in _all(ws, s)]
    if not real:
        raise InvalidInput(
            "no customer matches --customers: proposals are shaped like your customers",
            hint="import customers first with: canarino customers import FILE; "
            "or widen --customers",
        )
    boxes = propose_mailboxes(
        Profile.from_rows(real), count, rng or secrets.SystemRandom(), wanted, pooled
    )
    if not boxes:
        raise InvalidInput(
            "no customer uses one of the providers",
            hint="name the providers your customers use with --provider",
        )
    return boxes


def _all(ws: Workspace, s: Session) -> list[tuple[Mailbox, bool]]:
    rows = s.execute(select(m.PoolMailbox.sealed, m.PoolMailbox.used_at)).all()
    return [(_open(ws, sealed), used is not None) for sealed, used in rows]


def write_mailbox_file(path: Path, boxes: Iterable[Mailbox]) -> None:
    """Write proposals as the CSV :func:`read_mailbox_file` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for b in boxes:
            writer.writerow(
                [b.address, b.first_name, b.last_name, b.birth_year or "", b.country or ""]
            )
