"""Load the JSON definitions and answer code questions from them.

The JSON files under `definitions/` are the source of truth: a binding names a
ValueSet canonical URL, and membership, displays and concept properties (`psy`,
`value-type`, ...) are read from the files, never repeated in Python.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_KINDS = ("CodeSystem", "ValueSet", "StructureDefinition")


@dataclass(frozen=True)
class Concept:
    """One code of a code system, with every display a client may send for it (casefolded)."""

    system: str
    code: str
    displays: frozenset[str]
    properties: Mapping[str, object]


@cache
def _definitions() -> Mapping[str, tuple[dict[str, Any], ...]]:
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _KINDS}
    folder = resources.files("schemas") / "definitions"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            resource = json.loads(entry.read_text(encoding="utf-8"))
            found[resource["resourceType"]].append(resource)
    return {kind: tuple(items) for kind, items in found.items()}


def code_systems() -> list[dict[str, Any]]:
    """Every CodeSystem resource (copies: callers may change them)."""
    return copy.deepcopy(list(_definitions()["CodeSystem"]))


def value_sets() -> list[dict[str, Any]]:
    """Every ValueSet resource (copies)."""
    return copy.deepcopy(list(_definitions()["ValueSet"]))


def structure_definitions() -> list[dict[str, Any]]:
    """Every StructureDefinition (the dossier's extensions; copies)."""
    return copy.deepcopy(list(_definitions()["StructureDefinition"]))


def _displays(entry: Mapping[str, Any]) -> set[str]:
    names = {entry["display"]} if "display" in entry else set()
    names.update(d["value"] for d in entry.get("designation", ()))
    return {name.strip().casefold() for name in names}


def _properties(entry: Mapping[str, Any]) -> dict[str, object]:
    values: dict[str, object] = {}
    for prop in entry.get("property", ()):
        value = next(v for k, v in prop.items() if k.startswith("value"))
        values[prop["code"]] = value
    return values


@cache
def _concepts() -> Mapping[tuple[str, str], Concept]:
    """(system, code) → Concept for every code system we carry."""
    table: dict[tuple[str, str], Concept] = {}
    for cs in _definitions()["CodeSystem"]:
        for entry in cs.get("concept", ()):
            key = (cs["url"], entry["code"])
            table[key] = Concept(cs["url"], entry["code"], frozenset(_displays(entry)),
                                 _properties(entry))
    return table


@cache
def expansion(value_set: str) -> Mapping[tuple[str, str], frozenset[str]]:
    """(system, code) → accepted displays, for a ValueSet canonical URL.

    Supports the two compose forms our files use: an include listing concepts,
    and an include of a whole code system we carry. KeyError if unknown.
    """
    vs = next((v for v in _definitions()["ValueSet"] if v["url"] == value_set), None)
    if vs is None:
        raise KeyError(value_set)
    members: dict[tuple[str, str], frozenset[str]] = {}
    for include in vs["compose"]["include"]:
        system = include["system"]
        if "concept" in include:
            for entry in include["concept"]:
                known = _concepts().get((system, entry["code"]))
                names = _displays(entry) | (known.displays if known else set())
                members[(system, entry["code"])] = frozenset(names)
        else:
            for (sys, code), concept in _concepts().items():
                if sys == system:
                    members[(sys, code)] = concept.displays
    return members


@cache
def codes(value_set: str) -> frozenset[str]:
    """The bare codes of a value set (for `code` elements, whose system is implied)."""
    return frozenset(code for _, code in expansion(value_set))


@cache
def systems(value_set: str) -> frozenset[str]:
    """The code systems a value set draws from."""
    return frozenset(system for system, _ in expansion(value_set))


def concept_property(system: str, code: str, name: str) -> object | None:
    """A concept property (e.g. `psy`, `value-type`), or None."""
    concept = _concepts().get((system, code))
    return None if concept is None else concept.properties.get(name)


def display(system: str, code: str) -> str | None:
    """The English display of a code we carry."""
    for cs in _definitions()["CodeSystem"]:
        if cs["url"] == system:
            for entry in cs.get("concept", ()):
                if entry["code"] == code:
                    return str(entry["display"])
    return None
