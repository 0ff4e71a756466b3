"""`_summary` and `_elements`: a resource cut down to some of its top-level elements.

Which elements are "summary" and which are mandatory comes from the FHIR R4 definitions
as the R4B models carry them (`fhir.resources`). A subsetted resource carries the
`SUBSETTED` tag, so a client never mistakes it for the whole resource (and never PUTs it
back as if it were)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}
ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _elements(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a type, by their JSON names."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return frozenset(), frozenset()
    summary: set[str] = set()
    required: set[str] = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        json_name = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if extra.get("element_required"):
            required.add(json_name)
    return frozenset(summary), frozenset(required)


def subset(resource: dict[str, Any], summary: str | None,
           elements: tuple[str, ...] | None) -> dict[str, Any]:
    """The resource as `_summary` (true | text | data) or `_elements` ask for it; the
    resource itself when neither applies."""
    if summary in (None, "false", "count") and elements is None:
        return resource
    summary_names, required = _elements(str(resource.get("resourceType")))
    if summary == "true":
        keep = ALWAYS | summary_names | required
    elif summary == "text":
        keep = ALWAYS | required | {"text"}
    elif summary == "data":
        keep = frozenset(resource) - {"text"}
    else:
        keep = ALWAYS | required | frozenset(elements or ())
    out = {k: v for k, v in resource.items() if k in keep or
           (k.startswith("_") and k[1:] in keep)}
    if set(out) == set(resource):
        return resource
    meta = copy.deepcopy(out.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != SUBSETTED["code"]]
    meta["tag"] = [*tags, dict(SUBSETTED)]
    out["meta"] = meta
    return out
