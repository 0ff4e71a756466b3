"""The fragility rule: table cases, monotonicity, order and determinism, Observation and Flag."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from hypothesis import given
from hypothesis import strategies as st

from dossier.domain.codes import (
    FLAG_DETAIL_URL,
    FRAGILITY_COMPONENT_SYSTEM,
    FRAGILITY_LEVEL_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
)
from dossier.domain.fragility import (
    COMPONENTS,
    LEVELS,
    RISK_FACTORS,
    FragilityError,
    flag_for,
    fragility_level,
    latest_assessment,
    level_for,
    risk_factors,
    with_computed_level,
)
from dossier.errors import Unprocessable
from schemas.validate import validate

MISSING = "missing"  # component not recorded at all
ABSENT = "absent"  # component present with dataAbsentReason and no value

# For each component, its possible answers from least to most risky; answers on
# the same rung carry the same risk.
RUNGS: dict[str, list[list[object]]] = {
    "housing": [[MISSING, ABSENT, "adequate"], ["inadequate"], ["none"]],
    "support-on-return": [[True], [False, MISSING, ABSENT]],
    **{name: [[MISSING, ABSENT, False], [True]]
       for name in COMPONENTS if name not in ("housing", "support-on-return")},
}


def rank(name: str, answer: object) -> int:
    return next(i for i, rung in enumerate(RUNGS[name]) if answer in rung)


def component(name: str, answer: object) -> dict[str, Any]:
    result: dict[str, Any] = {"code": {"coding": [{"system": FRAGILITY_COMPONENT_SYSTEM,
                                                   "code": name}]}}
    if answer == ABSENT:
        result["dataAbsentReason"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "unknown"}]}
    elif name == "housing":
        result["valueCodeableConcept"] = {"coding": [{"system": FRAGILITY_COMPONENT_SYSTEM,
                                                      "code": answer}]}
    else:
        result["valueBoolean"] = answer
    return result


def assessment(answers: dict[str, object], **extra: Any) -> dict[str, Any]:
    """A social-fragility Observation with the given answers (MISSING ones left out)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "social-fragility"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-17T10:00:00+01:00",
        "component": [component(name, answer) for name, answer in answers.items()
                      if answer != MISSING],
        **extra,
    }


def answers_strategy() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({
        name: st.sampled_from([a for rung in RUNGS[name] for a in rung]) for name in COMPONENTS
    })


def order(level: str) -> int:
    return LEVELS.index(level)


# -- the rule, as written in docs/fragility.md ----------------------------------------------

@pytest.mark.parametrize(("answers", "expected"), [
    ({}, "low"),  # nothing known: only "support not confirmed"
    ({"support-on-return": True}, "low"),
    ({"support-on-return": True, "mobility-limited": True}, "low"),
    ({"mobility-limited": True}, "moderate"),  # + support not confirmed
    ({"support-on-return": True, "housing": "inadequate", "income-loss": True}, "moderate"),
    ({"support-on-return": True, "housing": "inadequate", "income-loss": True,
      "language-barrier": True}, "moderate"),
    ({"support-on-return": True, "housing": "inadequate", "income-loss": True,
      "language-barrier": True, "institution-exit": True}, "high"),
    ({"support-on-return": True, "housing": "none"}, "high"),
    ({"lives-alone": True}, "high"),  # alone, nobody confirmed on return
    ({"lives-alone": True, "support-on-return": False}, "high"),
    ({"lives-alone": True, "support-on-return": True}, "low"),
    ({"lives-alone": True, "support-on-return": True, "mobility-limited": True}, "moderate"),
    ({"support-on-return": False, "housing": "adequate", "lives-alone": False}, "low"),
])
def test_rule_table(answers: dict[str, object], expected: str) -> None:
    assert fragility_level(assessment(answers)) == expected


def test_martin_is_high() -> None:
    martin = {"housing": "none", "lives-alone": True, "support-on-return": False,
              "mobility-limited": True, "income-loss": True, "institution-exit": True}
    assert fragility_level(assessment(martin)) == "high"


def test_simone_is_high() -> None:
    simone = {"housing": "adequate", "lives-alone": True, "support-on-return": False,
              "mobility-limited": True, "language-barrier": False}
    assert fragility_level(assessment(simone)) == "high"


