"""Draft notifications to authorities, filled from an incident, with the gaps listed. Pure.

A form is data: sections of fields, each filled from the incident (its JSON form, as
``IncidentView.as_dict`` gives it) and the notifier's details. A field the incident cannot
fill is a *gap*, listed with the command that fills it; nothing is invented. Forms:

- ``gdpr``: GDPR Art. 33(3) contents, for any EU/EEA supervisory authority;
- ``garante``: the sections of the Garante's online notification (servizi.gpdp.it);
- ``hhs``: the HHS OCR breach portal (HIPAA 45 CFR 164.408);
- ``us-ca``: the California AG's sample-notice submission (Civ. Code 1798.82(f));
- ``us-ma``: the Massachusetts AG and OCABR notice (M.G.L. c. 93H s. 3(b)).

Drafts carry aggregates only (counts, categories, dates), never a person's data.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .errors import InvalidInput
from .fields import BY_NAME

Format = Literal["md", "html", "json"]
FORMATS: tuple[str, ...] = ("md", "html", "json")
Getter = Callable[["_Context"], str | None]


@dataclass(frozen=True)
class Notifier:
    """Who files the notification: the company and its data protection officer."""

    name: str
    contact: str
    dpo: str


@dataclass(frozen=True)
class FormField:
    """One field of a form: its label, how the incident fills it, how to fill a gap."""

    label: str
    fill: Getter
    fix: str = ""
    required: bool = True


@dataclass(frozen=True)
class Form:
    """An authority's notification form as sections of fields, with its provenance."""

    name: str
    title: str
    basis: str
    verification: str
    verification_note: str
    sections: tuple[tuple[str, tuple[FormField, ...]], ...]
    # Which obligations this form answers: rule-id prefixes.
    rules: tuple[str, ...]


@dataclass
class Report:
    """A drafted notification: filled sections, the gaps, and the duties it answers."""

    form: str
    title: str
    authority: str
    basis: str
    verification: str
    verification_note: str
    incident_id: int
    drafted_at: str
    sections: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    duties: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Context:
    incident: Mapping[str, Any]
    notifier: Notifier
    target: str
    tz: str
    duties: tuple[Mapping[str, Any], ...]

    def fact(self, name: str) -> str | None:
        value = self.incident.get("facts", {}).get(name)
        return str(value) if value not in (None, "") else None

    def when(self, name: str) -> str | None:
        value = self.incident.get(name)
        if not value:
            return None
        local = datetime.fromisoformat(value).astimezone(ZoneInfo(self.tz))
        return local.strftime("%Y-%m-%d %H:%M %Z")

    def people(self, code: str | None = None) -> int:
        counts = dict(self.incident.get("by_jurisdiction", {}))
        counts.update(self.incident.get("facts", {}).get("counts") or {})
        counts.pop("unknown", None)
        if code is None:
            return max(int(self.incident.get("people", 0)), sum(counts.values()))
        return sum(n for c, n in counts.items() if c == code or c.startswith(code + "-"))

    def categories(self) -> str | None:
        names = [BY_NAME[f].label_en if f in BY_NAME else f for f in self.incident["by_field"]]
        extra = self.incident.get("facts", {}).get("categories") or []
        text = ", ".join([*names, *(c.replace("_", " ") for c in extra)])
        return text or None

    def done(self, recipient: str) -> str | None:
        for duty in self.incident.get("obligations", []):
            if duty["recipient"] == recipient and duty.get("status") == "done":
                return f"done on {duty['done_at']} ({duty['rule_id']})"
        return None

    def late(self) -> bool:
        now = datetime.fromisoformat(self.incident["drafted_at"])
        return any(
            d.get("due_at") and datetime.fromisoformat(d["due_at"]) < now
            for d in self.duties
            if d.get("status") != "done"
        )


def _text(name: str) -> Getter:
    return lambda c: c.fact(name)


def _time(name: str) -> Getter:
    return lambda c: c.when(name)


def _const(value: str) -> Getter:
    return lambda c: value


def _people(c: _Context) -> str | None:
    total = c.people()
    return f"{total:,}" if total else None


def _people_here(c: _Context) -> str | None:
    count = c.people(c.target)
    return f"{count:,}" if count else None


