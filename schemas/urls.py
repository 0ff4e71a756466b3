"""Canonical URLs of the dossier's definitions and of the outside systems it names (SPEC §12)."""

from __future__ import annotations

CANONICAL = "https://dossier.brussels/fhir"


def code_system_url(name: str) -> str:
    """`DB/CodeSystem/<name>`."""
    return f"{CANONICAL}/CodeSystem/{name}"


def value_set_url(name: str) -> str:
    """`DB/ValueSet/<name>`."""
    return f"{CANONICAL}/ValueSet/{name}"


def structure_definition_url(name: str) -> str:
    """`DB/StructureDefinition/<name>`."""
    return f"{CANONICAL}/StructureDefinition/{name}"


# Belgian be.core conventions.
SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
PROFESSION_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty"

# The dossier's own code systems.
CATEGORY_SYSTEM = code_system_url("dossier-category")
DEMARCHE_TYPE_SYSTEM = code_system_url("demarche-type")
BUSINESS_STATUS_SYSTEM = code_system_url("demarche-business-status")
NETWORK_ROLE_SYSTEM = code_system_url("network-role")
OBSERVATION_CODE_SYSTEM = code_system_url("dossier-observation")
FRAGILITY_COMPONENT_SYSTEM = code_system_url("fragility-component")
FRAGILITY_LEVEL_SYSTEM = code_system_url("fragility-level")
COMMUNICATION_CATEGORY_SYSTEM = code_system_url("communication-category")
ORGANISATION_SECTOR_SYSTEM = code_system_url("organisation-sector")

REPRESENTATIVE_MANDATE_URL = structure_definition_url("representative-mandate")

SOCIAL_FRAGILITY = "social-fragility"
ACCESS_NOTIFICATION = "access-notification"

# Extensions.
AVAILABLE_AT_DISCHARGE_URL = structure_definition_url("available-at-discharge")
LOG_INDEX_URL = structure_definition_url("log-index")
FLAG_DETAIL_URL = "http://hl7.org/fhir/StructureDefinition/flag-detail"  # standard R4 extension

# HL7 terminology used in security labels and Consent (§4, §12).
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONSENT_ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
BCP47 = "urn:ietf:bcp:47"
