"""Breach notices to affected people: rendering only, no storage and no sending.

A notice follows the California headings (What happened, What information was involved,
What we are doing, What you can do, For more information) and carries what GDPR Art. 34
asks for: the nature of the breach, the contact of the data protection officer, the likely
consequences and the measures taken. It names exactly the fields of *this* person that
were exposed, and no other personal data than the name in the greeting.

Templates live in ``templates/notices/`` as ``email.<lang>.txt``, ``email.<lang>.html``
and ``subject.<lang>.txt``; a language without all three falls back to English.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .fields import BY_NAME, FIELD_NAMES, label

FALLBACK_LANGUAGE = "en"
NOTICE_VERSION = "v1"

_ENV = Environment(
    loader=PackageLoader("canarino", "templates/notices"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class NoticeContext:
    """Everything one person's notice says: who they are, what leaked, who writes.

    ``name`` is the display name for the greeting (empty for a generic greeting);
    ``exposed_fields`` are canonical field names; ``what_happened`` replaces the standard
    description and must already be in the notice's language.
    """

    name: str
    language: str
    exposed_fields: Sequence[str]
    company_name: str
    company_email: str
    dpo_contact: str
    aware_on: date
    occurred_on: date | None = None
    what_happened: str | None = None


@dataclass(frozen=True)
class RenderedNotice:
    """A notice ready to send; ``fallback`` is true when the asked language had no template."""

    subject: str
    text: str
    html: str
    language: str
    fallback: bool = False


@cache
def supported_languages() -> frozenset[str]:
    """Languages with a complete set of notice templates."""
    names = set(_ENV.list_templates())
    found = {n.split(".")[1] for n in names if n.startswith("email.") and n.count(".") == 2}
    return frozenset(
        lang
        for lang in found
        if {f"email.{lang}.txt", f"email.{lang}.html", f"subject.{lang}.txt"} <= names
    )


def choose_language(language: str | None) -> tuple[str, bool]:
    """Return the template language for ``language`` and whether it is a fallback."""
    base = (language or "").replace("_", "-").split("-")[0].strip().lower()
    if base in supported_languages():
        return base, False
    return FALLBACK_LANGUAGE, True


def ordered_fields(fields: Sequence[str]) -> list[str]:
    """Return ``fields`` deduplicated, in the canonical order notices list them in."""
    unknown = [f for f in fields if f not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown field names: {', '.join(sorted(set(unknown)))}")
    wanted = set(fields)
    return [f for f in FIELD_NAMES if f in wanted]


def _on_date(day: date, language: str) -> str:
    """``day`` as the complement of 'it happened …' in ``language``."""
    if language == "it":
        text = format_date(day, format="long", locale="it")
        if day.day == 1:
            return "il 1º" + text[1:]
        # Italian elides the article before a vowel sound: l'8, l'11.
        return ("l'" if day.day in (8, 11) else "il ") + text
    return "on " + format_date(day, format="long", locale="en")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_notice(ctx: NoticeContext) -> RenderedNotice:
    """Render the subject, plain text and HTML of one person's notice."""
    language, fallback = choose_language(ctx.language)
    exposed = ordered_fields(ctx.exposed_fields)
    if not exposed:
        raise ValueError("a notice needs at least one exposed field")
    values = {
        "name": _one_line(ctx.name),
        "company_name": _one_line(ctx.company_name),
        "company_email": ctx.company_email.strip(),
        "dpo_contact": ctx.dpo_contact.strip(),
        "aware_on": _on_date(ctx.aware_on, language),
        "occurred_on": _on_date(ctx.occurred_on, language) if ctx.occurred_on else None,
        "what_happened": (ctx.what_happened or "").strip() or None,
        "labels": [label(f, language) for f in exposed],
        "exposed": frozenset(exposed),
    }
    subject = _one_line(_ENV.get_template(f"subject.{language}.txt").render(values))
    text = _ENV.get_template(f"email.{language}.txt").render(values)
    html = _ENV.get_template(f"email.{language}.html").render(values)
    return RenderedNotice(
        subject=subject,
        text=_BLANK_RUNS.sub("\n\n", text).strip() + "\n",
        html=_BLANK_RUNS.sub("\n\n", html).strip() + "\n",
        language=language,
        fallback=fallback,
    )


def idempotency_key(incident_id: int, customer_id: int, channel: str) -> str:
    """The stable key of one notice: the same person, incident and channel give the same key."""
    if not channel or ":" in channel:
        raise ValueError("channel must be a plain name such as 'email'")
    raw = f"canarino notice {NOTICE_VERSION}:{incident_id}:{customer_id}:{channel}"
    return hashlib.sha256(raw.encode()).hexdigest()


def message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID header of a notice: ``<key@domain>``, the same on every attempt."""
    key, domain = idempotency_key.strip(), domain.strip().lower()
    if not key or not domain or any(c in key + domain for c in "<>@ \r\n"):
        raise ValueError("message_id needs a plain key and a mail domain")
    return f"<{key}@{domain}>"
