"""Commands for the public pages: registering outbound contacts customers can verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .. import callers
from ..errors import InvalidInput
from .base import JsonOpt, WorkspaceOpt, _app, _print_json, _workspace, app, out

callers_app = _app("Outbound contacts customers can verify on the public page.")
app.add_typer(callers_app, name="callers")


@callers_app.command("register")
def callers_register(
    channel: Annotated[str, typer.Option(help="How you will contact them: phone, sms or email.")],
    purpose: Annotated[str, typer.Option(help="Why, in words the customer will recognise.")],
    staff: Annotated[
        str, typer.Option(help="Who makes the contact, as the customer will hear it.")
    ],
    customer: Annotated[
        int | None, typer.Option(help="Customer number; the contact point on file is used.")
    ] = None,
    contact: Annotated[
        str | None, typer.Option(help="An e-mail address or phone number instead of --customer.")
    ] = None,
    ttl: Annotated[int, typer.Option(help="Minutes the code stays valid (1 to 10080).")] = 30,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a contact before making it and print its one-time code (shown only now)."""
    if (customer is None) == (contact is None):
        raise InvalidInput("give either --customer or --contact")
    who: int | str = customer if customer is not None else str(contact)
    with _workspace(workspace) as ws:
        reg = callers.register_contact(
            ws, who, channel, purpose, staff, timedelta(minutes=max(0, ttl))
        )
    if json_out:
        _print_json(
            {
                "id": reg.id,
                "code": reg.code,
                "expires_at": reg.expires_at.isoformat(timespec="seconds"),
            }
        )
        return
    out.print(f"Contact #{reg.id} registered; code [bold]{reg.code}[/]")
    out.print(f"  valid until {reg.expires_at:%Y-%m-%d %H:%M} UTC; read it out when you call.")
    out.print("  Never ask the customer for a code: you give it, they check it on the page.")


@callers_app.command("list")
def callers_list(
    active: Annotated[bool, typer.Option("--active", help="Only contacts still valid.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List registered outbound contacts, newest first (codes are never stored)."""
    now = datetime.now(UTC)
    with _workspace(workspace) as ws:
        contacts = callers.list_contacts(ws, active_only=active, now=now)
    if json_out:
        _print_json([c.as_dict(now) for c in contacts])
        return
    table = Table("id", "customer", "channel", "staff", "purpose", "registered", "until", "state")
    for c in contacts:
        table.add_row(
            str(c.id),
            str(c.customer_id or "-"),
            c.channel,
            escape(c.staff),
            escape(c.purpose),
            f"{c.created_at:%Y-%m-%d %H:%M}",
            f"{c.expires_at:%Y-%m-%d %H:%M}",
            "active" if c.active(now) else "expired",
        )
    out.print(table)
