"""People and their dossier (SPEC §13): the national number a Patient carries.

One person, one dossier: a Patient carries at most one NISS, and once a dossier has one
it never changes through an ordinary write (a wrong number is an administrator's
correction, not an edit)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from dossier.errors import Forbidden, Unprocessable

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
ROLE_CODES = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
REPRESENTATIVES = ("GUARD", "POWATT", "PRN")
MANDATE_URL = "https://dossier.brussels/fhir/StructureDefinition/representative-mandate"
# who records which representative (SPEC §13): the person chooses a mandataire or a
# personne de confiance; a guardian (court decision) and a parent are recorded by an admin
RECORDED_BY = {"POWATT": "citizen", "GUARD": "admin", "PRN": "admin"}


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


def mandate_of(content: dict[str, Any] | None) -> str | None:
    """The representative-mandate extension's code (decide | see), if any."""
    for ext in (content or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == MANDATE_URL:
            code = ext.get("valueCode")
            return code if code in ("decide", "see") else None
    return None


def relationship_of(content: dict[str, Any] | None) -> str | None:
    """GUARD, POWATT or PRN when the RelatedPerson is a representative (SPEC §13)."""
    for concept in (content or {}).get("relationship") or []:
        for c in (concept or {}).get("coding") or []:
            if c.get("system") == ROLE_CODES and c.get("code") in REPRESENTATIVES:
                return str(c["code"])
    return None


def check_related_person(role: str, resource: dict[str, Any] | None,
                         existing: dict[str, Any] | None) -> None:
    """Who may write (or delete: `resource` None) which RelatedPerson. An ordinary network
    member stays the professionals' (and not the citizen's or the admin's); a
    representative is written by the one who may name it, complete (NISS, mandate)."""
    if role == "server":
        return  # the service's own seed data
    relationships = {relationship_of(r) for r in (resource, existing) if r is not None}
    relationships.discard(None)
    if not relationships:
        if resource is not None and mandate_of(resource) is not None:
            raise Unprocessable("A representative-mandate needs a representative "
                                "relationship (GUARD, POWATT or PRN).",
                                expression=["RelatedPerson.relationship"])
        if role in ("citizen", "admin"):
            raise Forbidden("Here you may only name or remove a representative (a "
                            "mandataire or a personne de confiance).")
        return
    allowed = {RECORDED_BY[r] for r in relationships if r is not None}
    if allowed != {role}:
        raise Forbidden("The person names a mandataire or a personne de confiance "
                        "themselves; an administrator records a guardian or a parent.")
    if resource is None:
        return
    if mandate_of(resource) is None:
        raise Unprocessable("A representative needs the representative-mandate extension "
                            "(decide or see).", expression=["RelatedPerson.extension"])
    if not nisses(resource):
        raise Unprocessable("A representative is named by their national number (NISS), "
                            "with which they sign in.", expression=["RelatedPerson.identifier"])


def came_of_age(birth_date: str) -> date:
    """The last day a parent's mandate holds: the day before the 18th birthday."""
    born = date.fromisoformat(birth_date[:10])
    try:
        adult = born.replace(year=born.year + 18)
    except ValueError:  # born on 29 February
        adult = date(born.year + 18, 3, 1)
    return adult - timedelta(days=1)


def with_parent_end(resource: dict[str, Any], child_birth: str | None) -> dict[str, Any]:
    """A parent's mandate (PRN) ends when the child comes of age: the server writes that
    end into `period` (an earlier end the writer gave is kept)."""
    if relationship_of(resource) != "PRN":
        return resource
    if not child_birth or len(child_birth) < 10:
        raise Unprocessable("A parent's mandate needs the child's full birth date in the "
                            "dossier (it ends at the 18th birthday).",
                            expression=["RelatedPerson.relationship"])
    last = came_of_age(child_birth).isoformat()
    period = dict(resource.get("period") or {})
    end = period.get("end")
    if not isinstance(end, str) or end[:10] > last:
        period["end"] = last
    return {**resource, "period": period}


ASSISTED = "assisted-consent"


def check_assisted(resource: dict[str, Any], practitioner: str | None) -> None:
    """A professional records a Consent only as the person's assisted consent: they are the
    performer, and the person, present and informed, verified it (SPEC §13)."""
    patient = (resource.get("patient") or {}).get("reference")
    performers = [(p or {}).get("reference") for p in resource.get("performer") or []]
    checks = resource.get("verification") or []
    verified = bool(checks) and all(
        isinstance(v, dict) and v.get("verified") is True
        and (v.get("verifiedWith") or {}).get("reference") == patient
        and isinstance(v.get("verificationDate"), str) for v in checks)
    if practitioner is None or performers != [practitioner] or not verified:
        raise Forbidden("A professional records a consent only as the assisted consent of "
                        "the person, present and informed: you as performer, and a "
                        "verification by the person (verified, verifiedWith, date).")
