"""The portal's languages: French, Dutch, English, Spanish (and any added as data).

English is the source text (the msgid); `locales/<lang>/LC_MESSAGES/*.po` (portal.po, and
one file per concern) hold the translations, read with Babel when the portal starts (no
build step). `locales/languages.json` lists the languages (name, Babel locale, writing
direction): adding one is a data-only step (docs/i18n.md). A text missing from a
catalogue shows in English.
The language comes from `?lang=`, then the `lang` cookie, then Accept-Language; French
when nothing matches (Brussels' first language of services).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locales"
_TABLE = {code: entry for code, entry in json.loads(
    (LOCALE_DIR / "languages.json").read_text(encoding="utf-8")).items()
    if not code.startswith("_")}
LANGUAGES = tuple(_TABLE)
DEFAULT_LANGUAGE = "fr"
LANGUAGE_NAMES = {code: str(entry["name"]) for code, entry in _TABLE.items()}
BABEL_LOCALES = {code: str(entry["locale"]) for code, entry in _TABLE.items()}
DIRECTIONS = {code: "rtl" if entry.get("dir") == "rtl" else "ltr"
              for code, entry in _TABLE.items()}
DAY_PATTERNS = {code: str(entry.get("day") or "d MMMM y") for code, entry in _TABLE.items()}
MOMENT_PATTERNS = {code: str(entry.get("moment") or "d MMMM y, HH:mm")
                   for code, entry in _TABLE.items()}
DOMAIN = "portal"
BRUSSELS = ZoneInfo("Europe/Brussels")


def N_(message: str) -> str:
    """Mark a message for translation where it is defined; translate it where shown."""
    return message


@lru_cache(maxsize=len(LANGUAGES))
def catalogue(lang: str) -> Mapping[str, str]:
    """msgid → translation for `lang` (empty for English, the source language)."""
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    if lang == "en" or not folder.is_dir():
        return {}
    out: dict[str, str] = {}
    for path in sorted(folder.glob("*.po")):  # portal.po, then one file per concern
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=BABEL_LOCALES[lang], domain=DOMAIN)
        out.update({str(m.id): str(m.string) for m in catalog
                    if m.id and isinstance(m.id, str) and m.string and not m.fuzzy})
    return out


class Translator:
    """gettext and date formatting in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self.locale = BABEL_LOCALES[self.lang]
        self.direction = DIRECTIONS[self.lang]
        self._messages = catalogue(self.lang)

    def gettext(self, message: str) -> str:
        return self._messages.get(message) or message

    __call__ = gettext

    def moment(self, value: datetime | str | None) -> str:
        """A date and time, in Brussels time."""
        moment = _as_datetime(value)
        if moment is None:
            return str(value or "")
        return format_datetime(moment, MOMENT_PATTERNS[self.lang], tzinfo=BRUSSELS,
                               locale=self.locale)

    def day(self, value: date | datetime | str | None) -> str:
        """A calendar day; a date-time is read in Brussels time."""
        if isinstance(value, str) and len(value) <= 10:
            try:
                value = date.fromisoformat(value) if len(value) == 10 else None
            except ValueError:
                value = None
        if isinstance(value, datetime):
            value = value.astimezone(BRUSSELS).date()
        if isinstance(value, date):
            return format_date(value, DAY_PATTERNS[self.lang], locale=self.locale)
        moment = _as_datetime(value)
        if moment is None:
            return str(value or "")
        return format_date(moment.astimezone(BRUSSELS).date(), DAY_PATTERNS[self.lang],
                           locale=self.locale)


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) < 16:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=BRUSSELS)


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language tags in order of preference (q=0 excluded)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary and quality > 0:
            ranked.append((-quality, position, primary))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for choice in (query, cookie):
        if choice in LANGUAGES:
            return str(choice)
    for tag in parse_accept_language(accept_language):
        if tag in LANGUAGES:
            return tag
    return DEFAULT_LANGUAGE
