"""Server-assigned data categories (§4) and the meta.security labels that carry them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import terminology
from schemas.paths import codings, values_at
from schemas.profiles import PROFILES
from schemas.urls import CATEGORY_SYSTEM, V3_ACT_CODE, V3_CONFIDENTIALITY, V3_OBSERVATION_VALUE

CATEGORIES: tuple[str, ...] = ("identity", "demarches", "network", "fragility", "psy")
_SOCIAL = frozenset({"demarches", "network", "fragility", "psy"})


def categories(resource: Mapping[str, Any]) -> frozenset[str]:
    """The dossier-category codes of a resource.

    Patient → identity; RelatedPerson, CareTeam → network; Task → demarches;
    Observation, Flag → fragility; plus psy when a coding at one of the profile's
    psy paths (Task.code) has the code-system property psy=true, or when every item of
    its psy items (CareTeam.participant) is psy (some only: see `psy_items`).
    Consent, the directory and server-written types → none.
    """
    profile = PROFILES.get(str(resource.get("resourceType")))
    if profile is None or profile.category is None:
        return frozenset()
    found = {profile.category}
    for path in profile.psy_paths:
        if any(_psy_coded(value) for value in values_at(resource, path)):
            found.add("psy")
    if profile.psy_items is not None:
        items = resource.get(profile.psy_items[0])
        psy = psy_items(resource)
        if psy and isinstance(items, list) and len(psy) == len(items):
            found.add("psy")
    return frozenset(found)


REDACTED = {"system": V3_OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"}


def _psy_coded(value: Any) -> bool:
    return any(terminology.concept_property(s, c, "psy") is True for s, c in codings(value))


def psy_items(resource: Mapping[str, Any]) -> list[int]:
    """Indexes of the items that are psy by themselves (element-level label, SPEC §14):
    a CareTeam participant whose role is tied to mental health."""
    profile = PROFILES.get(str(resource.get("resourceType")))
    if profile is None or profile.psy_items is None:
        return []
    element, inner = profile.psy_items
    items = resource.get(element)
    if not isinstance(items, list):
        return []
    return [i for i, item in enumerate(items) if isinstance(item, Mapping)
            and any(_psy_coded(v) for v in values_at(item, inner))]


def without_psy_items(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without its psy items (the same object when it has none); a copy
    that says it was redacted (meta.security REDACTED) when it had some."""
    hidden = psy_items(resource)
    if not hidden:
        return resource
    element = PROFILES[str(resource["resourceType"])].psy_items[0]  # type: ignore[index]
    out = dict(resource)
    out[element] = [item for i, item in enumerate(resource[element]) if i not in hidden]
    meta = dict(out.get("meta") or {})
    meta["security"] = [*meta.get("security", []), dict(REDACTED)]
    out["meta"] = meta
    return out


def keep_psy_items(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """`new` with the psy items of `old` after its own: what a writer who could not see
    them sends never removes them."""
    hidden = psy_items(old)
    if not hidden:
        return new
    element = PROFILES[str(old["resourceType"])].psy_items[0]  # type: ignore[index]
    mine = new.get(element)
    return {**new, element: [*(mine if isinstance(mine, list) else []),
                             *(old[element][i] for i in hidden)]}


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