def test_risk_factors_read_the_answers() -> None:
    answers = {"housing": "inadequate", "lives-alone": True, "support-on-return": True,
               "mobility-limited": False, "language-barrier": True}
    assert risk_factors(assessment(answers)) == {"housing-inadequate", "lives-alone",
                                                 "language-barrier"}


def test_level_for_rejects_unknown_factors() -> None:
    with pytest.raises(ValueError, match="unknown risk factors"):
        level_for({"lives-alone", "bad-luck"})


# -- invariants ---------------------------------------------------------------------------

@given(answers_strategy(), st.data())
def test_adding_risk_never_lowers_the_level(answers: dict[str, object],
                                            data: st.DataObject) -> None:
    worse = {
        name: data.draw(st.sampled_from(
            [a for rung in RUNGS[name][rank(name, answer):] for a in rung]), label=name)
        for name, answer in answers.items()
    }
    before = fragility_level(assessment(answers))
    after = fragility_level(assessment(worse))
    assert order(after) >= order(before)


def test_every_single_step_up_is_monotone_exhaustively() -> None:
    rung_choices = [range(len(RUNGS[name])) for name in COMPONENTS]
    for ranks in itertools.product(*rung_choices):
        answers = {name: RUNGS[name][r][0] for name, r in zip(COMPONENTS, ranks, strict=True)}
        level = fragility_level(assessment(answers))
        for name, r in zip(COMPONENTS, ranks, strict=True):
            if r + 1 < len(RUNGS[name]):
                raised = fragility_level(assessment({**answers, name: RUNGS[name][r + 1][0]}))
                assert order(raised) >= order(level), (answers, name)


@given(st.sets(st.sampled_from(RISK_FACTORS)), st.sets(st.sampled_from(RISK_FACTORS)))
def test_level_for_is_monotone_in_the_set_of_factors(a: set[str], b: set[str]) -> None:
    assert order(level_for(a | b)) >= order(level_for(a))


@given(answers_strategy(), st.randoms(use_true_random=False))
def test_order_of_components_is_irrelevant(answers: dict[str, object], rnd: Any) -> None:
    observation = assessment(answers)
    shuffled = copy.deepcopy(observation)
    foreign = {"code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
               "valueBoolean": True}
    shuffled["component"].append(foreign)
    rnd.shuffle(shuffled["component"])
    assert fragility_level(shuffled) == fragility_level(observation)


@given(answers_strategy())
def test_rule_is_deterministic_and_leaves_input_alone(answers: dict[str, object]) -> None:
    observation = assessment(answers)
    pristine = copy.deepcopy(observation)
    first = fragility_level(observation)
    assert all(fragility_level(copy.deepcopy(observation)) == first for _ in range(3))
    assert with_computed_level(observation)["valueCodeableConcept"]["coding"][0]["code"] == first
    assert observation == pristine


def test_unknown_component_codes_are_ignored() -> None:
    observation = assessment({"support-on-return": True})
    observation["component"].append({
        "code": {"coding": [{"system": FRAGILITY_COMPONENT_SYSTEM, "code": "owns-a-cat"}]},
        "valueBoolean": True})
    assert fragility_level(observation) == "low"


# -- unreadable components ----------------------------------------------------------------

def test_component_recorded_twice_is_rejected() -> None:
    observation = assessment({"lives-alone": False})
    observation["component"].append(component("lives-alone", True))
    with pytest.raises(FragilityError, match="'lives-alone' is recorded twice") as caught:
        fragility_level(observation)
    assert caught.value.expression == ["Observation.component[1]"]
    assert isinstance(caught.value, Unprocessable)


@pytest.mark.parametrize(("name", "bad"), [
    ("housing", {"valueBoolean": True}),
    ("housing", {"valueCodeableConcept": {"coding": [{"system": FRAGILITY_COMPONENT_SYSTEM,
                                                      "code": "castle"}]}}),
    ("housing", {"valueCodeableConcept": {"coding": [{"system": "http://x", "code": "none"}]}}),
    ("lives-alone", {"valueString": "yes"}),
    ("lives-alone", {"valueBoolean": "true"}),
    ("mobility-limited", {"valueBoolean": True, "valueString": "stairs"}),
])
def test_wrong_value_is_rejected_without_echoing_it(name: str, bad: dict[str, Any]) -> None:
    observation = assessment({})
    observation["component"] = [{"code": component(name, ABSENT)["code"], **bad}]
    with pytest.raises(FragilityError) as caught:
        fragility_level(observation)
    assert caught.value.expression == ["Observation.component[0].value"]
    for secret in ("castle", "stairs", "yes"):
        assert secret not in caught.value.message


