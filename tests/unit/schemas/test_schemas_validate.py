"""validate(): each rejection rule names the element and never echoes the bad value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import schemas
from schemas import Problem, validate
from tests.unit.schemas.examples import care_team, component, consent, observation, task

SECRET = "QXSECRET4711"
FC = schemas.FRAGILITY_COMPONENT_SYSTEM


def only(problems: list[Problem], path: str) -> Problem:
    """The problem at `path`; fails if absent. Also checks no message or path leaks SECRET."""
    for problem in problems:
        assert SECRET not in problem.message
        assert SECRET not in problem.path
        assert SECRET.lower() not in problem.message.lower()
    matching = [p for p in problems if p.path == path]
    assert matching, (path, problems)
    assert path in matching[0].message
    return matching[0]


@pytest.mark.parametrize("build", [task, observation, care_team, consent])
def test_the_examples_are_valid(build: Any) -> None:
    assert validate(build()) == []


@pytest.mark.parametrize(("element", "value"), [
    ("note", [{"text": SECRET}]),
    ("description", SECRET),
    ("comment", SECRET),
])
def test_free_text_elements_are_refused(element: str, value: Any) -> None:
    problem = only(validate({**task(), element: value}), f"Task.{element}")
    assert problem.code == "invalid"
    assert "free text" in problem.message


def test_client_narrative_is_refused() -> None:
    resource = {**task(), "text": {"status": "generated",
                                   "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{SECRET}'
                                          "</div>"}}
    assert only(validate(resource), "Task.text").code == "invalid"


def test_codeable_concept_text_is_refused() -> None:
    resource = task()
    resource["code"]["text"] = SECRET
    assert only(validate(resource), "Task.code.text").code == "invalid"


def test_reference_display_is_refused() -> None:
    resource = task()
    resource["for"]["display"] = SECRET
    assert only(validate(resource), "Task.for.display").code == "invalid"


def test_coding_display_must_be_the_codes_own_display() -> None:
    resource = task()
    resource["code"]["coding"][0]["display"] = SECRET
    assert only(validate(resource), "Task.code.coding[0].display").code == "value"
    for display in ("CPAS/OCMW support", "aide du CPAS", "Steun van het OCMW"):
        resource["code"]["coding"][0]["display"] = display
        assert validate(resource) == []


def test_free_value_string_is_refused() -> None:
    resource = observation()
    resource["component"][1] = component("lives-alone", valueString=SECRET)
    assert only(validate(resource), "Observation.component[1].valueString").code == "invalid"


def test_unknown_element_is_refused() -> None:
    problem = only(validate({**task(), "fooBar": SECRET}), "Task.fooBar")
    assert problem.code == "structure"


def test_fhir_element_outside_the_profile_is_refused() -> None:
    resource = {**task(), "input": [{"type": {"coding": [{"system": "x", "code": "y"}]},
                                     "valueBoolean": True}]}
    assert only(validate(resource), "Task.input").code == "not-supported"


def test_key_that_is_not_element_shaped_is_not_echoed() -> None:
    problems = validate({**task(), f"{SECRET} lives at 3 rue X": 1})
    assert only(problems, "Task.(unnamed)").code == "structure"


@pytest.mark.parametrize(("path", "mutate"), [
    ("Task.status", lambda r: r.update(status=SECRET.lower())),
    ("Task.code.coding[0]", lambda r: r["code"]["coding"][0].update(code=SECRET.lower())),
    ("Task.businessStatus.coding[0]",
     lambda r: r["businessStatus"]["coding"][0].update(system=f"https://x.org/{SECRET}")),
])
def test_unknown_code_is_refused(path: str, mutate: Any) -> None:
    resource = task()
    mutate(resource)
    assert only(validate(resource), path).code == "code-invalid"


@pytest.mark.parametrize("status", ["draft", "received", "ready"])
def test_task_status_outside_section_4_is_refused(status: str) -> None:
    assert only(validate({**task(), "status": status}), "Task.status").code == "code-invalid"


@pytest.mark.parametrize("status", ["requested", "in-progress", "on-hold", "completed",
                                    "cancelled", "failed", "entered-in-error",
                                    "accepted", "rejected"])  # a referral's answer (§14)
def test_task_status_in_section_4_is_accepted(status: str) -> None:
    assert validate({**task(), "status": status}) == []


@pytest.mark.parametrize(("element", "target"), [
    ("for", "Practitioner"), ("owner", "Patient"), ("requester", "RelatedPerson")])
def test_wrong_reference_type_is_refused(element: str, target: str) -> None:
    resource = {**task(), element: {"reference": f"{target}/{SECRET}"}}
    problem = only(validate(resource), f"Task.{element}")
    assert problem.code == "value"
    assert target not in problem.message  # names what is allowed, not what was sent


def test_reference_must_be_relative_type_slash_id() -> None:
    resource = {**task(), "for": {"reference": f"https://other.example/Patient/{SECRET}"}}
    assert only(validate(resource), "Task.for.reference").code == "value"


def test_reference_type_must_match() -> None:
    resource = {**task(), "for": {"reference": "Patient/p1", "type": "Group"}}
    assert only(validate(resource), "Task.for.type").code == "value"


@pytest.mark.parametrize(("index", "value"), [
    (0, {"valueBoolean": True}),  # housing takes a CodeableConcept
    (1, {"valueCodeableConcept": {"coding": [{"system": FC, "code": "adequate"}]}}),
    (1, {"valueInteger": 4711}),
])
def test_wrong_component_value_type_is_refused(index: int, value: dict[str, Any]) -> None:
    resource = observation()
    code = resource["component"][index]["code"]
    resource["component"][index] = {"code": code, **value}
    (key,) = value
    problem = only(validate(resource), f"Observation.component[{index}].{key}")
    assert problem.code in ("value", "not-supported")


def test_component_boolean_must_be_a_json_boolean() -> None:
    resource = observation()
    resource["component"][1]["valueBoolean"] = "true"
    assert only(validate(resource), "Observation.component[1].valueBoolean").code == "structure"


def test_housing_value_must_come_from_housing_status() -> None:
    resource = observation()
    resource["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "lives-alone"
    problems = validate(resource)
    assert only(problems, "Observation.component[0].valueCodeableConcept.coding[0]").code \
        == "code-invalid"


def test_component_needs_a_value_and_appears_once() -> None:
    resource = observation()
    resource["component"].append(component("lives-alone", valueBoolean=False))
    resource["component"].append(component("mobility-limited"))
    problems = validate(resource)
    assert only(problems, "Observation.component[3].code").code == "structure"
    assert only(problems, "Observation.component[4].valueBoolean").code == "required"


def test_housing_value_code_is_not_a_component() -> None:
    resource = observation()
    resource["component"].append(component("none", valueBoolean=True))
    assert only(validate(resource), "Observation.component[3].code.coding[0]").code \
        == "code-invalid"


def test_observation_code_is_fixed() -> None:
    resource = observation()
    resource["code"]["coding"][0]["code"] = "blood-pressure"
    assert only(validate(resource), "Observation.code.coding[0]").code == "code-invalid"


def test_participant_without_role_is_refused() -> None:
    resource = care_team()
    del resource["participant"][0]["role"]
    assert only(validate(resource), "CareTeam.participant[0].role").code == "required"


@pytest.mark.parametrize(("where", "path"), [
    ("root", "CareTeam.extension[0]"),
    ("participant", "CareTeam.participant[0].extension[1]"),
])
def test_unsupported_extension_is_refused(where: str, path: str) -> None:
    resource = care_team()
    unknown = {"url": f"https://example.org/{SECRET}", "valueString": SECRET}
    if where == "root":
        resource["extension"] = [unknown]
    else:
        resource["participant"][0]["extension"].append(unknown)
    assert only(validate(resource), path).code == "not-supported"


def test_known_extension_out_of_place_is_refused() -> None:
    resource = {**task(), "extension": [{"url": schemas.AVAILABLE_AT_DISCHARGE_URL,
                                         "valueBoolean": True}]}
    assert only(validate(resource), "Task.extension[0]").code == "not-supported"


def test_extension_value_type_is_checked() -> None:
    resource = care_team()
    resource["participant"][0]["extension"][0] = {
        "url": schemas.AVAILABLE_AT_DISCHARGE_URL, "valueString": SECRET}
    problems = validate(resource)
    assert only(problems, "CareTeam.participant[0].extension[0].valueString").code == "invalid"
    assert only(problems, "CareTeam.participant[0].extension[0].valueBoolean").code \
        == "required"


def test_primitive_extension_and_modifier_extension_are_refused() -> None:
    resource = {**task(), "_status": {"extension": [{"url": "x", "valueString": SECRET}]},
                "modifierExtension": [{"url": "x", "valueString": SECRET}]}
    problems = validate(resource)
    assert only(problems, "Task._status").code == "not-supported"
    assert only(problems, "Task.modifierExtension").code == "not-supported"


def test_bad_date_is_reported_by_the_model_without_its_value() -> None:
    resource = {**task(), "authoredOn": "2026-13-45"}
    assert only(validate(resource), "Task.authoredOn").code == "value"


def test_period_must_not_end_before_it_starts() -> None:
    resource = {**task(), "executionPeriod": {"start": "2026-05-01", "end": "2026-04-30"}}
    assert only(validate(resource), "Task.executionPeriod").code == "value"
    same_day = {**task(), "executionPeriod": {"start": "2026-05-01", "end": "2026-05-01"}}
    assert validate(same_day) == []


def test_required_elements() -> None:
    problems = validate({"resourceType": "Task", "intent": "order"})
    for element in ("status", "code", "for"):
        assert only(problems, f"Task.{element}").code == "required"


@pytest.mark.parametrize(("value", "path"), [
    (None, "Task.owner"), ({}, "Task.owner"), ([], "Task.partOf"), ("  ", "Task.authoredOn")])
def test_null_and_empty_values_are_refused(value: Any, path: str) -> None:
    element = path.split(".")[1]
    assert only(validate({**task(), element: value}), path).code == "structure"


def test_pseudonymous_patient_is_valid() -> None:
    assert validate({"resourceType": "Patient"}) == []


def test_patient_ssin_check_number() -> None:
    good = {"resourceType": "Patient", "identifier": [
        {"system": schemas.SSIN_SYSTEM, "value": "85073003328"}]}
    assert validate(good) == []
    bad = copy.deepcopy(good)
    bad["identifier"][0]["value"] = "85073003329"
    problem = only(validate(bad), "Patient.identifier[0].value")
    assert problem.code == "value"
    assert "85073003329" not in problem.message


def test_patient_language_must_be_bcp47_from_the_value_set() -> None:
    resource = {"resourceType": "Patient", "communication": [{"language": {"coding": [
        {"system": "urn:ietf:bcp:47", "code": "nl-BE"}]}, "preferred": True}]}
    assert validate(resource) == []
    resource["communication"][0]["language"]["coding"][0]["code"] = "xx-QX"
    assert only(validate(resource), "Patient.communication[0].language.coding[0]").code \
        == "code-invalid"


def test_consent_permit_needs_actor_action_and_categories() -> None:
    resource = consent()
    for name in ("actor", "action", "securityLabel"):
        del resource["provision"][name]
    problems = validate(resource)
    for name in ("actor", "action", "securityLabel"):
        assert only(problems, f"Consent.provision.{name}").code == "required"


def test_consent_deny_without_actor_is_only_a_break_glass_refusal() -> None:
    resource = consent()
    resource["provision"] = {"type": "deny"}
    assert only(validate(resource), "Consent.provision.actor").code == "required"
    resource["provision"]["purpose"] = [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                   "v3-ActReason", "code": "BTG"}]
    assert validate(resource) == []


def test_consent_actor_must_be_practitioner_organization_or_group() -> None:
    resource = consent()
    resource["provision"]["actor"][0]["reference"] = {"reference": "RelatedPerson/x"}
    assert only(validate(resource), "Consent.provision.actor[0].reference").code == "value"


def test_consent_category_must_be_a_dossier_category() -> None:
    resource = consent()
    resource["provision"]["securityLabel"][0]["code"] = "everything"
    assert only(validate(resource), "Consent.provision.securityLabel[0]").code == "code-invalid"


@pytest.mark.parametrize("resource_type", ["AuditEvent", "Provenance", "Communication"])
def test_server_written_types_are_refused(resource_type: str) -> None:
    (problem,) = validate({"resourceType": resource_type})
    assert problem.code == "not-supported"


@pytest.mark.parametrize("body", [[], "Task", None, {"resourceType": SECRET}, {}])
def test_not_a_supported_resource(body: Any) -> None:
    (problem,) = validate(body)
    assert SECRET not in problem.message
    assert problem.code in ("structure", "required", "not-supported")


def test_messages_name_elements_only() -> None:
    resource = task()
    resource.update(note=[{"text": SECRET}], status=SECRET,
                    owner={"reference": f"Patient/{SECRET}"})
    resource["code"]["coding"][0]["code"] = SECRET
    problems = validate(resource)
    assert len(problems) >= 4
    for problem in problems:
        assert SECRET not in problem.message
        assert SECRET not in problem.path
