"""Every text the portal shows exists in French and Dutch (no browser needed).

Messages are extracted from the templates and the Python code with Babel, the same way a
translator would (`_()`, `N_()`, `t()`), and looked up in the .po catalogues."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from dossier.portal import i18n

PORTAL = Path(i18n.__file__).parent
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def portal_messages() -> set[str]:
    found = extract_from_dir(
        str(PORTAL), [("templates/**.html", "jinja2"), ("**.py", "python")],
        keywords={"_": None, "N_": None, "t": None},
        options_map={"templates/**.html": {"extensions": ""}})
    return {m[0] if isinstance(m, tuple) else m for _, _, m, _, _ in found}


def test_the_extraction_sees_the_portal() -> None:
    messages = portal_messages()
    assert len(messages) > 250
    assert "Who can see what" in messages and "Emergency access" in messages


@pytest.mark.parametrize("lang", ["fr", "nl"])
def test_every_message_is_translated(lang: str) -> None:
    catalogue = i18n.catalogue(lang)
    missing = sorted(m for m in portal_messages() if m not in catalogue)
    assert missing == []
    for message, translation in catalogue.items():
        assert translation.strip(), message
        assert sorted(PLACEHOLDER.findall(message)) == sorted(
            PLACEHOLDER.findall(translation)), message


def test_translator_falls_back_to_english_and_formats_brussels_time() -> None:
    french = i18n.Translator("fr")
    assert french("Sign in") == "Se connecter"
    assert french("A text nobody translated") == "A text nobody translated"
    assert i18n.Translator("xx").lang == "fr"
    assert french.moment("2026-07-21T08:00:00Z") == "21 juillet 2026, 10:00"  # summer time
    assert i18n.Translator("nl").day("2026-12-25") == "25 december 2026"


@pytest.mark.parametrize(("query", "cookie", "header", "expected"), [
    ("nl", "fr", "en", "nl"), (None, "en", "nl", "en"), ("zz", None, "nl-BE,fr;q=0.8", "nl"),
    (None, None, "es, en;q=0.3, fr;q=0.9", "es"), (None, None, "de;q=1, nl;q=0", "fr"),
    (None, None, "pt-BR, fr;q=0.9", "fr"),
    (None, None, None, "fr"),
])
def test_language_negotiation(query: str | None, cookie: str | None, header: str | None,
                              expected: str) -> None:
    assert i18n.negotiate(query, cookie, header) == expected


# Languages added as data (docs/i18n.md): every text a citizen meets, and every code label
PROFESSIONAL_ONLY = ("templates/pro", "templates/audit", "templates/admin", "professional.py",
                     "auditor.py", "entries.py")


def citizen_messages() -> set[str]:
    found = extract_from_dir(
        str(PORTAL), [("templates/**.html", "jinja2"), ("**.py", "python")],
        keywords={"_": None, "N_": None, "t": None},
        options_map={"templates/**.html": {"extensions": ""}})
    by_file: dict[str, set[str]] = {}
    for filename, _, message, _, _ in found:
        text = message[0] if isinstance(message, tuple) else message
        by_file.setdefault(text, set()).add(filename)
    return {m for m, files in by_file.items()
            if any(not f.startswith(PROFESSIONAL_ONLY) for f in files)}


@pytest.mark.parametrize("lang", [c for c in i18n.LANGUAGES if c not in ("en", "fr", "nl")])
def test_an_added_language_covers_every_citizen_text_and_code(lang: str) -> None:
    from dossier.portal import codes

    catalogue = i18n.catalogue(lang)
    assert sorted(m for m in citizen_messages() if m not in catalogue) == []
    for message, translation in catalogue.items():
        assert sorted(PLACEHOLDER.findall(message)) == sorted(
            PLACEHOLDER.findall(translation)), message
    for name in dir(codes):
        if name.endswith("_SYSTEM"):
            for concept in codes._concepts().get(getattr(codes, name), []):
                assert concept.get("display") in catalogue, concept.get("display")


def test_languages_are_data() -> None:
    assert i18n.LANGUAGES[:3] == ("fr", "nl", "en") and "es" in i18n.LANGUAGES
    assert i18n.Translator("es")("Who can see what") == "Quién ve qué"
    assert i18n.Translator("es").day("2026-12-25") == "25 de diciembre de 2026"
    assert i18n.Translator("es").direction == "ltr"
