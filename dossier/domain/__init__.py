"""Pure domain rules of the dossier: fragility, discharge readiness, démarches.

FHIR JSON dicts in, values or FHIR JSON dicts out; no database, no web, no clock
(the caller passes the time).
"""

from __future__ import annotations

from dossier.domain.demarches import (
    TASK_STATUSES,
    TRANSITIONS,
    DemarcheError,
    InvalidBusinessStatus,
    InvalidTransition,
    check_business_status,
    check_transition,
    is_closed,
    reopening,
    timeline,
)
from dossier.domain.fragility import (
    COMPONENTS,
    FragilityError,
    flag_for,
    fragility_level,
    latest_assessment,
    with_computed_level,
)
from dossier.domain.readiness import Readiness, Reason, discharge_readiness, readiness_parameters

__all__ = [
    "COMPONENTS",
    "TASK_STATUSES",
    "TRANSITIONS",
    "DemarcheError",
    "FragilityError",
    "InvalidBusinessStatus",
    "InvalidTransition",
    "Readiness",
    "Reason",
    "check_business_status",
    "check_transition",
    "discharge_readiness",
    "flag_for",
    "fragility_level",
    "is_closed",
    "latest_assessment",
    "readiness_parameters",
    "reopening",
    "timeline",
    "with_computed_level",
]
