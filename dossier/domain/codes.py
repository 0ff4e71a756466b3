"""Canonical URLs (SPEC §12) used by the domain rules.

Written out here so the domain depends on nothing but the contract; `schemas/`
holds the code systems themselves and must use the same URLs.
"""

from __future__ import annotations

BASE = "https://dossier.brussels/fhir"

CATEGORY_SYSTEM = f"{BASE}/CodeSystem/dossier-category"
OBSERVATION_CODE_SYSTEM = f"{BASE}/CodeSystem/dossier-observation"
FRAGILITY_COMPONENT_SYSTEM = f"{BASE}/CodeSystem/fragility-component"
FRAGILITY_LEVEL_SYSTEM = f"{BASE}/CodeSystem/fragility-level"
NETWORK_ROLE_SYSTEM = f"{BASE}/CodeSystem/network-role"
DEMARCHE_TYPE_SYSTEM = f"{BASE}/CodeSystem/demarche-type"
# Not named in §12: the value set of Task.businessStatus (§4). Keep in step with schemas/.
BUSINESS_STATUS_SYSTEM = f"{BASE}/CodeSystem/demarche-business-status"
READINESS_REASON_SYSTEM = f"{BASE}/CodeSystem/readiness-reason"

AVAILABLE_AT_DISCHARGE_URL = f"{BASE}/StructureDefinition/available-at-discharge"
# Standard R4 extension: the resource a Flag summarises.
FLAG_DETAIL_URL = "http://hl7.org/fhir/StructureDefinition/flag-detail"

SOCIAL_FRAGILITY = "social-fragility"
