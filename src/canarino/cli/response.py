"""Commands of the response: incidents, their duties, and notices."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from .. import delivery, incidents, register, reports
from ..errors import InvalidInput
from ..fields import label
from ..obligations import format_remaining, next_due
from ..register import write_file
from .base import (
    JsonOpt,
    WorkspaceOpt,
    _print_json,
    _progress,
    _workspace,
    incidents_app,
    notices_app,
    out,
)

# --- incidents ---------------------------------------------------------------------------


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a date-time", hint="use ISO 8601, e.g. 2026-03-02T10:00+01:00"
        ) from None


@incidents_app.command("open")
def incidents_open(
    trace_id: Annotated[int, typer.Option("--trace", help="Trace the incident is about.")],
    title: Annotated[str | None, typer.Option(help="Short title.")] = None,
    aware_at: Annotated[
        str | None, typer.Option(help="When the company became aware (default: now).")
    ] = None,
    occurred_at: Annotated[
        str | None, typer.Option(help="When the breach happened, if known.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open an incident on a trace, with its affected people and deadlines."""
    with _workspace(workspace) as ws:
        view = incidents.open_incident(
            ws, trace_id, title=title, aware_at=_when(aware_at), occurred_at=_when(occurred_at)
        )
        _render_incident(view, ws.settings.timezone, json_out)


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show an incident: people affected, exposed data, deadlines, notices."""
    with _workspace(workspace) as ws:
        _render_incident(incidents.show_incident(ws, incident_id), ws.settings.timezone, json_out)


@incidents_app.command("list")
def incidents_list(workspace: WorkspaceOpt = None) -> None:
    """List incidents."""
    with _workspace(workspace) as ws:
        views = incidents.list_incidents(ws)
    now = datetime.now(UTC)
    table = Table("id", "title", "status", "people", "next deadline")
    for v in views:
        nxt = next_due(v.obligations)
        left = format_remaining(nxt.remaining(now)) if nxt else "none"
        table.add_row(str(v.id), v.title, v.status, f"{v.people:,}", left)
    out.print(table)


@incidents_app.command("risk")
def incidents_risk(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    level: Annotated[str, typer.Argument(help="none, risk or high_risk.")],
    reason: Annotated[str, typer.Option(help="Why: recorded with the assessment.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the risk assessment of an incident; its obligations are recomputed."""
    with _workspace(workspace) as ws:
        view = incidents.assess_risk(ws, incident_id, level, reason)
        _render_incident(view, ws.settings.timezone, json_out)


def _render_incident(view: incidents.IncidentView, tz: str, json_out: bool) -> None:
    now = datetime.now(UTC)
    if json_out:
        _print_json(view.as_dict(now, tz))
        return
    data = view.as_dict(now, tz)
    out.print(f"Incident #{view.id}: [bold]{view.title}[/] ({view.status})")
    out.print(f"  aware since {data['aware_at']}; occurred {data['occurred_at'] or 'unknown'}")
    out.print(f"  {view.people:,} people affected; from trace #{view.trace_id}")
    exposed = Table("data field", "people", title="Exposed data")
    for name, count in view.by_field.items():
        exposed.add_row(label(name, "en"), f"{count:,}")
    countries = Table("country", "people", title="Where they live")
    for country, count in view.by_country.items():
        countries.add_row(country, f"{count:,}")
    out.print(exposed, countries)
    out.print(f"  risk: [bold]{view.risk}[/] — {view.risk_reason}")
    deadlines = Table(
        "duty", "to", "due (local)", "time left", "status", "citation", title="Obligations"
    )
    for o in view.obligations:
        d = o.as_dict(now, tz)
        to = d["authority"] or o.recipient
        mark = "" if o.verification == "verified" else " [yellow](unverified)[/]"
        deadlines.add_row(
            f"{o.title or o.duty} [{o.jurisdiction}]",
            to,
            o.due_at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z") if o.due_at else "-",
            "-" if o.status == "done" else format_remaining(o.remaining(now)),
            o.status,
            o.citation + mark,
        )
    out.print(deadlines)
    if view.uncovered:
        out.print(
            "[yellow]No rule file covers: " + ", ".join(view.uncovered) + " — check these "
            "jurisdictions by hand.[/]"
        )
    if view.notices:
        out.print("Notices: " + ", ".join(f"{k} {v:,}" for k, v in sorted(view.notices.items())))


