"""The social-fragility indicator: one fixed rule over seven recorded facts.

docs/fragility.md states the rule and its reasons for the people who use it.
Everything here is pure: FHIR JSON dicts in, FHIR JSON dicts or codes out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from dossier.domain._time import start_of
from dossier.domain.codes import (
    FLAG_DETAIL_URL,
    FRAGILITY_COMPONENT_SYSTEM,
    FRAGILITY_LEVEL_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    SOCIAL_FRAGILITY,
)
from dossier.errors import Unprocessable

COMPONENTS = (
    "housing",
    "lives-alone",
    "support-on-return",
    "mobility-limited",
    "language-barrier",
    "income-loss",
    "institution-exit",
)
HOUSING_VALUES = ("adequate", "inadequate", "none")
LEVELS = ("low", "moderate", "high")  # in rising order
LEVEL_DISPLAY = {"low": "Low", "moderate": "Moderate", "high": "High"}

# The risk factors the rule counts. Housing gives at most one of the first two.
RISK_FACTORS = (
    "no-housing",
    "housing-inadequate",
    "lives-alone",
    "no-support-on-return",
    "mobility-limited",
    "language-barrier",
    "income-loss",
    "institution-exit",
)
# Yes/no components where "true" is the risk (support-on-return is the opposite).
_RISK_WHEN_TRUE = ("lives-alone", "mobility-limited", "language-barrier", "income-loss",
                   "institution-exit")
HIGH_FROM_COUNT = 4
MODERATE_FROM_COUNT = 2

_IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled"})
_NEVER = datetime.min.replace(tzinfo=UTC)


class FragilityError(Unprocessable):
    """A fragility component the rule cannot read (wrong type, unknown code, recorded twice)."""

    code = "invalid"


def _code_in(concept: Any, system: str) -> str | None:
    """The first code of `system` in a CodeableConcept, if any."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == system:
            code = coding.get("code")
            return code if isinstance(code, str) else None
    return None


def _value_keys(element: dict[str, Any]) -> list[str]:
    return [key for key in element if key.startswith("value")]


def recorded_components(observation: dict[str, Any]) -> dict[str, bool | str]:
    """The components recorded with a value: bools, and the housing code.

    Components of other code systems or with codes the rule does not know are
    ignored; a component with no value (e.g. only dataAbsentReason) is unknown.
    """
    found: dict[str, bool | str] = {}
    for index, component in enumerate(observation.get("component") or []):
        name = _code_in(component.get("code"), FRAGILITY_COMPONENT_SYSTEM)
        if name not in COMPONENTS:
            continue
        where = f"Observation.component[{index}]"
        if name in found:
            raise FragilityError(f"Fragility component '{name}' is recorded twice.",
                                 expression=[where])
        value = _component_value(name, component, where)
        if value is not None:
            found[name] = value
    return found


def _component_value(name: str, component: dict[str, Any], where: str) -> bool | str | None:
    keys = _value_keys(component)
    if not keys:
        return None
    if name == "housing":
        housing = _code_in(component.get("valueCodeableConcept"), FRAGILITY_COMPONENT_SYSTEM)
        if keys != ["valueCodeableConcept"] or housing not in HOUSING_VALUES:
            raise FragilityError(
                "Fragility component 'housing' needs valueCodeableConcept with one of "
                f"{', '.join(HOUSING_VALUES)} from {FRAGILITY_COMPONENT_SYSTEM}.",
                expression=[f"{where}.value"])
        return housing
    flag = component.get("valueBoolean")
    if keys != ["valueBoolean"] or not isinstance(flag, bool):
        raise FragilityError(f"Fragility component '{name}' needs valueBoolean.",
                             expression=[f"{where}.value"])
    return flag


def risk_factors(observation: dict[str, Any]) -> frozenset[str]:
    """The risk factors present. Support on return counts as missing unless confirmed."""
    recorded = recorded_components(observation)
    risks: set[str] = set()
    housing = recorded.get("housing")
    if housing == "none":
        risks.add("no-housing")
    elif housing == "inadequate":
        risks.add("housing-inadequate")
    if recorded.get("support-on-return") is not True:
        risks.add("no-support-on-return")
    risks.update(name for name in _RISK_WHEN_TRUE if recorded.get(name) is True)
    return frozenset(risks)