def _records(c: _Context) -> str | None:
    total = c.people()
    return f"at least {total:,} (one record per affected person)" if total else None


def _nature(c: _Context) -> str | None:
    description = c.fact("description")
    if description is None:
        return None
    events = ", ".join(c.incident.get("facts", {}).get("events") or ["acquisition"])
    return f"{description} (events: {events})"


def _consequences(c: _Context) -> str | None:
    text = c.fact("consequences")
    risk = c.incident.get("risk")
    reason = c.incident.get("risk_reason")
    assessed = f"risk level {risk}: {reason}" if risk and reason else None
    parts = [p for p in (text, assessed) if p]
    return "; ".join(parts) or None


def _encryption(c: _Context) -> str:
    facts = c.incident.get("facts", {})
    if not facts.get("encrypted"):
        return "not encrypted (or not recorded)"
    return "encrypted; key exposed" if facts.get("key_exposed") else "encrypted; key not exposed"


def _delay(c: _Context) -> str | None:
    if not c.late():
        return "not late"
    return c.fact("delay")


def _individuals(c: _Context) -> str | None:
    done = c.done("individuals")
    if done:
        return done
    owed = any(d["recipient"] == "individuals" for d in c.incident.get("obligations", []))
    return "planned, not yet done" if owed else "not required under the current facts"


def _jurisdictions(c: _Context) -> str | None:
    codes = set(c.incident.get("by_jurisdiction", {}))
    codes |= set(c.incident.get("facts", {}).get("counts") or {})
    return ", ".join(sorted(codes - {"unknown"})) or None


def _notifier(c: _Context) -> str:
    return f"{c.notifier.name} <{c.notifier.contact}>"


def _dpo(c: _Context) -> str:
    return c.notifier.dpo


_FACTS = "canarino incidents facts ID --reason ... "
_TIMES = "canarino incidents facts ID --discovered-at ... --contained-at ..."

