"""Endpoint (the locator's directory): objective-only, a server address that is https
(http only on loopback) and never carries credentials."""

from __future__ import annotations

from typing import Any

import pytest

import schemas
from schemas import validate
from tests.unit.schemas.examples import endpoint

SECRET = "qxsecret4711"


def test_the_example_is_valid_and_in_the_directory() -> None:
    assert validate(endpoint()) == []
    assert "Endpoint" in schemas.DIRECTORY_TYPES
    assert schemas.patient_of(endpoint()) is None
    assert schemas.categories(endpoint()) == frozenset()


@pytest.mark.parametrize("address", [
    "https://hub.abrumet.example/fhir", "https://hub.example:8443/r4/",
    "http://127.0.0.1:8080/fhir", "http://localhost/fhir", "http://[::1]/fhir",
])
def test_accepted_addresses(address: str) -> None:
    assert validate({**endpoint(), "address": address}) == []


@pytest.mark.parametrize("address", [
    f"http://{SECRET}.example/fhir",  # http off loopback
    f"https://{SECRET}:pw@hub.example/fhir", f"https://hub.example/fhir?key={SECRET}",
    f"https://hub.example/fhir#{SECRET}", f"ftp://{SECRET}.example/", f"/fhir/{SECRET}",
    f"https://hub.example/{'x' * 250}", f"https://hub.example/fhir {SECRET}",
])
def test_refused_addresses_are_named_never_echoed(address: str) -> None:
    problems = validate({**endpoint(), "address": address})
    assert problems
    assert any(p.path == "Endpoint.address" for p in problems)
    for problem in problems:
        assert SECRET not in problem.message.casefold() and "pw" not in problem.message


@pytest.mark.parametrize(("change", "path", "code"), [
    ({"connectionType": None}, "Endpoint.connectionType", "required"),
    ({"payloadType": None}, "Endpoint.payloadType", "required"),
    ({"address": None}, "Endpoint.address", "required"),
    ({"status": None}, "Endpoint.status", "required"),
    ({"status": "retired"}, "Endpoint.status", "code-invalid"),
    ({"connectionType": {"system": "http://terminology.hl7.org/CodeSystem/"
                                   "endpoint-connection-type", "code": "ihe-xcpd"}},
     "Endpoint.connectionType", "code-invalid"),
    ({"payloadType": [{"text": "FHIR R4"}]}, "Endpoint.payloadType[0].text", "invalid"),
    ({"header": ["Authorization: Bearer x"]}, "Endpoint.header", "not-supported"),
    ({"managingOrganization": {"reference": "Practitioner/p1"}},
     "Endpoint.managingOrganization", "value"),
    ({"text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                             "x</div>"}}, "Endpoint.text", "invalid"),
])
def test_profile_rules(change: dict[str, Any], path: str, code: str) -> None:
    resource = endpoint()
    for key, value in change.items():
        if value is None:
            del resource[key]
        else:
            resource[key] = value
    found = [p for p in validate(resource) if p.path == path]
    assert found and found[0].code == code, validate(resource)


def test_search_index() -> None:
    rows = schemas.extract_index(endpoint())
    assert ("organization", None, "Organization/o1") in rows
    assert ("status", "http://hl7.org/fhir/endpoint-status", "active") in rows
    assert ("address", None, "https://hub.abrumet.example/fhir") in rows
    assert ("connection-type", "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "hl7-fhir-rest") in rows
    assert schemas.allowed_reference_types("Endpoint", "managingOrganization") == {
        "Organization"}
