"""Server-assigned data categories (§4) and the meta.security labels that carry them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import terminology
from schemas.paths import codings, values_at
from schemas.profiles import PROFILES
from schemas.urls import CATEGORY_SYSTEM, V3_ACT_CODE, V3_CONFIDENTIALITY

CATEGORIES: tuple[str, ...] = ("identity", "demarches", "network", "fragility", "psy")
_SOCIAL = frozenset({"demarches", "network", "fragility", "psy"})


def categories(resource: Mapping[str, Any]) -> frozenset[str]:
    """The dossier-category codes of a resource.

    Patient → identity; RelatedPerson, CareTeam → network; Task → demarches;
    Observation, Flag → fragility; plus psy when a coding at one of the profile's
    psy paths (Task.code, CareTeam.participant.role) has the code-system property
    psy=true. Consent, the directory and server-written types → none.
    """
    profile = PROFILES.get(str(resource.get("resourceType")))
    if profile is None or profile.category is None:
        return frozenset()
    found = {profile.category}
    for path in profile.psy_paths:
        for value in values_at(resource, path):
            if any(terminology.concept_property(s, c, "psy") is True for s, c in codings(value)):
                found.add("psy")
    return frozenset(found)


def security_labels(categories: frozenset[str]) -> list[dict[str, str]]:
    """meta.security codings for a set of categories.

    Each dossier-category code; HL7 v3 sensitivity SOC (any social content:
    everything but identity alone) and PSY (psy); confidentiality R, or V with
    psy. No categories → no labels. ValueError for an unknown category.
    """
    unknown = categories - set(CATEGORIES)
    if unknown:
        raise ValueError("unknown dossier category")
    labels = [_label(CATEGORY_SYSTEM, code) for code in CATEGORIES if code in categories]
    if categories & _SOCIAL:
        labels.append({"system": V3_ACT_CODE, "code": "SOC",
                       "display": "social services sensitivity"})
    if "psy" in categories:
        labels.append({"system": V3_ACT_CODE, "code": "PSY",
                       "display": "psychiatry disorder information sensitivity"})
    if categories:
        labels.append({"system": V3_CONFIDENTIALITY, "code": "V", "display": "very restricted"}
                      if "psy" in categories else
                      {"system": V3_CONFIDENTIALITY, "code": "R", "display": "restricted"})
    return labels


def _label(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": terminology.display(system, code) or code}