FORMS: dict[str, Form] = {
    "gdpr": Form(
        "gdpr",
        "Personal data breach notification (GDPR Art. 33)",
        "Regulation (EU) 2016/679, Art. 33(1), (3), (4)",
        "verified",
        "Art. 33(3)(a)-(d) contents checked in the Regulation text.",
        (
            (
                "Notifier",
                (
                    FormField("Controller", _notifier),
                    FormField("DPO or other contact point (Art. 33(3)(b))", _dpo),
                ),
            ),
            (
                "Nature of the breach (Art. 33(3)(a))",
                (
                    FormField("Description", _nature, _FACTS + "--description TEXT"),
                    FormField("Categories of data subjects", _const("customers")),
                    FormField("Approximate number of data subjects", _people),
                    FormField("Categories of personal data", lambda c: c.categories()),
                    FormField("Approximate number of records", _records),
                    FormField("Member states where data subjects live", _jurisdictions),
                ),
            ),
            (
                "Timeline",
                (
                    FormField("When it occurred", _time("occurred_at"), _TIMES),
                    FormField("When the controller became aware", _time("aware_at")),
                    FormField("When it was contained", _time("contained_at"), _TIMES, False),
                    FormField(
                        "Reasons for a notice after 72 hours (Art. 33(1))",
                        _delay,
                        _FACTS + "--delay TEXT",
                    ),
                ),
            ),
            (
                "Likely consequences (Art. 33(3)(c))",
                (
                    FormField(
                        "Consequences and risk", _consequences, _FACTS + "--consequences TEXT"
                    ),
                ),
            ),
            (
                "Measures (Art. 33(3)(d))",
                (
                    FormField(
                        "Measures taken or proposed, including mitigation",
                        _text("measures"),
                        _FACTS + "--measures TEXT",
                    ),
                    FormField("Encryption", _encryption),
                    FormField("Communication to data subjects (Art. 34)", _individuals),
                ),
            ),
        ),
        ("eu.gdpr.art33.authority",),
    ),
    "garante": Form(
        "garante",
        "Notifica di violazione dei dati personali al Garante (servizi.gpdp.it)",
        "GDPR Art. 33; Garante, provvedimento n. 209 del 27 maggio 2021 (procedura telematica)",
        "unverified",
        "Section headings follow the Garante's notification model as summarised by secondary "
        "sources; the portal's current form was not opened. Check the fields on the portal.",
        (
            (
                "A. Titolare del trattamento / notificante",
                (
                    FormField("Titolare (denominazione e contatti)", _notifier),
                    FormField("Responsabile della protezione dei dati (RPD/DPO)", _dpo),
                ),
            ),
            (
                "B. Informazioni di sintesi",
                (
                    FormField(
                        "Tipo di notifica",
                        lambda c: (
                            "preliminare (integrabile)"
                            if c.fact("measures") is None
                            else "completa"
                        ),
                    ),
                    FormField("Data della violazione", _time("occurred_at"), _TIMES),
                    FormField(
                        "Data in cui il titolare ne è venuto a conoscenza", _time("aware_at")
                    ),
                    FormField(
                        "Modalità con cui se ne è venuti a conoscenza",
                        _text("cause"),
                        _FACTS + "--cause TEXT",
                    ),
                    FormField("Motivi del ritardo (oltre 72 ore)", _delay, _FACTS + "--delay TEXT"),
                ),
            ),
            (
                "C. Informazioni di dettaglio",
                (
                    FormField(
                        "Descrizione della violazione", _nature, _FACTS + "--description TEXT"
                    ),
                    FormField("Categorie di interessati", _const("clienti")),
                    FormField("Numero (approssimativo) di interessati", _people),
                    FormField("Categorie di dati personali", lambda c: c.categories()),
                    FormField("Numero (approssimativo) di registrazioni", _records),
                    FormField("Paesi degli interessati", _jurisdictions),
                ),
            ),
            (
                "D. Possibili conseguenze e gravità",
                (
                    FormField(
                        "Conseguenze probabili", _consequences, _FACTS + "--consequences TEXT"
                    ),
                ),
            ),
            (
                "E. Misure adottate o proposte",
                (
                    FormField(
                        "Misure tecniche e organizzative",
                        _text("measures"),
                        _FACTS + "--measures TEXT",
                    ),
                    FormField("Cifratura", _encryption),
                ),
            ),
            (
                "F. Comunicazione agli interessati",
                (FormField("Comunicazione (art. 34)", _individuals),),
            ),
        ),
        ("eu.gdpr.art33.authority", "it.eprivacy.reg611.authority", "it.eprivacy.reg611.second"),
    ),
    "hhs": Form(
        "hhs",
        "HHS OCR breach report (HIPAA Breach Notification Rule)",
        "45 CFR 164.408; OCR breach portal",
        "unverified",
        "Field list from the OCR breach portal as known from background knowledge; the "
        "portal was not opened. 164.404(c) contents are verified.",
        (
            (
                "Covered entity",
                (
                    FormField("Name and contact", _notifier),
                    FormField("Privacy officer / contact", _dpo),
                ),
            ),
            (
                "Breach",
                (
                    FormField("Breach start date", _time("occurred_at"), _TIMES),
                    FormField("Date of discovery", _time("discovered_at"), _TIMES),
                    FormField("Approximate number of individuals affected", _people),
                    FormField("Type of breach", _text("cause"), _FACTS + "--cause TEXT"),
                    FormField("Type of PHI involved", lambda c: c.categories()),
                    FormField("Brief description", _nature, _FACTS + "--description TEXT"),
                ),
            ),
            (
                "Notice and actions",
                (
                    FormField("Individual notice", _individuals),
                    FormField(
                        "Media notice (more than 500 residents of a State)",
                        lambda c: c.done("media") or "see the media duties below",
                    ),
                    FormField(
                        "Actions taken in response", _text("measures"), _FACTS + "--measures TEXT"
                    ),
                    FormField("Encryption (secured PHI is outside the rule)", _encryption),
                ),
            ),
        ),
        ("us.hipaa.164-408",),
    ),
    "us-ca": Form(
        "us-ca",
        "California Attorney General — sample copy of the resident notice",
        "Cal. Civ. Code § 1798.82(f)",
        "unverified",
        "Fields of the AG's online submission from background knowledge; the form was not opened.",
        (
            (
                "Organization",
                (FormField("Name and contact", _notifier),),
            ),
            (
                "Breach",
                (
                    FormField("Date(s) of breach", _time("occurred_at"), _TIMES),
                    FormField("Date of discovery", _time("discovered_at"), _TIMES),
                    FormField("California residents notified", _people_here),
                    FormField(
                        "Date residents were notified",
                        lambda c: c.done("individuals"),
                        "canarino incidents done ID us-ca.individuals.2026",
                    ),
                    FormField(
                        "Notice delayed for law enforcement",
                        _text("delay"),
                        _FACTS + "--delay TEXT",
                        False,
                    ),
                    FormField(
                        "Sample notice",
                        _const("attach the resident notice (canarino notices prepare)"),
                    ),
                ),
            ),
        ),
        ("us-ca.ag",),
    ),
    "us-ma": Form(
        "us-ma",
        "Massachusetts Attorney General and OCABR — security breach notice",
        "M.G.L. c. 93H, § 3(b)",
        "verified",
        "Items (i)-(ix) of s. 3(b) checked in the statute text; the online form's layout was not opened.",
        (
            (
                "Notifier",
                (
                    FormField("Person or agency, name and address", _notifier),
                    FormField(
                        "Parent or affiliated corporation",
                        _text("parent_company"),
                        _FACTS + "--parent-company TEXT",
                        False,
                    ),
                ),
            ),
            (
                "Breach",
                (
                    FormField(
                        "Nature of the breach or unauthorized acquisition or use",
                        _nature,
                        _FACTS + "--description TEXT",
                    ),
                    FormField("Number of Massachusetts residents affected", _people_here),
                    FormField(
                        "Types of personal information compromised", lambda c: c.categories()
                    ),
                    FormField("Date of discovery", _time("discovered_at"), _TIMES),
                ),
            ),
            (
                "Response",
                (
                    FormField(
                        "Steps taken or planned", _text("measures"), _FACTS + "--measures TEXT"
                    ),
                    FormField(
                        "Written information security program maintained",
                        _text("security_program"),
                        _FACTS + "--security-program TEXT",
                    ),
                    FormField(
                        "Credit monitoring offered",
                        lambda c: next((r for d in c.duties for r in d.get("remedies", [])), None),
                        "",
                        False,
                    ),
                ),
            ),
        ),
        ("us-ma.regulators",),
    ),
}