# -- Observation value and Flag -----------------------------------------------------------

def test_computed_observation_passes_the_profile() -> None:
    observation = assessment({"housing": "inadequate", "lives-alone": True,
                              "support-on-return": True}, id="o1")
    assert validate(observation) == []
    assert validate(with_computed_level(observation)) == []


def test_client_value_is_replaced_by_the_computed_level() -> None:
    observation = assessment({"housing": "none"}, valueString="fine", id="o1")
    observation["dataAbsentReason"] = {"text": "x"}
    result = with_computed_level(observation)
    assert "valueString" not in result
    assert "dataAbsentReason" not in result
    assert result["valueCodeableConcept"] == {"coding": [
        {"system": FRAGILITY_LEVEL_SYSTEM, "code": "high", "display": "High"}]}
    assert observation["valueString"] == "fine"  # the input is untouched
    Observation.model_validate(result)


def test_a_client_level_is_overwritten() -> None:
    claimed = {"coding": [{"system": FRAGILITY_LEVEL_SYSTEM, "code": "high"}]}
    result = with_computed_level(assessment({"support-on-return": True},
                                            valueCodeableConcept=claimed))
    assert result["valueCodeableConcept"]["coding"][0]["code"] == "low"


@pytest.mark.parametrize(("answers", "level", "status"), [
    ({"support-on-return": True}, "low", "inactive"),
    ({"mobility-limited": True}, "moderate", "active"),
    ({"housing": "none"}, "high", "active"),
])
def test_flag_follows_the_assessment(answers: dict[str, object], level: str, status: str) -> None:
    flag = flag_for(assessment(answers, id="obs-7"), "Patient/p1", flag_id="flag-1")
    assert flag["id"] == "flag-1"
    assert flag["status"] == status
    assert flag["code"]["coding"][0] == {"system": FRAGILITY_LEVEL_SYSTEM, "code": level,
                                         "display": level.capitalize()}
    assert flag["subject"] == {"reference": "Patient/p1"}
    assert flag["period"] == {"start": "2026-11-17T10:00:00+01:00"}
    assert flag["extension"] == [{"url": FLAG_DETAIL_URL,
                                  "valueReference": {"reference": "Observation/obs-7"}}]
    Flag.model_validate(flag)
    assert validate(flag) == []


def test_flag_without_ids_or_date() -> None:
    observation = assessment({"housing": "none"})
    del observation["effectiveDateTime"]
    flag = flag_for(observation, "Patient/p1")
    assert "id" not in flag
    assert "extension" not in flag
    assert "period" not in flag
    Flag.model_validate(flag)


def test_latest_assessment_is_followed() -> None:
    old = assessment({"housing": "none"}, id="a", effectiveDateTime="2026-01-05")
    new = assessment({"support-on-return": True}, id="b",
                     effectiveDateTime="2026-02-01T09:00:00+01:00")
    wrong = assessment({}, id="c", status="entered-in-error", effectiveDateTime="2026-03-01")
    other = {"resourceType": "Observation", "id": "d", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
             "effectiveDateTime": "2026-04-01"}
    undated = assessment({}, id="e")
    del undated["effectiveDateTime"]
    assert latest_assessment([old, wrong, new, other, undated]) == new
    assert latest_assessment([other, wrong]) is None
    assert latest_assessment([undated]) == undated


def test_latest_assessment_ties_break_on_last_updated_then_id() -> None:
    a = assessment({}, id="a", meta={"lastUpdated": "2026-02-01T10:00:00Z"})
    b = assessment({}, id="b", meta={"lastUpdated": "2026-02-01T09:00:00Z"})
    c = assessment({}, id="c", meta={"lastUpdated": "2026-02-01T10:00:00Z"})
    assert latest_assessment([a, b]) == a
    assert latest_assessment([c, a, b]) == c
