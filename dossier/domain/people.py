"""People and their dossier (SPEC §13): the national number a Patient carries.

One person, one dossier: a Patient carries at most one NISS, and once a dossier has one
it never changes through an ordinary write (a wrong number is an administrator's
correction, not an edit)."""

from __future__ import annotations

from typing import Any

from dossier.errors import Unprocessable

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"


def nisses(resource: dict[str, Any] | None) -> set[str]:
    """The national numbers (ssin identifiers) a resource carries."""
    out: set[str] = set()
    for identifier in (resource or {}).get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == SSIN:
            value = identifier.get("value")
            if isinstance(value, str):
                out.add(value)
    return out


def niss_of(resource: dict[str, Any]) -> str | None:
    """The one NISS of a Patient, or None for a pseudonymous dossier (422 for several)."""
    found = nisses(resource)
    if len(found) > 1:
        raise Unprocessable("A dossier belongs to one person: give one national number "
                            "(NISS) only.", expression=["Patient.identifier"])
    return next(iter(found), None)


def check_patient_write(resource: dict[str, Any], existing: dict[str, Any] | None) -> None:
    """A Patient write keeps the dossier's national number as it was."""
    if resource.get("resourceType") != "Patient":
        return
    niss_of(resource)
    if existing is not None and nisses(resource) != nisses(existing):
        raise Unprocessable("The national number (NISS) of a dossier cannot be added, "
                            "changed or removed by an update.",
                            expression=["Patient.identifier"])