# A jurisdiction code given to --to picks its form (EU/EEA members take the GDPR form).
_BY_CODE = {"IT": "garante", "US": "hhs", "US-CA": "us-ca", "US-MA": "us-ma"}


def form_names() -> list[str]:
    """The forms a report can be drafted on."""
    return sorted(FORMS)


def resolve_form(to: str, eu_members: Mapping[str, str]) -> tuple[Form, str]:
    """The form and the jurisdiction code for ``--to`` (a form name or a code)."""
    key = to.strip()
    if key.lower() in FORMS:
        form = FORMS[key.lower()]
        code = {"garante": "IT", "hhs": "US", "us-ca": "US-CA", "us-ma": "US-MA"}.get(
            form.name, "EU"
        )
        return form, code
    code = key.upper()
    if code in _BY_CODE:
        return FORMS[_BY_CODE[code]], code
    if code in eu_members:
        return FORMS["gdpr"], code
    raise InvalidInput(
        f"no report form for {to!r}",
        hint=f"use one of {', '.join(form_names())} or an EU/EEA country code such as FR",
    )


def draft_report(
    incident: Mapping[str, Any],
    to: str,
    notifier: Notifier,
    *,
    eu_members: Mapping[str, str],
    drafted_at: datetime,
    tz: str = "UTC",
) -> Report:
    """Fill the form for ``to`` from an incident's JSON form; unfilled fields become gaps."""
    form, code = resolve_form(to, eu_members)
    incident = {**incident, "drafted_at": drafted_at.isoformat()}
    duties = tuple(
        d
        for d in incident.get("obligations", [])
        if d["rule_id"].startswith(form.rules)
        and d["recipient"] in ("authority", "regulator")
        and (code in ("EU", "US") or d["jurisdiction"] in (code, "EU", "US"))
    )
    context = _Context(incident, notifier, code, tz, duties)
    authority = next((d["authority"] for d in duties if d.get("authority")), None)
    authority = authority or eu_members.get(code) or form.title
    report = Report(
        form=form.name,
        title=form.title,
        authority=authority,
        basis=form.basis,
        verification=form.verification,
        verification_note=form.verification_note,
        incident_id=int(incident["id"]),
        drafted_at=drafted_at.isoformat(timespec="seconds"),
    )
    for heading, fields in form.sections:
        rows = []
        for spec in fields:
            value = spec.fill(context)
            rows.append({"label": spec.label, "value": value, "required": spec.required})
            if value in (None, "") and spec.required:
                fix = f" — fill it with: {spec.fix}" if spec.fix else ""
                report.gaps.append(f"{heading}: {spec.label}{fix}")
        report.sections.append({"heading": heading, "fields": rows})
    for d in duties:
        report.duties.append(
            {
                key: d.get(key)
                for key in (
                    "key",
                    "rule_id",
                    "title",
                    "due_at",
                    "due_authority_time",
                    "status",
                    "citation",
                    "verification",
                )
            }
        )
        if d.get("verification") != "verified":
            report.warnings.append(
                f"{d['rule_id']} is unverified: {d.get('verification_note', '')}"
            )
    if not duties:
        report.warnings.append(
            "no duty to notify this authority under the current facts: this would be a voluntary notice"
        )
    if form.verification != "verified":
        report.warnings.append(f"form layout unverified: {form.verification_note}")
    return report


