"""Objective-only profiles: what each resource type of the dossier may hold.

Each profile lists the elements a client may send (anything else is refused),
their FHIR type, cardinality, required code binding (a ValueSet canonical URL)
and the resource types a Reference may point to. Alongside: the element naming
the Patient the resource belongs to, the elements encrypted per patient (§7)
and the server-assigned data category (§4). `schemas.validate` walks a resource
against these tables; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.urls import (
    AVAILABLE_AT_DISCHARGE_URL,
    FLAG_DETAIL_URL,
    REPRESENTATIVE_MANDATE_URL,
    value_set_url,
)

# A binding checked by a rule in `schemas.rules` rather than by the walker
# (the housing component's values depend on the component's code).
BOUND_BY_RULE = "rule:component-value"


@dataclass(frozen=True)
class Element:
    """One element: FHIR type, cardinality, binding, reference targets, children."""

    type: str
    many: bool = False
    required: bool = False
    binding: str | None = None  # ValueSet canonical URL; strength is always "required"
    targets: frozenset[str] = frozenset()  # Reference: allowed resource types
    children: Mapping[str, Element] | None = None  # BackboneElement (and the resource root)
    extensions: frozenset[str] = frozenset()  # extension URLs allowed on this element


@dataclass(frozen=True)
class ExtensionDef:
    """A whitelisted extension: the one value[x] key it carries and that value's rules."""

    url: str
    value_key: str
    value: Element


@dataclass(frozen=True)
class Profile:
    """Everything the dossier declares about one resource type."""

    type: str
    root: Element | None  # None: written by the server only, never accepted from clients
    patient: tuple[str, ...] = ()  # paths whose first Patient reference names the compartment
    encrypted: tuple[str, ...] = ()  # top-level elements encrypted with the patient's key
    category: str | None = None  # base dossier-category; None: none (directory, Consent)
    psy_paths: tuple[str, ...] = ()  # codings here carrying property psy=true add "psy"
    # (list element, path within an item): an item with a psy coding there is psy by itself
    # and hidden from readers without psy; the resource is psy only when every item is
    psy_items: tuple[str, str] | None = None


PRIMITIVES: Mapping[str, type] = {
    "boolean": bool, "integer": int, "positiveInt": int, "unsignedInt": int,
    "string": str, "code": str, "id": str, "uri": str, "url": str, "canonical": str,
    "date": str, "dateTime": str, "instant": str, "time": str,
}

# Element names that carry free text. Refused wherever a profile does not list
# them (Coding.display is listed, and checked against the code's displays).
FREE_TEXT = frozenset({
    "text", "note", "description", "comment", "display", "summary", "valueString",
    "valueMarkdown", "contentString", "patientInstruction",
})


def vs(name: str) -> str:
    return value_set_url(name)


def el(type_: str, *, many: bool = False, required: bool = False,
       binding: str | None = None) -> Element:
    return Element(type_, many=many, required=required, binding=binding)


def ref(*targets: str, many: bool = False, required: bool = False) -> Element:
    return Element("Reference", many=many, required=required, targets=frozenset(targets))


def backbone(children: Mapping[str, Element], *, many: bool = False, required: bool = False,
             extensions: frozenset[str] = frozenset()) -> Element:
    return Element("BackboneElement", many=many, required=required, children=children,
                   extensions=extensions)


# Complex datatypes other than CodeableConcept, Coding and Reference (which the
# walker handles itself, because bindings and targets flow into them).
DATATYPES: Mapping[str, Mapping[str, Element]] = {
    "Period": {"start": el("dateTime"), "end": el("dateTime")},
    "Identifier": {
        "use": el("code", binding=vs("identifier-use")),
        "system": el("uri", required=True),
        "value": el("string", required=True),
    },
    "HumanName": {
        "use": el("code", binding=vs("name-use")),
        "family": el("string"),
        "given": el("string", many=True),
        "prefix": el("string", many=True),
        "suffix": el("string", many=True),
    },
    "Address": {
        "use": el("code", binding=vs("address-use")),
        "type": el("code", binding=vs("address-type")),
        "line": el("string", many=True),
        "city": el("string"),
        "district": el("string"),
        "postalCode": el("string"),
        "country": el("string"),
    },
    "ContactPoint": {
        "system": el("code", required=True, binding=vs("contact-point-system")),
        "value": el("string", required=True),
        "use": el("code", binding=vs("contact-point-use")),
        "rank": el("positiveInt"),
    },
    # meta is assigned by the server; a client may send back what it read.
    "Meta": {
        "versionId": el("id"),
        "lastUpdated": el("instant"),
        "security": el("Coding", many=True, binding=vs("security-labels")),
    },
    "Reference": {"reference": el("string", required=True), "type": el("uri")},
    "Coding": {"system": el("uri", required=True), "code": el("code", required=True),
               "display": el("string")},
}

