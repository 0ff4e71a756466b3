"""Small valid example resources for the schemas tests (and for the server's tests)."""

from __future__ import annotations

from typing import Any

import schemas

FC = schemas.FRAGILITY_COMPONENT_SYSTEM


def task() -> dict[str, Any]:
    return {
        "resourceType": "Task", "id": "t1", "status": "in-progress", "intent": "order",
        "code": {"coding": [{"system": schemas.DEMARCHE_TYPE_SYSTEM, "code": "cpas-support"}]},
        "businessStatus": {"coding": [{"system": schemas.BUSINESS_STATUS_SYSTEM,
                                       "code": "awaiting-documents"}]},
        "for": {"reference": "Patient/p1"}, "owner": {"reference": "Organization/o1"},
        "requester": {"reference": "PractitionerRole/r1"},
        "executionPeriod": {"start": "2026-03-02", "end": "2026-04-01T10:00:00+02:00"},
        "authoredOn": "2026-03-02T09:00:00Z",
    }


def component(code: str, **value: Any) -> dict[str, Any]:
    return {"code": {"coding": [{"system": FC, "code": code}]}, **value}


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": schemas.OBSERVATION_CODE_SYSTEM,
                             "code": "social-fragility"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-02T10:00:00+01:00",
        "component": [
            component("housing", valueCodeableConcept={"coding": [
                {"system": FC, "code": "inadequate"}]}),
            component("lives-alone", valueBoolean=True),
            component("support-on-return", valueBoolean=False),
        ],
    }


def care_team() -> dict[str, Any]:
    return {
        "resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/p1"},
        "participant": [{
            "role": [{"coding": [{"system": schemas.NETWORK_ROLE_SYSTEM, "code": "family"}]}],
            "member": {"reference": "RelatedPerson/rp1"},
            "extension": [{"url": schemas.AVAILABLE_AT_DISCHARGE_URL, "valueBoolean": True}],
        }],
    }


def consent() -> dict[str, Any]:
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"system": schemas.V3_ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]}, "reference": {"reference": "Group/profession-persnurse"}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                    "code": "access"}]}],
            "securityLabel": [{"system": schemas.CATEGORY_SYSTEM, "code": "fragility"}],
        },
    }


def endpoint() -> dict[str, Any]:
    return {
        "resourceType": "Endpoint", "id": "e1", "status": "active", "name": "Abrumet",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/"
                                     "endpoint-connection-type", "code": "hl7-fhir-rest"},
        "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                               "endpoint-payload-type", "code": "any"}]}],
        "managingOrganization": {"reference": "Organization/o1"},
        "address": "https://hub.abrumet.example/fhir",
    }
