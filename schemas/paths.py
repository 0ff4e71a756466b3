"""Reading values out of FHIR JSON by dotted element path."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

REFERENCE = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})")


def values_at(resource: Mapping[str, Any], path: str) -> Iterator[Any]:
    """Every value at a dotted path ("participant.role"), arrays flattened on the way."""
    nodes: list[Any] = [resource]
    for part in path.split("."):
        found: list[Any] = []
        for node in nodes:
            if isinstance(node, Mapping) and part in node:
                value = node[part]
                found.extend(value if isinstance(value, list) else [value])
        nodes = found
    yield from nodes


def codings(value: Any) -> Iterator[tuple[str, str]]:
    """(system, code) of a Coding or of each coding of a CodeableConcept."""
    if not isinstance(value, Mapping):
        return
    items = value.get("coding") if "coding" in value else [value]
    for coding in items if isinstance(items, list) else ():
        if isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield system, code


def reference_of(value: Any) -> tuple[str, str] | None:
    """(type, id) of a Reference to "Type/id", or None."""
    if isinstance(value, Mapping):
        text = value.get("reference")
        if isinstance(text, str):
            match = REFERENCE.fullmatch(text)
            if match:
                return match["type"], match["id"]
    return None
