"""A Consent in the §12 encoding, built from plain choices: the one builder for the portal's
forms and for the operations that write a Consent the person approved."""

from __future__ import annotations

from typing import Any

from dossier.domain.codes import CATEGORY_SYSTEM

CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def consent_body(patient_id: str, kind: str, *, actor: str | None = None,
                 categories: list[str] | None = None, actions: list[str] | None = None,
                 start: str | None = None, end: str | None = None,
                 purpose: str | None = None, now: str | None = None) -> dict[str, Any]:
    """`kind` permit | deny; `actor` a reference; dates as FHIR dateTime strings."""
    provision: dict[str, Any] = {"type": kind}
    if actor:
        provision["actor"] = [{"role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                               "reference": {"reference": actor}}]
    if actions:
        provision["action"] = [{"coding": [{"system": CONSENT_ACTION, "code": a}]}
                               for a in actions]
    if categories:
        provision["securityLabel"] = [{"system": CATEGORY_SYSTEM, "code": c}
                                      for c in categories]
    if start or end:
        provision["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if purpose:
        provision["purpose"] = [{"system": ACT_REASON, "code": purpose}]
    body: dict[str, Any] = {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": provision,
    }
    if now:
        body["dateTime"] = now
    return body