def _obligations_table(view: incidents.IncidentView, now: datetime) -> Table:
    table = Table(
        "duty",
        "to",
        "due (authority's time)",
        "time left",
        "status",
        "citation",
        title=f"Obligations of incident #{view.id}",
    )
    for o in view.obligations:
        due = (
            o.due_at.astimezone(ZoneInfo(o.timezone)).strftime("%Y-%m-%d %H:%M %Z")
            if o.due_at
            else "-"
        )
        left = "-" if o.status == "done" else format_remaining(o.remaining(now))
        mark = "" if o.verification == "verified" else " [yellow](unverified)[/]"
        status = o.status + (f" {o.done_at:%Y-%m-%d}" if o.done_at else "")
        to = o.authority.name if o.authority else o.recipient
        table.add_row(
            f"{o.title or o.duty}\n[dim]{o.key}[/]", to, due, left, status, o.citation + mark
        )
    return table


@incidents_app.command("obligations")
def incidents_obligations(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    why: Annotated[
        bool, typer.Option("--why", help="Also list rules not owed, with the reason.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List an incident's duties: deadlines in the authority's time zone, countdown, status, citation."""
    now = datetime.now(UTC)
    with _workspace(workspace) as ws:
        view = incidents.show_incident(ws, incident_id, now=now)
    if json_out:
        data = view.as_dict(now, "UTC")
        _print_json(
            {
                k: data[k]
                for k in ("id", "obligations", "not_owed", "withdrawn", "uncovered_jurisdictions")
            }
        )
        return
    out.print(_obligations_table(view, now))
    for entry in view.withdrawn:
        out.print(f"[dim]{entry['key']}: done, no longer owed under the current facts[/]")
    if why:
        for rule, reason in view.not_owed:
            out.print(f"[dim]not owed: {rule}: {reason}[/]")
    if view.uncovered:
        out.print("[yellow]No rule file covers: " + ", ".join(view.uncovered) + "[/]")


def _counts(items: list[str]) -> dict[str, int]:
    counts = {}
    for item in items:
        code, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise InvalidInput(f"--count {item!r} must look like CODE=NUMBER, e.g. US-TX=300")
        counts[code.strip()] = int(number)
    return counts


@incidents_app.command("facts")
def incidents_facts(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    reason: Annotated[str, typer.Option(help="Why the facts change: kept in the history.")],
    discovered_at: Annotated[
        str | None, typer.Option(help="When the breach was discovered.")
    ] = None,
    determined_at: Annotated[
        str | None, typer.Option(help="When it was determined to be a breach.")
    ] = None,
    occurred_at: Annotated[str | None, typer.Option(help="When it happened.")] = None,
    contained_at: Annotated[str | None, typer.Option(help="When it was contained.")] = None,
    encrypted: Annotated[
        bool | None,
        typer.Option("--encrypted/--not-encrypted", help="Whether the data were encrypted."),
    ] = None,
    key_exposed: Annotated[
        bool | None, typer.Option("--key-exposed/--key-safe", help="Whether the key leaked too.")
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(help="acquisition, access, disclosure, loss, availability… (repeat)."),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(help="Extra data category exposed, e.g. government_id (repeat)."),
    ] = None,
    count: Annotated[
        list[str] | None,
        typer.Option(help="People affected in a place, CODE=N, e.g. US-TX=300 (repeat)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What happened, for reports.")] = None,
    cause: Annotated[str | None, typer.Option(help="How it happened / how it was found.")] = None,
    consequences: Annotated[
        str | None, typer.Option(help="Likely consequences for people.")
    ] = None,
    measures: Annotated[str | None, typer.Option(help="Measures taken or proposed.")] = None,
    delay: Annotated[str | None, typer.Option(help="Reasons a notice is late.")] = None,
    parent_company: Annotated[
        str | None, typer.Option(help="Parent or affiliated company.")
    ] = None,
    security_program: Annotated[
        str | None, typer.Option(help="The written security program in place.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record new facts of an incident; duties are recomputed and what was done stays done."""
    texts = {
        k: v
        for k, v in {
            "description": description,
            "cause": cause,
            "consequences": consequences,
            "measures": measures,
            "delay": delay,
            "parent_company": parent_company,
            "security_program": security_program,
        }.items()
        if v is not None
    }
    with _workspace(workspace) as ws:
        view = incidents.update_facts(
            ws,
            incident_id,
            reason,
            discovered_at=_when(discovered_at),
            determined_at=_when(determined_at),
            occurred_at=_when(occurred_at),
            contained_at=_when(contained_at),
            encrypted=encrypted,
            key_exposed=key_exposed,
            events=event,
            categories=category,
            counts=_counts(count or []),
            texts=texts,
        )
        _render_incident(view, ws.settings.timezone, json_out)


@incidents_app.command("merge")
def incidents_merge(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    trace_id: Annotated[int, typer.Option("--trace", help="Trace whose people join the incident.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add the people of another trace to an incident; duties are recomputed."""
    with _workspace(workspace) as ws:
        view = incidents.merge_trace(ws, incident_id, trace_id)
        _render_incident(view, ws.settings.timezone, json_out)


@incidents_app.command("done")
def incidents_done(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    duty: Annotated[
        str, typer.Argument(help="Duty key (rule@place) or rule id, from 'obligations'.")
    ],
    at: Annotated[str | None, typer.Option(help="When it was done (default: now).")] = None,
    note: Annotated[str, typer.Option(help="Reference, e.g. the portal's case number.")] = "",
    reopen: Annotated[bool, typer.Option(help="Mark it pending again (a mistake).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Record that a duty was done, e.g. the authority was notified; kept in the history."""
    with _workspace(workspace) as ws:
        view = incidents.mark_obligation(
            ws, incident_id, duty, status="pending" if reopen else "done", at=_when(at), note=note
        )
    out.print(_obligations_table(view, datetime.now(UTC)))


@incidents_app.command("history")
def incidents_history(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every recorded assessment of an incident: why, and which duties came, went or changed."""
    with _workspace(workspace) as ws:
        entries = incidents.incident_history(ws, incident_id)
    if json_out:
        _print_json([e.as_dict() for e in entries])
        return
    table = Table("#", "when (UTC)", "why", "added", "removed", "changed", title="History")
    for e in entries:
        table.add_row(
            str(e.id),
            e.computed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            e.reason,
            "\n".join(e.added),
            "\n".join(e.removed),
            "\n".join(e.changed),
        )
    out.print(table)


@incidents_app.command("report")
def incidents_report(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    to: Annotated[
        str, typer.Option("--to", help="gdpr, garante, hhs, us-ca, us-ma, or a country code (FR).")
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: print).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html or json.")] = "md",
    workspace: WorkspaceOpt = None,
) -> None:
    """Draft the notification to an authority, filled from the incident, with the gaps listed."""
    with _workspace(workspace) as ws:
        report = incidents.draft_report(ws, incident_id, to)
    text = reports.render(report, fmt)
    if out_file is None:
        typer.echo(text, nl=False)  # plain: Rich would re-wrap the draft's lines
        return
    write_file(out_file, text.encode("utf-8"))
    out.print(f"Draft written to {out_file}: {len(report.gaps)} gaps to fill")


@incidents_app.command("calendar")
def incidents_calendar(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    out_file: Annotated[Path, typer.Option("--out", help="The .ics file to write.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Export the incident's deadlines as an iCalendar file, one event with alarms per deadline."""
    with _workspace(workspace) as ws:
        data = incidents.deadline_calendar(ws, incident_id)
    write_file(out_file, data)
    out.print(f"{data.count(b'BEGIN:VEVENT')} deadlines written to {out_file}")


@incidents_app.command("register")
def incidents_register(
    out_file: Annotated[Path, typer.Option("--out", help="register.xlsx or register.csv.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write the internal breach register (GDPR Art. 33(5)): every incident, owed or not."""
    with _workspace(workspace) as ws:
        count = register.export_register(ws, out_file)
    out.print(f"{count} incidents written to {out_file}")


# --- notices -----------------------------------------------------------------------------


@notices_app.command("prepare")
def notices_prepare(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    sms: Annotated[
        str | None,
        typer.Option(
            help="Text messages: never, fallback (people no e-mail reaches), always "
            "(default: the sms_when setting)."
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Render one notice per affected person, in their language, ready to send."""
    if sms is not None and sms not in delivery.SMS_POLICIES:
        raise InvalidInput(f"--sms {sms!r} must be one of never, fallback, always")
    with _workspace(workspace) as ws:
        report = delivery.prepare_notices(ws, incident_id, sms=sms)
    if json_out:
        _print_json(report.__dict__)
        return
    for line in report.summary():
        out.print(line, markup=False, highlight=False)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidInput(f"--smtp {text!r} must look like HOST:PORT")
    return host, int(port)


def _dkim(
    selector: str | None, domain: str | None, key_file: Path | None
) -> delivery.DkimKey | None:
    if not (key_file or selector or domain):
        return None
    if not (key_file and selector and domain):
        raise InvalidInput("DKIM needs --dkim-selector, --dkim-domain and --dkim-key together")
    try:
        return delivery.DkimKey(selector, domain, key_file.read_bytes())
    except OSError as exc:
        raise InvalidInput(f"{key_file}: cannot be read ({exc.strerror})") from None


@notices_app.command("send")
def notices_send(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    smtp: Annotated[str | None, typer.Option(help="SMTP relay as HOST:PORT (for e-mail).")] = None,
    channel: Annotated[
        str,
        typer.Option(help="email (through --smtp) or sms (through the sms_* provider settings)."),
    ] = "email",
    starttls: Annotated[bool, typer.Option(help="Upgrade the connection with STARTTLS.")] = False,
    username: Annotated[str | None, typer.Option(help="SMTP login name.")] = None,
    password: Annotated[
        str | None,
        typer.Option(envvar="CANARINO_SMTP_PASSWORD", help="SMTP password (better via the env)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Parallel SMTP connections.")] = 4,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Messages per second to each mailbox provider, or to the SMS provider "
            "(default: no cap).",
        ),
    ] = None,
    dkim_selector: Annotated[str | None, typer.Option(help="DKIM selector to sign with.")] = None,
    dkim_domain: Annotated[str | None, typer.Option(help="DKIM signing domain (d=).")] = None,
    dkim_key: Annotated[Path | None, typer.Option(help="PEM private key for DKIM.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send the prepared notices; a notice already sent is never sent again."""
    if channel not in ("email", "sms"):
        raise InvalidInput(f"--channel {channel!r} must be email or sms")
    if channel == "sms":
        with _workspace(workspace) as ws, _progress("Texting", json_mode=json_out) as tick:
            report = delivery.send_sms(
                ws, incident_id, progress=tick, workers=min(workers, 8), rate=rate
            )
        _print_send(report, json_out)
        return
    if smtp is None:
        raise InvalidInput("e-mail needs the relay: add --smtp HOST:PORT")
    host, port = _host_port(smtp)
    key = _dkim(dkim_selector, dkim_domain, dkim_key)
    with _workspace(workspace) as ws, _progress("Sending", json_mode=json_out) as tick:
        report = delivery.send_notices(
            ws,
            incident_id,
            host=host,
            port=port,
            progress=tick,
            starttls=starttls,
            username=username,
            password=password,
            workers=workers,
            rate_per_provider=rate,
            dkim_key=key,
        )
    _print_send(report, json_out)


def _print_send(report: delivery.SendReport, json_out: bool) -> None:
    if json_out:
        _print_json(report.__dict__)
        return
    for line in report.summary():
        out.print(line, markup=False, highlight=False)


@notices_app.command("in-doubt")
def notices_in_doubt(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """List notices a stopped run left in 'sending': delivered or not, nobody knows yet."""
    with _workspace(workspace) as ws:
        rows = delivery.in_doubt_notices(ws, incident_id)
    if not rows:
        out.print("No notice is in doubt.")
        return
    table = Table("notice", "Message-ID", "attempts", "lease until", "last error")
    for row in rows:
        lease = row.lease_until.isoformat(timespec="seconds") if row.lease_until else "-"
        table.add_row(
            str(row.notice_id), row.message_id, str(row.attempts), lease, row.last_error or ""
        )
    out.print(table)


@notices_app.command("resolve")
def notices_resolve(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    action: Annotated[str, typer.Argument(help="resend (same Message-ID) or mark_sent.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Resolve the in-doubt notices after checking the relay's log."""
    if action not in ("resend", "mark_sent"):
        raise InvalidInput("the action is 'resend' or 'mark_sent'")
    with _workspace(workspace) as ws:
        settled = delivery.resolve_in_doubt(ws, incident_id, action)  # type: ignore[arg-type]
    out.print(f"{settled:,} notices settled ({action})")


@notices_app.command("bounces")
def notices_bounces(
    file: Annotated[Path, typer.Argument(help="Bounce messages: an mbox or an EML file.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record delivery failure reports; a hard bounce moves the person to a letter."""
    if not file.is_file():
        raise InvalidInput(f"{file}: no such file")
    with _workspace(workspace) as ws:
        report = delivery.record_bounces(ws, file)
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.__dict__.items()))


@notices_app.command("bounces-imap")
def notices_bounces_imap(
    host: Annotated[str, typer.Option(help="IMAP server of the bounce mailbox.")],
    user: Annotated[str, typer.Option(help="Mailbox user name (often its address).")],
    password_env: Annotated[
        str, typer.Option(help="Name of the environment variable that holds the password.")
    ],
    folder: Annotated[str, typer.Option(help="Folder to read.")] = "INBOX",
    port: Annotated[
        int | None, typer.Option(help="Port (default: 993, or 143 with --no-ssl).")
    ] = None,
    ssl: Annotated[bool, typer.Option("--ssl/--no-ssl", help="Use TLS (IMAPS).")] = True,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read the unseen messages of the bounce mailbox (IMAP), record them, mark them seen."""
    password = os.environ.get(password_env)
    if not password:
        raise InvalidInput(
            f"the environment variable {password_env} is not set or empty",
            hint=f"export {password_env}=… first, so the password stays off the command line",
        )
    with _workspace(workspace) as ws:
        report = delivery.fetch_bounces(
            ws, host, user, password, folder=folder, port=port, use_ssl=ssl
        )
    if json_out:
        _print_json(report.__dict__)
        return
    out.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.__dict__.items()))


@notices_app.command("letters")
def notices_letters(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the print-ready batches.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write queued letters as print-ready batches (PDF with WeasyPrint, else HTML)."""
    with _workspace(workspace) as ws:
        report = delivery.print_letters(ws, incident_id, out_dir)
    out.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.__dict__.items()))


@notices_app.command("problems")
def notices_problems(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List every notice that failed, bounced or differs from plan, with the reason."""
    with _workspace(workspace) as ws:
        rows = delivery.notice_problems(ws, incident_id)
    if json_out:
        _print_json([row.__dict__ for row in rows])
        return
    if not rows:
        out.print("No notice has a problem.")
        return
    table = Table("notice", "channel", "state", "reason")
    for row in rows:
        table.add_row(str(row.notice_id), row.channel, row.state, row.reason)
    out.print(table)


@notices_app.command("report")
def notices_report(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    to: Annotated[
        str, typer.Option("--to", help="gdpr, garante, hhs, us-ca, us-ma, or a country code (FR).")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Export the report into this folder.")
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Or e-mail it to this address of the authority.")
    ] = None,
    smtp: Annotated[
        str | None, typer.Option(help="SMTP relay as HOST:PORT (with --email).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html or json (with --out).")] = "md",
    starttls: Annotated[bool, typer.Option(help="Upgrade the connection with STARTTLS.")] = False,
    username: Annotated[str | None, typer.Option(help="SMTP login name.")] = None,
    password: Annotated[
        str | None,
        typer.Option(envvar="CANARINO_SMTP_PASSWORD", help="SMTP password (better via the env)."),
    ] = None,
    dkim_selector: Annotated[str | None, typer.Option(help="DKIM selector to sign with.")] = None,
    dkim_domain: Annotated[str | None, typer.Option(help="DKIM signing domain (d=).")] = None,
    dkim_key: Annotated[Path | None, typer.Option(help="PEM private key for DKIM.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export an authority report to a folder or e-mail it via the relay; the delivery is recorded."""
    if (out_dir is None) == (email is None):
        raise InvalidInput("give either --out FOLDER or --email ADDRESS with --smtp HOST:PORT")
    with _workspace(workspace) as ws:
        if out_dir is not None:
            done = delivery.export_report(ws, incident_id, to, out_dir, fmt=fmt)
        else:
            if smtp is None:
                raise InvalidInput("--email needs --smtp HOST:PORT")
            host, port = _host_port(smtp)
            done = delivery.send_report(
                ws,
                incident_id,
                to,
                email or "",
                host=host,
                port=port,
                starttls=starttls,
                username=username,
                password=password,
                dkim_key=_dkim(dkim_selector, dkim_domain, dkim_key),
            )
    if json_out:
        _print_json(done.as_dict())
        return
    where = done.file or done.message_id
    out.print(f"report {done.form} to {done.authority}: {done.state} ({where})", markup=False)
    if done.reason:
        out.print(f"reason: {done.reason}", markup=False)
    if done.gaps:
        out.print(f"{done.gaps} gaps to fill before filing", markup=False)


@notices_app.command("reports")
def notices_reports(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List every export and sending of an incident's authority reports."""
    with _workspace(workspace) as ws:
        rows = delivery.report_deliveries(ws, incident_id)
    if json_out:
        _print_json([row.as_dict() for row in rows])
        return
    if not rows:
        out.print("No report has been exported or sent.")
        return
    table = Table("at", "form", "to", "channel", "state", "file or Message-ID", "reason")
    for row in rows:
        table.add_row(
            row.at.isoformat(timespec="seconds"),
            row.form,
            row.to or row.authority,
            row.channel,
            row.state,
            row.file or row.message_id or "",
            row.reason or "",
        )
    out.print(table)


@notices_app.command("status")
def notices_status(
    incident_id: Annotated[int, typer.Argument(help="Incident number.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Count an incident's notices by delivery state."""
    with _workspace(workspace) as ws:
        states = delivery.notice_states(ws, incident_id)
    for state, count in sorted(states.items()):
        out.print(f"{state}: {count:,}")