EXTENSIONS: Mapping[str, ExtensionDef] = {
    AVAILABLE_AT_DISCHARGE_URL: ExtensionDef(AVAILABLE_AT_DISCHARGE_URL, "valueBoolean",
                                             el("boolean")),
    FLAG_DETAIL_URL: ExtensionDef(FLAG_DETAIL_URL, "valueReference", ref("Observation")),
    REPRESENTATIVE_MANDATE_URL: ExtensionDef(REPRESENTATIVE_MANDATE_URL, "valueCode",
                                             el("code", binding=vs("representative-mandate"))),
}

PROFESSIONALS = ("Practitioner", "PractitionerRole", "Organization")
PERSONAL = ("identifier", "name", "telecom", "gender", "birthDate", "address")


def resource(children: Mapping[str, Element],
             extensions: frozenset[str] = frozenset()) -> Element:
    """The root element: `id` and `meta` plus the type's own elements."""
    return backbone({"id": el("id"), "meta": el("Meta"), **children}, extensions=extensions)


_PATIENT = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "name": el("HumanName", many=True),
    "telecom": el("ContactPoint", many=True),
    "gender": el("code", binding=vs("administrative-gender")),
    "birthDate": el("date"),
    "address": el("Address", many=True),
    "communication": backbone({
        "language": el("CodeableConcept", required=True, binding=vs("languages")),
        "preferred": el("boolean"),
    }, many=True),
})

_RELATED_PERSON = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "patient": ref("Patient", required=True),
    "relationship": el("CodeableConcept", many=True, required=True,
                       binding=vs("related-person-role")),
    "name": el("HumanName", many=True),
    "telecom": el("ContactPoint", many=True),
    "gender": el("code", binding=vs("administrative-gender")),
    "birthDate": el("date"),
    "address": el("Address", many=True),
    "period": el("Period"),
}, extensions=frozenset({REPRESENTATIVE_MANDATE_URL}))

_PRACTITIONER = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "name": el("HumanName", many=True),
    "telecom": el("ContactPoint", many=True),
})

_PRACTITIONER_ROLE = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "period": el("Period"),
    "practitioner": ref("Practitioner", required=True),
    "organization": ref("Organization", required=True),
    "code": el("CodeableConcept", many=True, required=True, binding=vs("profession")),
    "telecom": el("ContactPoint", many=True),
})

_ORGANIZATION = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "type": el("CodeableConcept", many=True, binding=vs("organisation-sector")),
    "name": el("string", required=True),
    "telecom": el("ContactPoint", many=True),
    "address": el("Address", many=True),
    "partOf": ref("Organization"),
})

_GROUP = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "type": el("code", required=True, binding=vs("group-type")),
    "actual": el("boolean", required=True),
    "code": el("CodeableConcept", binding=vs("profession")),
    "name": el("string"),
    "quantity": el("unsignedInt"),
    "member": backbone({
        "entity": ref("Practitioner", "PractitionerRole", required=True),
        "period": el("Period"),
        "inactive": el("boolean"),
    }, many=True),
})

# A FHIR REST server known to this one (a hub, another Dossier instance, this one):
# the locator's directory. Connection details only; `header` (secrets) is refused.
_ENDPOINT = resource({
    "identifier": el("Identifier", many=True),
    "status": el("code", required=True, binding=vs("endpoint-status")),
    "connectionType": el("Coding", required=True, binding=vs("endpoint-connection-type")),
    "name": el("string"),
    "managingOrganization": ref("Organization"),
    "payloadType": el("CodeableConcept", many=True, required=True,
                      binding=vs("endpoint-payload-type")),
    "address": el("url", required=True),  # https (http on loopback): schemas.rules
})

