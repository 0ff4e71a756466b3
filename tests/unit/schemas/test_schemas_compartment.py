"""categories(), security_labels(), patient_of(), references(), search indexing, encryption."""

from __future__ import annotations

from typing import Any

import pytest

import schemas
from tests.unit.schemas.examples import care_team, consent, observation, task

ROLE = schemas.NETWORK_ROLE_SYSTEM


def test_supported_and_server_written_types() -> None:
    assert schemas.SUPPORTED_TYPES == (
        "Patient", "Practitioner", "PractitionerRole", "Organization", "Group", "Endpoint",
        "Location", "HealthcareService", "RelatedPerson", "CareTeam", "Task", "Observation",
        "Flag", "Consent")
    assert schemas.SERVER_WRITTEN_TYPES == ("AuditEvent", "Provenance", "Communication")
    assert {"Organization", "Practitioner", "PractitionerRole", "Group",
            "Endpoint", "Location", "HealthcareService"} == schemas.DIRECTORY_TYPES


@pytest.mark.parametrize(("resource", "expected"), [
    ({"resourceType": "Patient", "id": "p1"}, {"identity"}),
    ({"resourceType": "RelatedPerson"}, {"network"}),
    (care_team(), {"network"}),
    (task(), {"demarches"}),
    (observation(), {"fragility"}),
    ({"resourceType": "Flag"}, {"fragility"}),
    (consent(), set()),
    ({"resourceType": "Practitioner"}, set()),
    ({"resourceType": "Group"}, set()),
    ({"resourceType": "AuditEvent"}, set()),
    ({"resourceType": "Unknown"}, set()),
])
def test_categories(resource: dict[str, Any], expected: set[str]) -> None:
    assert schemas.categories(resource) == expected


def test_mental_health_demarche_is_psy() -> None:
    resource = task()
    resource["code"]["coding"][0]["code"] = "mental-health-follow-up"
    assert schemas.categories(resource) == {"demarches", "psy"}


@pytest.mark.parametrize("role", ["psychologist", "psychiatrist", "general-practitioner"])
def test_a_mental_health_participant_is_psy_by_itself(role: str) -> None:
    """SPEC §14: one psy participant labels that participant, not the whole network map."""
    resource = care_team()
    resource["participant"].append({"role": [{"coding": [{"system": ROLE, "code": role}]}],
                                    "member": {"reference": "Practitioner/x"}})
    psy = role != "general-practitioner"
    assert schemas.categories(resource) == {"network"}
    assert schemas.psy_items(resource) == ([len(resource["participant"]) - 1] if psy else [])
    redacted = schemas.without_psy_items(resource)
    if psy:
        assert len(redacted["participant"]) == len(resource["participant"]) - 1
        assert schemas.REDACTED in redacted["meta"]["security"]
        assert "Practitioner/x" not in str(redacted)
        kept = schemas.keep_psy_items({**redacted, "status": "inactive"}, resource)
        assert kept["participant"] == resource["participant"]
    else:
        assert redacted is resource


def test_a_team_of_psy_participants_only_is_psy() -> None:
    resource = care_team()
    resource["participant"] = [{"role": [{"coding": [{"system": ROLE, "code": "psychologist"}]}],
                                "member": {"reference": "Practitioner/x"}}]
    assert schemas.categories(resource) == {"network", "psy"}


def test_psy_is_fail_safe() -> None:
    """Any psy-marked coding at a psy path counts, even beside other codings."""
    resource = task()
    resource["code"]["coding"].append({"system": ROLE, "code": "psychologist"})
    assert schemas.categories(resource) == {"demarches", "psy"}
    resource["code"]["coding"][1]["code"] = "family"
    assert schemas.categories(resource) == {"demarches"}


def _codes(labels: list[dict[str, str]], system: str) -> list[str]:
    return [label["code"] for label in labels if label["system"] == system]


def test_security_labels() -> None:
    psy = schemas.security_labels(frozenset({"psy", "demarches"}))
    assert _codes(psy, schemas.CATEGORY_SYSTEM) == ["demarches", "psy"]
    assert _codes(psy, schemas.V3_ACT_CODE) == ["SOC", "PSY"]
    assert _codes(psy, schemas.V3_CONFIDENTIALITY) == ["V"]
    identity = schemas.security_labels(frozenset({"identity"}))
    assert _codes(identity, schemas.V3_ACT_CODE) == []
    assert _codes(identity, schemas.V3_CONFIDENTIALITY) == ["R"]
    network = schemas.security_labels(frozenset({"network"}))
    assert _codes(network, schemas.V3_ACT_CODE) == ["SOC"]
    assert schemas.security_labels(frozenset()) == []
    assert all(label["display"] for label in psy)
    with pytest.raises(ValueError, match="unknown"):
        schemas.security_labels(frozenset({"everything"}))


@pytest.mark.parametrize("code", ["cpas-support", "mental-health-follow-up"])
def test_security_labels_pass_the_meta_binding(code: str) -> None:
    resource = task()
    resource["code"]["coding"][0]["code"] = code
    resource["meta"] = {"security": schemas.security_labels(schemas.categories(resource))}
    assert schemas.validate(resource) == []