def level_for(risks: Iterable[str]) -> str:
    """The rule itself (docs/fragility.md): high, moderate or low from the risk factors."""
    present = frozenset(risks)
    unknown = present.difference(RISK_FACTORS)
    if unknown:
        raise ValueError(f"unknown risk factors: {', '.join(sorted(unknown))}")
    if ("no-housing" in present
            or {"lives-alone", "no-support-on-return"} <= present
            or len(present) >= HIGH_FROM_COUNT):
        return "high"
    if len(present) >= MODERATE_FROM_COUNT:
        return "moderate"
    return "low"


def fragility_level(observation: dict[str, Any]) -> str:
    """"low", "moderate" or "high" for a social-fragility Observation's components."""
    return level_for(risk_factors(observation))


def level_concept(level: str) -> dict[str, Any]:
    """The fragility-level CodeableConcept for a level."""
    if level not in LEVELS:
        raise ValueError(f"unknown fragility level: {level}")
    return {"coding": [{"system": FRAGILITY_LEVEL_SYSTEM, "code": level,
                        "display": LEVEL_DISPLAY[level]}]}


def with_computed_level(observation: dict[str, Any]) -> dict[str, Any]:
    """A copy whose value is the computed level; any value a client sent is dropped."""
    result = copy.deepcopy(observation)
    for key in _value_keys(result):
        del result[key]
    result.pop("dataAbsentReason", None)  # a value is now present (FHIR obs-6)
    result["valueCodeableConcept"] = level_concept(fragility_level(observation))
    return result


def is_fragility_assessment(resource: dict[str, Any]) -> bool:
    """True for an Observation coded dossier-observation#social-fragility."""
    return (resource.get("resourceType") == "Observation"
            and _code_in(resource.get("code"), OBSERVATION_CODE_SYSTEM) == SOCIAL_FRAGILITY)


def effective_time(observation: dict[str, Any]) -> str | None:
    """When the assessment applies: effectiveDateTime, else the start of effectivePeriod."""
    for value in (observation.get("effectiveDateTime"),
                  (observation.get("effectivePeriod") or {}).get("start"),
                  observation.get("effectiveInstant")):
        if isinstance(value, str):
            return value
    return None


def latest_assessment(observations: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The assessment the Flag and the discharge check follow.

    Latest effective time, then latest meta.lastUpdated, then highest id;
    entered-in-error and cancelled assessments are skipped; undated ones count
    as oldest.
    """
    def key(observation: dict[str, Any]) -> tuple[datetime, datetime, str]:
        effective = effective_time(observation)
        updated = (observation.get("meta") or {}).get("lastUpdated")
        return (start_of(effective) if effective else _NEVER,
                start_of(updated) if isinstance(updated, str) else _NEVER,
                str(observation.get("id", "")))

    candidates = [o for o in observations
                  if is_fragility_assessment(o) and o.get("status") not in _IGNORED_STATUSES]
    return max(candidates, key=key, default=None)


def flag_for(observation: dict[str, Any], patient_ref: str,
             flag_id: str | None = None) -> dict[str, Any]:
    """The Flag kept in step with an assessment: active at moderate or high, inactive at low.

    No Flag.category: the profile in schemas/ does not take one; the server's
    meta.security label (dossier-category#fragility) says what kind of flag it is.
    """
    level = fragility_level(observation)
    flag: dict[str, Any] = {"resourceType": "Flag"}
    if flag_id is not None:
        flag["id"] = flag_id
    if observation.get("id"):
        flag["extension"] = [{"url": FLAG_DETAIL_URL,
                              "valueReference": {"reference": f"Observation/{observation['id']}"}}]
    flag["status"] = "inactive" if level == "low" else "active"
    flag["code"] = level_concept(level)
    flag["subject"] = {"reference": patient_ref}
    effective = effective_time(observation)
    if effective is not None:
        flag["period"] = {"start": effective}
    return flag