_CARE_TEAM = resource({
    "status": el("code", binding=vs("care-team-status")),
    "subject": ref("Patient", required=True),
    "period": el("Period"),
    "participant": backbone({
        "role": el("CodeableConcept", many=True, required=True, binding=vs("network-role")),
        "member": ref("Practitioner", "PractitionerRole", "RelatedPerson", "Organization",
                      "Patient", required=True),
        "onBehalfOf": ref("Organization"),
        "period": el("Period"),
    }, many=True, required=True, extensions=frozenset({AVAILABLE_AT_DISCHARGE_URL})),
    "managingOrganization": ref("Organization", many=True),
})

_TASK = resource({
    "status": el("code", required=True, binding=vs("task-status")),
    "statusReason": el("CodeableConcept", binding=vs("referral-decline-reason")),
    "intent": el("code", required=True, binding=vs("task-intent")),
    "priority": el("code", binding=vs("request-priority")),
    "code": el("CodeableConcept", required=True, binding=vs("demarche-type")),
    "businessStatus": el("CodeableConcept", binding=vs("demarche-business-status")),
    "for": ref("Patient", required=True),
    "authoredOn": el("dateTime"),
    "lastModified": el("dateTime"),
    "executionPeriod": el("Period"),
    "owner": ref("Organization"),
    "requester": ref(*PROFESSIONALS),
    "partOf": ref("Task", many=True),
})

_OBSERVATION = resource({
    "status": el("code", required=True, binding=vs("observation-status")),
    "category": el("CodeableConcept", many=True, binding=vs("observation-category")),
    "code": el("CodeableConcept", required=True, binding=vs("dossier-observation")),
    "subject": ref("Patient", required=True),
    "effectiveDateTime": el("dateTime", required=True),
    "performer": ref(*PROFESSIONALS, many=True),
    # Computed by the server from the components (fragility-level); accepted so a
    # client can send back what it read, and recomputed on every write.
    "valueCodeableConcept": el("CodeableConcept", binding=vs("fragility-level")),
    "component": backbone({
        "code": el("CodeableConcept", required=True, binding=vs("fragility-component")),
        "valueBoolean": el("boolean"),
        "valueCodeableConcept": el("CodeableConcept", binding=BOUND_BY_RULE),
    }, many=True),  # every question may be left unanswered (docs/fragility.md)
})

_FLAG = resource({
    "status": el("code", required=True, binding=vs("flag-status")),
    "code": el("CodeableConcept", required=True, binding=vs("fragility-level")),
    "subject": ref("Patient", required=True),
    "period": el("Period"),
    "author": ref(*PROFESSIONALS),
}, extensions=frozenset({FLAG_DETAIL_URL}))

_CONSENT = resource({
    "status": el("code", required=True, binding=vs("consent-state")),
    "scope": el("CodeableConcept", required=True, binding=vs("consent-scope")),
    "category": el("CodeableConcept", many=True, required=True, binding=vs("consent-category")),
    "patient": ref("Patient", required=True),
    "dateTime": el("dateTime"),
    "performer": ref("Patient", "RelatedPerson", "Practitioner", many=True),
    "verification": backbone({  # assisted consent: the person was present (SPEC §13)
        "verified": el("boolean", required=True),
        "verifiedWith": ref("Patient", "RelatedPerson"),
        "verificationDate": el("dateTime"),
    }, many=True),
    "policyRule": el("CodeableConcept", required=True, binding=vs("consent-policy")),
    "provision": backbone({
        "type": el("code", required=True, binding=vs("consent-provision-type")),
        "period": el("Period"),
        "actor": backbone({
            "role": el("CodeableConcept", required=True, binding=vs("consent-actor-role")),
            "reference": ref("Practitioner", "Organization", "Group", required=True),
        }, many=True),
        "action": el("CodeableConcept", many=True, binding=vs("consent-action")),
        "securityLabel": el("Coding", many=True, binding=vs("dossier-category")),
        "purpose": el("Coding", many=True, binding=vs("consent-purpose")),
    }, required=True),
})

# The territory (SPEC §14): region, bassins, communes (or their parts), quartiers.
# Directory data, not personal data: a name and description are allowed here.
_LOCATION = resource({
    "identifier": el("Identifier", many=True),
    "status": el("code", binding=vs("location-status")),
    "name": el("string", required=True),
    "alias": el("string", many=True),
    "description": el("string"),
    "type": el("CodeableConcept", many=True, required=True, binding=vs("territory-level")),
    "telecom": el("ContactPoint", many=True),
    "address": el("Address"),
    "partOf": ref("Location"),
})

