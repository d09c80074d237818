"""Commands that set up the data: workspace, customers, recipients, shares, design."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from .. import customers as customers_mod
from .. import mailboxes, recipients, shares, sightings
from ..canaries import Mailbox
from ..design import DesignInput, plan
from ..errors import InvalidInput
from ..simulate import simulate
from ..sources import SOURCES
from ..workspace import init_workspace
from .base import (
    JsonOpt,
    WorkspaceOpt,
    _app,
    _print_json,
    _progress,
    _workspace,
    app,
    customers_app,
    out,
    recipients_app,
)

canaries_app = _app(
    "Canary records outside shares: honey records for live systems, provisioned mailboxes."
)
app.add_typer(canaries_app, name="canaries")
mailboxes_app = _app(
    "The mailbox pool: single mailboxes you own at consumer providers, one per canary."
)
canaries_app.add_typer(mailboxes_app, name="mailboxes")

# --- workspace ---------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path(
        "."
    ),
    mail_domain: Annotated[
        list[str],
        typer.Option(
            "--mail-domain", help="Monitored mail domain for canary addresses (repeatable)."
        ),
    ] = [],  # noqa: B006 - Typer reads the default, never mutates it
    phone_range: Annotated[
        list[str],
        typer.Option(
            "--phone-range", help="Monitored phone prefix in E.164, e.g. +3934755 (repeatable)."
        ),
    ] = [],  # noqa: B006
    company: Annotated[str, typer.Option(help="Company name used in notices.")] = "Example S.p.A.",
) -> None:
    """Create a workspace: settings file, secret key (0600) and database."""
    ws = init_workspace(
        directory, mail_domains=mail_domain, phone_ranges=phone_range, company_name=company
    )
    out.print(f"Workspace ready in [bold]{directory}[/]")
    out.print(f"  mail domains: {', '.join(ws.settings.mail_domains)}")
    out.print(f"  phone ranges: {', '.join(ws.settings.phone_ranges) or 'none'}")
    out.print(f"  secret key:   {ws.settings.secret_path} (keep a backup outside the database)")
    ws.close()


@app.command("formats")
def formats_cmd() -> None:
    """List the dump formats canarino reads."""
    for name in SOURCES.names():
        out.print(name)


# --- customers ---------------------------------------------------------------------------


@customers_app.command("import")
def customers_import(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row (Italian or English).")],
    map_: Annotated[
        list[str],
        typer.Option(
            "--map", help="Override a column: HEADER=FIELD or HEADER=ignore (repeatable)."
        ),
    ] = [],  # noqa: B006
    country: Annotated[
        str | None,
        typer.Option(help="Country of rows that have no country column (ISO code or name)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import customers; identifiers are normalised and indexed by keyed pseudonym."""
    with _workspace(workspace) as ws, _progress("Importing", json_mode=json_out) as tick:
        report = customers_mod.import_customers(
            ws,
            file,
            mapping=customers_mod.parse_mapping(map_),
            default_country=country,
            progress=tick,
        )
    if json_out:
        _print_json(
            {
                "rows": report.rows,
                "imported": report.imported,
                "unchanged": report.unchanged,
                "columns": report.columns,
                "problems": [{"line": p.line, "reason": p.reason} for p in report.problems],
            }
        )
        return
    out.print(
        f"{report.rows:,} rows: [green]{report.imported:,} imported[/], "
        f"{report.unchanged:,} already present, [yellow]{len(report.problems):,} refused[/]"
    )
    out.print("Columns: " + ", ".join(f"{h} → {f}" for h, f in report.columns.items()))
    if report.ignored_columns:
        out.print(
            f"{report.ignored_columns} column(s) not recognised and ignored (use --map HEADER=FIELD)."
        )
    for problem in report.problems[:20]:
        out.print(f"  line {problem.line}: {problem.reason}")
    if len(report.problems) > 20:
        out.print(f"  … and {len(report.problems) - 20:,} more (use --json for all)")


