"""Code labels in the reader's language, from the code systems in schemas/ (each concept has
an English display and French and Dutch designations)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import schemas
from dossier.portal.i18n import catalogue

DB = schemas.CANONICAL
CATEGORIES = ("identity", "demarches", "network", "fragility", "psy")
ACTIONS = ("access", "collect")
HOUSING = ("adequate", "inadequate", "none")
YES_NO_COMPONENTS = ("lives-alone", "support-on-return", "mobility-limited",
                     "language-barrier", "income-loss", "institution-exit")
DEMARCHE_STATUSES = ("requested", "in-progress", "on-hold", "completed", "cancelled", "failed")


@lru_cache(maxsize=1)
def _concepts() -> dict[str, list[dict[str, Any]]]:
    return {str(cs["url"]): list(cs.get("concept", [])) for cs in schemas.code_systems()}


def codes(system: str) -> list[str]:
    return [str(c["code"]) for c in _concepts().get(system, [])]


def label(system: str, code: str | None, lang: str) -> str:
    """The concept's designation in `lang`, its English display, or the code itself."""
    if not code:
        return ""
    for concept in _concepts().get(system, []):
        if concept.get("code") != code:
            continue
        for designation in concept.get("designation") or []:
            if designation.get("language") == lang and designation.get("value"):
                return str(designation["value"])
        display = str(concept.get("display") or code)
        return catalogue(lang).get(display) or display  # a language added as data
    return code


def prop(system: str, code: str, name: str) -> Any:
    for concept in _concepts().get(system, []):
        if concept.get("code") == code:
            for p in concept.get("property") or []:
                if p.get("code") == name:
                    return next((v for k, v in p.items() if k.startswith("value")), None)
    return None


def options(system: str, lang: str, only: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(code, label) pairs for a select list, in the code system's order."""
    return [(c, label(system, c, lang)) for c in codes(system) if only is None or c in only]


def role_kind(role_code: str | None) -> str:
    """professional | informal | service, from the network-role code system."""
    kind = prop(schemas.NETWORK_ROLE_SYSTEM, role_code or "", "kind")
    return str(kind) if kind in ("professional", "informal", "service") else "professional"


def code_of(concept: Any, system: str) -> str | None:
    """The first code of `system` in a CodeableConcept (or a list of them)."""
    items = concept if isinstance(concept, list) else [concept]
    for item in items:
        if not isinstance(item, dict):
            continue
        for coding in item.get("coding") or []:
            if coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return None


CATEGORY_SYSTEM = schemas.CATEGORY_SYSTEM
DEMARCHE_TYPE_SYSTEM = schemas.DEMARCHE_TYPE_SYSTEM
BUSINESS_STATUS_SYSTEM = schemas.BUSINESS_STATUS_SYSTEM
NETWORK_ROLE_SYSTEM = schemas.NETWORK_ROLE_SYSTEM
FRAGILITY_COMPONENT_SYSTEM = schemas.FRAGILITY_COMPONENT_SYSTEM
FRAGILITY_LEVEL_SYSTEM = schemas.FRAGILITY_LEVEL_SYSTEM
PROFESSION_SYSTEM = schemas.PROFESSION_SYSTEM
