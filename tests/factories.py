"""Factories for valid FHIR resources of the dossier (objective-only profiles)."""

from __future__ import annotations

import itertools
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


def endpoint(address: str = "https://hub.abrumet.example/fhir",
             organization_ref: str | None = None, status: str = "active",
             name: str = "Abrumet FHIR") -> dict[str, Any]:
    """A FHIR REST server in the locator's directory."""
    res: dict[str, Any] = {
        "resourceType": "Endpoint", "status": status, "name": name,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/"
                                     "endpoint-connection-type", "code": "hl7-fhir-rest"},
        "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                               "endpoint-payload-type", "code": "any"}]}],
        "address": address}
    if organization_ref:
        res["managingOrganization"] = {"reference": organization_ref}
    return res


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


_SERIALS = itertools.count(1)
FRESH = "fresh"  # a new national number for each dossier (one dossier per person)


def patient(ssin: str | None = FRESH, family: str = "Martin", given: str = "Jean",
            birth: str = "1967-01-01", language: str = "fr") -> dict[str, Any]:
    if ssin == FRESH:
        ssin = niss("670101", next(_SERIALS) % 900 + 1)
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


def consent(patient_id: str, actor: str | None, *, categories: tuple[str, ...] = ("demarches",),
            actions: tuple[str, ...] = ("access",), kind: str = "permit",
            start: str | None = None, end: str | None = None,
            purpose: str | None = None) -> dict[str, Any]:
    """One grant or exclusion, exactly in the §12 encoding."""
    provision: dict[str, Any] = {"type": kind}
    if actor:
        provision["actor"] = [{
            "role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]},
            "reference": {"reference": actor}}]
    if actions:
        provision["action"] = [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}]}
            for a in actions]
    if categories:
        provision["securityLabel"] = [{"system": f"{DB}/CodeSystem/dossier-category",
                                       "code": c} for c in categories]
    if start or end:
        provision["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if purpose:
        provision["purpose"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                 "code": purpose}]
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": provision,
    }


def related_person(patient_id: str, family: str = "Peeters", given: str = "Marc",
                   relationship: str = "neighbour") -> dict[str, Any]:
    return {"resourceType": "RelatedPerson", "active": True,
            "patient": {"reference": f"Patient/{patient_id}"},
            "relationship": [{"coding": [{
                "system": f"{DB}/CodeSystem/network-role", "code": relationship}]}],
            "name": [{"family": family, "given": [given]}],
            "telecom": [{"system": "phone", "value": "+32 2 555 01 23"}]}


def representative(patient_id: str, ssin: str, relationship: str = "POWATT",
                   mandate: str = "decide", end: str | None = None,
                   family: str = "Wouters", given: str = "Pieter") -> dict[str, Any]:
    """A representative (SPEC §13): GUARD, POWATT or PRN, their NISS, the mandate."""
    res: dict[str, Any] = {
        "resourceType": "RelatedPerson", "active": True,
        "patient": {"reference": f"Patient/{patient_id}"},
        "extension": [{"url": f"{DB}/StructureDefinition/representative-mandate",
                       "valueCode": mandate}],
        "identifier": [{"system": SSIN, "value": ssin}],
        "relationship": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "code": relationship}]}],
        "name": [{"family": family, "given": [given]}]}
    if end:
        res["period"] = {"end": end}
    return res
