"""Factories for valid FHIR resources of the dossier (objective-only profiles)."""

from __future__ import annotations

from typing import Any

DB = "https://dossier.brussels/fhir"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
HCPARTY = "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty"
AVAILABLE = f"{DB}/StructureDefinition/available-at-discharge"


def niss(birth: str = "670101", serial: int = 123) -> str:
    """A Belgian national number with a correct check number (for people born before 2000)."""
    base = f"{birth}{serial:03d}"
    return f"{base}{97 - int(base) % 97:02d}"


def organization(name: str = "CPAS de Saint-Gilles", sector: str = "social") -> dict[str, Any]:
    return {"resourceType": "Organization", "active": True, "name": name,
            "type": [{"coding": [{"system": f"{DB}/CodeSystem/organisation-sector",
                                  "code": sector}]}]}


def practitioner(family: str = "Dupont", given: str = "Anne") -> dict[str, Any]:
    return {"resourceType": "Practitioner", "active": True,
            "name": [{"family": family, "given": [given]}]}


def practitioner_role(practitioner_ref: str, organization_ref: str,
                      profession: str = "persphysician",
                      start: str = "2020-01-01") -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "active": True,
            "practitioner": {"reference": practitioner_ref},
            "organization": {"reference": organization_ref},
            "code": [{"coding": [{"system": HCPARTY, "code": profession}]}],
            "period": {"start": start}}


def patient(ssin: str | None = niss(), family: str = "Martin", given: str = "Jean",
            birth: str = "1967-01-01", language: str = "fr") -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth,
        "communication": [{"language": {"coding": [
            {"system": "urn:ietf:bcp:47", "code": language}]}}],
    }
    if ssin:
        res["identifier"] = [{"system": SSIN, "value": ssin}]
    return res


def task(patient_ref: str, code: str = "housing-application", status: str = "in-progress",
         owner: str | None = None, authored: str = "2026-11-02T10:00:00+01:00",
         business: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Task", "status": status, "intent": "order",
        "code": {"coding": [{"system": f"{DB}/CodeSystem/demarche-type", "code": code}]},
        "for": {"reference": patient_ref},
        "authoredOn": authored,
    }
    if owner:
        res["owner"] = {"reference": owner}
    if business:
        res["businessStatus"] = {"coding": [
            {"system": f"{DB}/CodeSystem/demarche-business-status", "code": business}]}
    return res


def care_team(patient_ref: str, members: list[tuple[str, str, bool]]) -> dict[str, Any]:
    parts = []
    for ref, role, available in members:
        parts.append({
            "role": [{"coding": [{"system": f"{DB}/CodeSystem/network-role", "code": role}]}],
            "member": {"reference": ref},
            "extension": [{"url": AVAILABLE, "valueBoolean": available}],
        })
    return {"resourceType": "CareTeam", "status": "active",
            "subject": {"reference": patient_ref}, "participant": parts}


def fragility(patient_ref: str, *, housing: str = "inadequate", lives_alone: bool = True,
              support: bool = False, when: str = "2026-11-20T09:00:00+01:00") -> dict[str, Any]:
    comp = f"{DB}/CodeSystem/fragility-component"

    def boolean(code: str, value: bool) -> dict[str, Any]:
        return {"code": {"coding": [{"system": comp, "code": code}]}, "valueBoolean": value}

    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": f"{DB}/CodeSystem/dossier-observation",
                             "code": "social-fragility"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "component": [
            {"code": {"coding": [{"system": comp, "code": "housing"}]},
             "valueCodeableConcept": {"coding": [{"system": comp, "code": housing}]}},
            boolean("lives-alone", lives_alone),
            boolean("support-on-return", support),
        ],
    }
