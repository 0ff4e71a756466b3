"""schemas: what the dossier may hold (SPEC §4, §7, §12).

FHIR definitions (code systems, value sets, extensions) under `definitions/`,
objective-only profiles in `profiles`, and the functions the server builds on:
validation, compartment, categories and security labels, search indexing.
Pure: no I/O beyond reading the package's own JSON files.
"""

from __future__ import annotations

from schemas.compartment import patient_of, references
from schemas.labels import (
    CATEGORIES,
    REDACTED,
    categories,
    keep_psy_items,
    psy_items,
    security_labels,
    without_psy_items,
)
from schemas.problem import Problem
from schemas.profiles import (
    DIRECTORY_TYPES,
    SERVER_WRITTEN_TYPES,
    SUPPORTED_TYPES,
    allowed_reference_types,
    encrypted_elements,
)
from schemas.search import SearchParam, extract_index, identifiers, search_parameters
from schemas.terminology import code_systems, structure_definitions, value_sets
from schemas.urls import (
    ACCESS_NOTIFICATION,
    AVAILABLE_AT_DISCHARGE_URL,
    BUSINESS_STATUS_SYSTEM,
    CANONICAL,
    CATEGORY_SYSTEM,
    COMMUNICATION_CATEGORY_SYSTEM,
    DEMARCHE_TYPE_SYSTEM,
    FLAG_DETAIL_URL,
    FRAGILITY_COMPONENT_SYSTEM,
    FRAGILITY_LEVEL_SYSTEM,
    LOG_INDEX_URL,
    NETWORK_ROLE_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    ORGANISATION_SECTOR_SYSTEM,
    PROFESSION_SYSTEM,
    SOCIAL_FRAGILITY,
    SSIN_SYSTEM,
    V3_ACT_CODE,
    V3_CONFIDENTIALITY,
    code_system_url,
    value_set_url,
)
from schemas.validate import validate

__all__ = [
    "ACCESS_NOTIFICATION",
    "AVAILABLE_AT_DISCHARGE_URL",
    "BUSINESS_STATUS_SYSTEM",
    "CANONICAL",
    "CATEGORIES",
    "CATEGORY_SYSTEM",
    "COMMUNICATION_CATEGORY_SYSTEM",
    "DEMARCHE_TYPE_SYSTEM",
    "DIRECTORY_TYPES",
    "FLAG_DETAIL_URL",
    "FRAGILITY_COMPONENT_SYSTEM",
    "FRAGILITY_LEVEL_SYSTEM",
    "LOG_INDEX_URL",
    "NETWORK_ROLE_SYSTEM",
    "OBSERVATION_CODE_SYSTEM",
    "ORGANISATION_SECTOR_SYSTEM",
    "PROFESSION_SYSTEM",
    "REDACTED",
    "SERVER_WRITTEN_TYPES",
    "SOCIAL_FRAGILITY",
    "SSIN_SYSTEM",
    "SUPPORTED_TYPES",
    "V3_ACT_CODE",
    "V3_CONFIDENTIALITY",
    "Problem",
    "SearchParam",
    "allowed_reference_types",
    "categories",
    "code_system_url",
    "code_systems",
    "encrypted_elements",
    "extract_index",
    "identifiers",
    "keep_psy_items",
    "patient_of",
    "psy_items",
    "references",
    "search_parameters",
    "security_labels",
    "structure_definitions",
    "validate",
    "value_set_url",
    "value_sets",
    "without_psy_items",
]
