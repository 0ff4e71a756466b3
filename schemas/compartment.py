"""Which Patient a resource belongs to, and every Reference it holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.paths import REFERENCE, reference_of, values_at
from schemas.profiles import PROFILES


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """"Patient/<id>" of the patient compartment the resource is in; None for the directory.

    The profile names the element(s): Patient → its own id; Task.for;
    CareTeam/Observation/Flag.subject; RelatedPerson/Consent.patient; for
    server-written types the first Patient among AuditEvent.entity.what,
    Provenance.target, Communication.subject then .recipient.
    """
    profile = PROFILES.get(str(resource.get("resourceType")))
    if profile is None:
        return None
    if profile.patient == ("id",):
        ident = resource.get("id")
        return f"Patient/{ident}" if isinstance(ident, str) and REFERENCE.fullmatch(
            f"Patient/{ident}") else None
    for path in profile.patient:
        for value in values_at(resource, path):
            target = reference_of(value)
            if target is not None and target[0] == "Patient":
                return f"Patient/{target[1]}"
    return None


def references(resource: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, reference string) of every Reference, e.g. ("CareTeam.participant[0].member",
    "Practitioner/7"), in document order, for the server's existence checks."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            text = node.get("reference")
            if isinstance(text, str):
                found.append((path, text))
            for key, value in node.items():
                if key != "resourceType":
                    walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")

    walk(resource, str(resource.get("resourceType", "Resource")))
    return found
