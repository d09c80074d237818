from __future__ import annotations

import re
from pathlib import Path

import pytest

from canarino.web import i18n

TEMPLATES = Path(i18n.__file__).parent / "templates"


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, "it-IT,it;q=0.9,en;q=0.8", "it"),
        (None, "en-GB,en;q=0.9,it;q=0.8", "en"),
        (None, "de-DE,de;q=0.9,it;q=0.5", "it"),
        (None, "fr-FR", "en"),
        (None, "it;q=0, en;q=0.1", "en"),
        (None, "it;q=bogus", "en"),
        (None, "", "en"),
        (None, None, "en"),
        ("it", "en", "it"),
        ("xx", "it", "it"),
        (None, ";;;,,,q=", "en"),
    ],
)
def test_language_negotiation(cookie: str | None, header: str | None, expected: str) -> None:
    assert i18n.negotiate(cookie, header) == expected


def test_translator_falls_back_to_english_and_fills_values() -> None:
    assert i18n.translator("it")("Overview") == "Panoramica"
    assert i18n.translator("it")("Not in the catalogue") == "Not in the catalogue"
    assert i18n.translator("en")("{n} people", n=3) == "3 people"


def test_every_text_in_the_templates_has_an_italian_translation() -> None:
    texts: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        texts |= set(re.findall(r"""t\(["']([^"']+)["']\)""", template.read_text()))
        texts |= set(re.findall(r"""\("[a-z_]+", "([A-Z][^"]+)"\)""", template.read_text()))
    missing = sorted(t for t in texts if t not in i18n.IT)
    assert not missing, missing