def render(report: Report, fmt: str) -> str:
    """The draft as Markdown, HTML or JSON."""
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "md":
        return _markdown(report)
    if fmt == "html":
        return _html(report)
    raise InvalidInput(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def _shown(value: Any) -> str:
    return "**GAP — not known yet**" if value in (None, "") else str(value)


def _markdown(report: Report) -> str:
    lines = [
        f"# {report.title}",
        "",
        f"To: {report.authority}  ",
        f"Basis: {report.basis} ({report.verification})  ",
        f"Incident #{report.incident_id}, draft of {report.drafted_at}",
        "",
    ]
    lines += [f"> ⚠ {w}" for w in report.warnings] + ([""] if report.warnings else [])
    for section in report.sections:
        lines += [f"## {section['heading']}", ""]
        for row in section["fields"]:
            value = row["value"] if row["value"] or row["required"] else "(optional, not given)"
            lines.append(f"- **{row['label']}**: {_shown(value)}")
        lines.append("")
    lines += ["## Duties this notice answers", ""]
    for d in report.duties:
        mark = "" if d["verification"] == "verified" else " (UNVERIFIED)"
        lines.append(
            f"- `{d['key']}` {d['title']}: due {d['due_authority_time'] or 'without undue delay'}, "
            f"{d['status']}; {d['citation']}{mark}"
        )
    lines += ["", "## Gaps to fill before filing", ""]
    lines += [f"- {gap}" for gap in report.gaps] or ["- none"]
    return "\n".join(lines) + "\n"


def _html(report: Report) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(report.title)}</title></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f"<p>To: {e(report.authority)}<br>Basis: {e(report.basis)} ({e(report.verification)})"
        f"<br>Incident #{report.incident_id}, draft of {e(report.drafted_at)}</p>",
    ]
    parts += [f"<p class='warning'>⚠ {e(w)}</p>" for w in report.warnings]
    for section in report.sections:
        parts.append(f"<h2>{e(section['heading'])}</h2><dl>")
        for row in section["fields"]:
            value = row["value"]
            shown = e(str(value)) if value else "<strong class='gap'>GAP — not known yet</strong>"
            parts.append(f"<dt>{e(row['label'])}</dt><dd>{shown}</dd>")
        parts.append("</dl>")
    parts.append("<h2>Duties this notice answers</h2><ul>")
    for d in report.duties:
        mark = "" if d["verification"] == "verified" else " <strong>(UNVERIFIED)</strong>"
        due = d["due_authority_time"] or "without undue delay"
        parts.append(
            f"<li><code>{e(d['key'])}</code> {e(d['title'])}: due {e(due)}, "
            f"{e(d['status'])}; {e(d['citation'])}{mark}</li>"
        )
    parts.append("</ul><h2>Gaps to fill before filing</h2><ul>")
    parts += [f"<li>{e(gap)}</li>" for gap in report.gaps] or ["<li>none</li>"]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