@customers_app.command("count")
def customers_count(workspace: WorkspaceOpt = None) -> None:
    """Print how many customers the workspace holds."""
    from ..store import count_customers

    with _workspace(workspace) as ws, ws.db.session() as s:
        out.print(count_customers(s))


# --- recipients --------------------------------------------------------------------------


@recipients_app.command("add")
def recipients_add(
    name: Annotated[str, typer.Argument(help="Name of the vendor, employee or system.")],
    kind: Annotated[str, typer.Option(help="vendor, employee or system.")] = "vendor",
    parent: Annotated[str | None, typer.Option(help="Vendor an employee works for.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Register who receives customer data."""
    with _workspace(workspace) as ws:
        info = recipients.add_recipient(ws, name, kind, parent)
    suffix = f" of {info.parent}" if info.parent else ""
    out.print(f"Recipient #{info.id}: {info.name} ({info.kind}{suffix})")


@recipients_app.command("list")
def recipients_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List recipients."""
    with _workspace(workspace) as ws:
        rows = recipients.list_recipients(ws)
    if json_out:
        _print_json([r.__dict__ for r in rows])
        return
    table = Table("id", "name", "kind", "works for")
    for r in rows:
        table.add_row(str(r.id), r.name, r.kind, r.parent or "")
    out.print(table)


@recipients_app.command("allow")
def recipients_allow(
    name: Annotated[str, typer.Argument(help="Recipient whose infrastructure this is.")],
    dkim: Annotated[str | None, typer.Option(help="DKIM d= domain it sends mail with.")] = None,
    ip: Annotated[str | None, typer.Option(help="IP address it sends from.")] = None,
    caller_id: Annotated[str | None, typer.Option(help="Caller ID its call centre uses.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Authorise a recipient's senders: their contacts with its canaries are expected use."""
    given = [(k, v) for k, v in (("dkim", dkim), ("ip", ip), ("caller_id", caller_id)) if v]
    if not given:
        raise InvalidInput("give at least one of --dkim, --ip, --caller-id")
    with _workspace(workspace) as ws:
        for kind, value in given:
            sightings.allow_sender(ws, name, kind, value)
    out.print(f"Allowed for {name}: " + ", ".join(f"{k} {v}" for k, v in given))


# --- share -------------------------------------------------------------------------------


@app.command("share")
def share_cmd(
    to: Annotated[str, typer.Option("--to", help="Recipient that gets the export.")],
    fields: Annotated[
        str, typer.Option(help="Comma-separated fields, e.g. first_name,last_name,email,phone.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the export (CSV).")],
    customers: Annotated[
        str,
        typer.Option(
            "--customers", help="Which customers, e.g. 'country=IT region=MI,TO' (default: all)."
        ),
    ] = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the export a recipient gets, with its own canaries, and record the share."""
    with _workspace(workspace) as ws:
        result = shares.create_share(ws, to, fields, out_path, customer_filter=customers)
    if json_out:
        _print_json(
            {
                "share_id": result.share_id,
                "recipient": result.recipient,
                "rows": result.customers + result.canaries,
                "fields": result.fields,
                "path": str(result.path),
                "sha256": result.sha256,
                "detection_limit": round(result.detection_limit, 4),
                "mailboxes_short": result.mailboxes_short,
            }
        )
        return
    out.print(
        f"Share #{result.share_id} to [bold]{result.recipient}[/]: "
        f"{result.customers + result.canaries:,} rows written to {result.path}"
    )
    out.print(
        f"A leak of {result.detection_limit:.1%} or more of this export will contain a canary "
        "(99% of the time)."
    )
    if result.mailboxes_short:
        out.print(
            f"[yellow]The mailbox pool ran out for {result.mailboxes_short} canaries[/], "
            "which use look-alike domains instead: add mailboxes "
            "('canarino canaries mailboxes propose')."
        )


@canaries_app.command("honey")
def canaries_honey(
    recipient: Annotated[
        str, typer.Option(help="The live system (CRM, helpdesk) that imports the records.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the records (CSV).")],
    count: Annotated[
        int | None,
        typer.Option(min=1, help="How many records (default: as many as a share would get)."),
    ] = None,
    fields: Annotated[
        str | None,
        typer.Option(help="Comma-separated fields (default: every field the customers have)."),
    ] = None,
    customers: Annotated[
        str,
        typer.Option(
            "--customers",
            help="Customers the system holds, e.g. 'country=IT' (default: all); the records "
            "are drawn to look like them.",
        ),
    ] = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write canaries as honey records for a live system, shaped like a customers file.

    Import the file into the system (it may need a column mapping) and never into
    canarino: the records are recorded as a share to RECIPIENT, so a leak of the system
    that contains them names it.
    """
    with _workspace(workspace) as ws:
        result = shares.create_honey_share(
            ws, recipient, out_path, count=count, fields=fields, customer_filter=customers
        )
    if json_out:
        _print_json(
            {
                "share_id": result.share_id,
                "recipient": result.recipient,
                "records": result.canaries,
                "fields": result.fields,
                "path": str(result.path),
                "sha256": result.sha256,
            }
        )
        return
    out.print(
        f"Share #{result.share_id} to [bold]{result.recipient}[/]: "
        f"{result.canaries:,} honey records written to {result.path}"
    )
    out.print("Import them into the system, not into canarino; delete the file afterwards.")


@mailboxes_app.command("add")
def mailboxes_add(
    addresses: Annotated[
        list[str] | None, typer.Argument(help="Addresses of mailboxes you have created.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="CSV file with an address column (and first_name, last_name, birth_year, "
            "country), e.g. the one 'propose' wrote."
        ),
    ] = None,
    first_name: Annotated[
        str, typer.Option(help="Name the local part was built from (one address only).")
    ] = "",
    last_name: Annotated[str, typer.Option(help="Surname that goes with --first-name.")] = "",
    birth_year: Annotated[
        int | None, typer.Option(help="Birth year in the local part, if any.")
    ] = None,
    country: Annotated[
        str | None, typer.Option(help="Country (ISO code) of the canaries it suits.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Register mailboxes you own at consumer providers; each goes to one canary, ever.

    Canaries drawn like customers at a provider take an unused mailbox there, so their
    provider mix follows the customers'. Read their mail with 'canarino imap poll'.
    """
    given = list(addresses or [])
    if (first_name or last_name or birth_year or country) and len(given) != 1:
        raise InvalidInput(
            "--first-name, --last-name, --birth-year and --country describe one address",
            hint="give exactly one address with them, or put them in a --file",
        )
    boxes = [Mailbox(a, first_name, last_name, birth_year, country) for a in given]
    if file is not None:
        boxes += mailboxes.read_mailbox_file(file)
    with _workspace(workspace) as ws:
        added = mailboxes.add_mailboxes(ws, boxes)
    out.print(f"{added:,} mailboxes added to the pool.")


@mailboxes_app.command("list")
def mailboxes_list(
    addresses: Annotated[
        bool, typer.Option("--addresses", help="List every address, not counts per provider.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the pool: mailboxes per provider and how many no canary has taken yet."""
    with _workspace(workspace) as ws:
        if addresses:
            boxes = mailboxes.list_mailboxes(ws)
            if json_out:
                _print_json([{"address": b.address, "used": used} for b, used in boxes])
                return
            table = Table("address", "used")
            for b, used in boxes:
                table.add_row(b.address, "yes" if used else "")
            out.print(table)
            return
        pools = mailboxes.pool_summary(ws)
    if json_out:
        _print_json([p.__dict__ for p in pools])
        return
    table = Table("provider", "mailboxes", "unused")
    for p in pools:
        table.add_row(p.domain, str(p.total), str(p.free))
    out.print(table)


@mailboxes_app.command("propose")
def mailboxes_propose(
    count: Annotated[int, typer.Option(min=1, help="How many mailboxes to propose.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write them (CSV).")],
    provider: Annotated[
        list[str] | None,
        typer.Option(help="A provider to propose at (repeat; default: well-known ones)."),
    ] = None,
    customers: Annotated[
        str,
        typer.Option(
            "--customers", help="Customers to look like, e.g. 'country=IT' (default: all)."
        ),
    ] = "",
    workspace: WorkspaceOpt = None,
) -> None:
    """Propose mailboxes to create, shaped like your customers' addresses.

    Providers and countries come in the customers' proportions, each with a name and
    birth year and a local part built the way customers build theirs. Create the
    mailboxes (change a local part the provider refuses, keeping its recipe), then
    register the file with 'canarino canaries mailboxes add --file'.
    """
    with _workspace(workspace) as ws:
        boxes = mailboxes.propose(ws, count, providers=provider, customer_filter=customers)
    mailboxes.write_mailbox_file(out_path, boxes)
    out.print(f"{len(boxes):,} mailboxes proposed in {out_path}; nothing is registered yet.")


@app.command("design")
def design_cmd(
    recipients: Annotated[int, typer.Option(help="How many recipients receive data.")],
    colluders: Annotated[int, typer.Option(help="Most recipients that may merge copies.")] = 1,
    smallest_leak: Annotated[
        float, typer.Option(help="Smallest leaked fraction of a share to catch, e.g. 0.02.")
    ] = 0.02,
    epsilon: Annotated[
        float, typer.Option(help="Accepted chance of accusing any innocent, per trace.")
    ] = 1e-6,
    miss: Annotated[float, typer.Option(help="Accepted chance of missing such a leak.")] = 0.01,
    noise: Annotated[
        float, typer.Option(help="Chance a canary shows up without its recipient leaking.")
    ] = 1e-6,
    tardos: Annotated[bool, typer.Option(help="Also size a Tardos-type layer.")] = False,
    trials: Annotated[
        int,
        typer.Option(
            min=0,
            help="Simulate this many leaks on the design (union, and intersection with "
            "colluders) and report measured detection and false accusations.",
        ),
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Size the canary design, then measure it with the built-in simulator."""
    try:
        design = plan(
            DesignInput(recipients, colluders, smallest_leak, epsilon, miss, noise, tardos)
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    results = []
    if trials:
        rng = np.random.default_rng(seed)
        attacks = ["union", "intersection"] if colluders > 1 else ["union"]
        with _progress("Simulating", json_mode=json_out) as tick:
            for i, attack in enumerate(attacks):
                tick(i, len(attacks))
                results.append(simulate(design, colluders, smallest_leak, attack, trials, rng))  # type: ignore[arg-type]
    if json_out:
        _print_json({**design.as_dict(), "simulation": [r.as_dict() for r in results]})
        return
    table = Table("layer", "per share", "pool", "bias q", "hits to accuse", "note")
    for lay in design.layers:
        table.add_row(
            lay.name,
            f"{lay.per_share:,}",
            f"{lay.pool:,}" if lay.pool else "-",
            f"{lay.bias:g}" if lay.bias else "-",
            (
                f"{lay.hits_needed} record / {lay.contact_hits} contact"
                if lay.name == "exclusive" and lay.hits_needed
                else str(lay.hits_needed or "-")
            ),
            lay.note,
        )
    out.print(table)
    out.print(
        f"{design.per_share:,} canaries per share; no design can use fewer than "
        f"{design.fano_bound:,.0f} in all (Fano bound); a single leaker's copy is caught from "
        f"{design.detection_limit:.2%} of a share; a combo list (one identifier column) "
        f"needs {design.contact_limit:.2%}."
    )
    if results:
        sim = Table(
            "attack",
            "trials",
            "all colluders named",
            "at least one",
            "innocents accused",
            title=f"Simulated leaks of {smallest_leak:.0%} of each share",
        )
        for r in results:
            sim.add_row(
                r.attack,
                f"{r.trials:,}",
                f"{r.p_all:.1%}",
                f"{r.p_any:.1%}",
                f"{r.innocents_accused:,} of {r.innocent_trials:,}",
            )
        out.print(sim)
