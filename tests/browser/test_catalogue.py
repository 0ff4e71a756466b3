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
    (None, None, "es, en;q=0.3, fr;q=0.9", "fr"), (None, None, "de;q=1, nl;q=0", "fr"),
    (None, None, None, "fr"),
])
def test_language_negotiation(query: str | None, cookie: str | None, header: str | None,
                              expected: str) -> None:
    assert i18n.negotiate(query, cookie, header) == expected