# The répertoire: one service of the social-health offer (SPEC §14).
_HEALTHCARE_SERVICE = resource({
    "identifier": el("Identifier", many=True),
    "active": el("boolean"),
    "providedBy": ref("Organization", required=True),
    "type": el("CodeableConcept", many=True, required=True, binding=vs("service-type")),
    "location": ref("Location", many=True),
    "name": el("string", required=True),
    "comment": el("string"),
    "telecom": el("ContactPoint", many=True),
    "coverageArea": ref("Location", many=True),
    "eligibility": backbone({
        "code": el("CodeableConcept", required=True, binding=vs("service-eligibility")),
    }, many=True),
    "communication": el("CodeableConcept", many=True, binding=vs("languages")),
    "referralMethod": el("CodeableConcept", many=True, binding=vs("service-referral-method")),
    "appointmentRequired": el("boolean"),
    "availableTime": backbone({
        "daysOfWeek": el("code", many=True, binding=vs("days-of-week")),
        "allDay": el("boolean"),
        "availableStartTime": el("time"),
        "availableEndTime": el("time"),
    }, many=True),
})

PROFILES: Mapping[str, Profile] = {
    p.type: p for p in (
        Profile("Patient", _PATIENT, patient=("id",), encrypted=PERSONAL, category="identity"),
        Profile("Practitioner", _PRACTITIONER),
        Profile("PractitionerRole", _PRACTITIONER_ROLE),
        Profile("Organization", _ORGANIZATION),
        Profile("Group", _GROUP),
        Profile("Endpoint", _ENDPOINT),
        Profile("Location", _LOCATION),
        Profile("HealthcareService", _HEALTHCARE_SERVICE),
        Profile("RelatedPerson", _RELATED_PERSON, patient=("patient",), encrypted=PERSONAL,
                category="network"),
        Profile("CareTeam", _CARE_TEAM, patient=("subject",), category="network",
                psy_items=("participant", "role")),
        Profile("Task", _TASK, patient=("for",), category="demarches", psy_paths=("code",)),
        Profile("Observation", _OBSERVATION, patient=("subject",), category="fragility"),
        Profile("Flag", _FLAG, patient=("subject",), category="fragility"),
        Profile("Consent", _CONSENT, patient=("patient",)),
        Profile("AuditEvent", None, patient=("entity.what",)),
        Profile("Provenance", None, patient=("target",)),
        Profile("Communication", None, patient=("subject", "recipient")),
    )
}

SUPPORTED_TYPES: tuple[str, ...] = tuple(t for t, p in PROFILES.items() if p.root is not None)
SERVER_WRITTEN_TYPES: tuple[str, ...] = tuple(t for t, p in PROFILES.items() if p.root is None)
DIRECTORY_TYPES: frozenset[str] = frozenset(
    {"Organization", "Practitioner", "PractitionerRole", "Group", "Endpoint", "Location",
     "HealthcareService"})


def element_at(resource_type: str, path: str) -> Element | None:
    """The declared element at a dotted path, or None.

    Example: "participant.member"; a leading "CareTeam." and "[n]" indexes are ignored.
    """
    profile = PROFILES.get(resource_type)
    if profile is None or profile.root is None:
        return None
    parts = [p.split("[", 1)[0] for p in path.split(".")]
    if parts and parts[0] == resource_type:
        parts = parts[1:]
    current: Element = profile.root
    for part in parts:
        children = current.children if current.children is not None else DATATYPES.get(
            current.type, {})
        child = children.get(part)
        if child is None:
            return None
        current = child
    return current


def allowed_reference_types(resource_type: str, path: str) -> frozenset[str] | None:
    """The resource types a Reference at `path` may point to; None if `path` is no Reference."""
    element = element_at(resource_type, path)
    if element is None or element.type != "Reference":
        return None
    return element.targets


def encrypted_elements(resource_type: str) -> tuple[str, ...]:
    """Top-level elements of this type stored encrypted with the patient's data key (§7)."""
    profile = PROFILES.get(resource_type)
    return () if profile is None else profile.encrypted