@pytest.mark.parametrize(("resource", "expected"), [
    ({"resourceType": "Patient", "id": "p1"}, "Patient/p1"),
    ({"resourceType": "Patient"}, None),
    (task(), "Patient/p1"),
    (care_team(), "Patient/p1"),
    (observation(), "Patient/p1"),
    (consent(), "Patient/p1"),
    ({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/p2"}}, "Patient/p2"),
    ({"resourceType": "Flag", "subject": {"reference": "Patient/p3"}}, "Patient/p3"),
    ({"resourceType": "Organization", "name": "CPAS"}, None),
    ({"resourceType": "Communication", "recipient": [{"reference": "Patient/p4"}]},
     "Patient/p4"),
    ({"resourceType": "AuditEvent", "entity": [{"what": {"reference": "Task/t"}},
                                               {"what": {"reference": "Patient/p5"}}]},
     "Patient/p5"),
    ({"resourceType": "Task", "for": {"reference": "Group/g"}}, None),
])
def test_patient_of(resource: dict[str, Any], expected: str | None) -> None:
    assert schemas.patient_of(resource) == expected


def test_references_lists_every_reference_with_its_path() -> None:
    found = schemas.references(consent())
    assert found == [("Consent.patient", "Patient/p1"),
                     ("Consent.provision.actor[0].reference", "Group/profession-persnurse")]
    assert ("CareTeam.participant[0].member", "RelatedPerson/rp1") in schemas.references(
        care_team())


@pytest.mark.parametrize(("resource_type", "path", "expected"), [
    ("Task", "for", {"Patient"}),
    ("Task", "Task.owner", {"Organization"}),
    ("Task", "requester", {"Practitioner", "PractitionerRole", "Organization"}),
    ("CareTeam", "CareTeam.participant[2].member",
     {"Practitioner", "PractitionerRole", "RelatedPerson", "Organization", "Patient"}),
    ("Consent", "provision.actor.reference", {"Practitioner", "Organization", "Group"}),
    ("PractitionerRole", "organization", {"Organization"}),
    ("Group", "member.entity", {"Practitioner", "PractitionerRole"}),
    ("Task", "status", None),
    ("Task", "nothing", None),
    ("AuditEvent", "agent.who", None),
])
def test_allowed_reference_types(resource_type: str, path: str,
                                 expected: set[str] | None) -> None:
    assert schemas.allowed_reference_types(resource_type, path) == expected


def test_encrypted_elements() -> None:
    for resource_type in ("Patient", "RelatedPerson"):
        assert {"identifier", "name", "birthDate", "address", "telecom"} <= set(
            schemas.encrypted_elements(resource_type))
    assert schemas.encrypted_elements("Task") == ()
    assert schemas.encrypted_elements("Nope") == ()


def test_search_parameters_shape() -> None:
    task_params = schemas.search_parameters("Task")
    assert task_params["patient"].type == "reference"
    assert task_params["patient"].target_types == {"Patient"}
    assert task_params["owner"].paths == ("owner",)
    assert task_params["authored-on"].type == "date"
    assert schemas.search_parameters("Consent")["actor"].paths == ("provision.actor.reference",)
    assert schemas.search_parameters("Observation")["date"].paths == ("effectiveDateTime",)
    assert "name" not in schemas.search_parameters("Patient")
    assert "birthdate" not in schemas.search_parameters("Patient")
    assert schemas.search_parameters("Patient")["identifier"].type == "token"
    assert schemas.search_parameters("Nope") == {}
    for resource_type in (*schemas.SUPPORTED_TYPES, *schemas.SERVER_WRITTEN_TYPES):
        for name, param in schemas.search_parameters(resource_type).items():
            assert name == param.name
            assert param.type in ("token", "reference", "date", "string")
            assert param.paths or param.territory in ("served", "serves")  # the territory
            if param.type != "reference":
                assert param.target_types == frozenset()


def test_extract_index_for_a_task() -> None:
    rows = schemas.extract_index(task())
    assert ("patient", None, "Patient/p1") in rows
    assert ("owner", None, "Organization/o1") in rows
    assert ("status", "http://hl7.org/fhir/task-status", "in-progress") in rows
    assert ("code", schemas.DEMARCHE_TYPE_SYSTEM, "cpas-support") in rows
    assert ("business-status", schemas.BUSINESS_STATUS_SYSTEM, "awaiting-documents") in rows
    assert ("authored-on", None, "2026-03-02T09:00:00.000000Z") in rows
    # a date without time is read in Europe/Brussels (UTC+1 in March)
    assert ("period", None, "2026-03-01T23:00:00.000000Z") in rows
    assert len(rows) == len(set(rows))


def test_extract_index_for_consent_and_observation() -> None:
    rows = schemas.extract_index(consent())
    assert ("actor", None, "Group/profession-persnurse") in rows
    assert ("security-label", schemas.CATEGORY_SYSTEM, "fragility") in rows
    assert ("action", "http://terminology.hl7.org/CodeSystem/consentaction", "access") in rows
    obs = schemas.extract_index(observation())
    assert ("date", None, "2026-03-02T09:00:00.000000Z") in obs
    assert ("component-code", schemas.FRAGILITY_COMPONENT_SYSTEM, "housing") in obs


def test_identifiers_are_returned_apart_and_never_indexed() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "active": True, "identifier": [
        {"system": schemas.SSIN_SYSTEM, "value": "85073003328"}]}
    assert schemas.identifiers(patient) == [(schemas.SSIN_SYSTEM, "85073003328")]
    rows = schemas.extract_index(patient)
    assert rows == [("active", None, "true")]


def test_string_index_is_casefolded_without_accents() -> None:
    org = {"resourceType": "Organization", "name": "CPAS d'Anderlecht — Équipe"}
    assert ("name", None, "cpas d'anderlecht — equipe") in schemas.extract_index(org)
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Dubois",
                                                             "given": ["Zoë"]}]}
    rows = schemas.extract_index(practitioner)
    assert ("name", None, "dubois") in rows
    assert ("name", None, "zoe") in rows
