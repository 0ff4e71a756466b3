"""Properties over generated resources: valid ones pass, every mutation is refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from tests.unit.schemas.strategies import VALID, invalid_resource, mutations, resources

PAIRS = [(t, kind) for t in sorted(VALID) for kind in mutations(t)]


@pytest.mark.parametrize("resource_type", sorted(VALID))
@given(data=st.data())
def test_valid_resources_pass(resource_type: str, data: st.DataObject) -> None:
    resource = data.draw(VALID[resource_type])
    assert schemas.validate(resource) == []
    get_fhir_model_class(resource_type).model_validate(resource)  # plain R4 for the model too


@pytest.mark.parametrize(("resource_type", "kind"), PAIRS)
@settings(max_examples=25)
@given(data=st.data())
def test_mutations_are_refused_without_echo(resource_type: str, kind: str,
                                            data: st.DataObject) -> None:
    resource, secret, _ = data.draw(invalid_resource(resource_type, kind))
    problems = schemas.validate(resource)
    assert problems
    for problem in problems:
        assert problem.path.startswith(resource_type)
        assert problem.code in ("invalid", "code-invalid", "required", "structure", "value",
                                "not-supported")
        if secret is not None:
            assert secret.casefold() not in problem.message.casefold()
            assert secret.casefold() not in problem.path.casefold()


@given(resources())
def test_compartment_and_categories_agree(resource: dict[str, Any]) -> None:
    resource_type = resource["resourceType"]
    patient = schemas.patient_of(resource)
    cats = schemas.categories(resource)
    if resource_type in schemas.DIRECTORY_TYPES:
        assert patient is None
        assert cats == frozenset()
    elif resource_type == "Patient":
        assert patient == (f"Patient/{resource['id']}" if "id" in resource else None)
    else:
        assert patient is not None
        assert patient in {ref for _, ref in schemas.references(resource)}
    if resource_type == "Consent":
        assert cats == frozenset()
    labels = schemas.security_labels(cats)
    assert {c["code"] for c in labels if c["system"] == schemas.CATEGORY_SYSTEM} == cats


@given(resources())
def test_index_rows_name_declared_parameters_and_never_identifiers(
        resource: dict[str, Any]) -> None:
    params = schemas.search_parameters(resource["resourceType"])
    values = {i[1] for i in schemas.identifiers(resource)}
    for name, system, value in schemas.extract_index(resource):
        if name.endswith(":exact"):  # a string parameter's text as written (`:exact`)
            assert params[name.removesuffix(":exact")].type == "string"
            continue
        assert name in params
        assert name != "identifier"
        assert value not in values
        param = params[name]
        if param.type == "reference":
            assert system is None
            assert not param.target_types or value.split("/")[0] in param.target_types
        if param.type == "date":
            assert len(value) == 27
            assert value.endswith("Z")


@given(resources())
def test_every_reference_is_found_and_its_type_allowed(resource: dict[str, Any]) -> None:
    for path, reference in schemas.references(resource):
        allowed = schemas.allowed_reference_types(resource["resourceType"], path)
        if ".extension[" in path:
            continue  # extension references are typed by the extension definition
        assert allowed is not None, path
        assert reference.split("/")[0] in allowed


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["coding", "system", "code", "reference", "extension", "url",
                         "valueBoolean", "start", "end", "text", "x y", "_code"]),
        inner, max_size=4),
    max_leaves=12)


_keys = st.sampled_from(["id", "meta", "status", "code", "for", "subject", "participant",
                         "component", "provision", "identifier", "extension", "name", "note"])


def _junk(resource_type: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(_keys, _json, max_size=5).map(
        lambda body: {**body, "resourceType": resource_type})


@given(st.sampled_from(sorted(VALID)).flatmap(_junk))
def test_arbitrary_json_never_crashes_validation(resource: dict[str, Any]) -> None:
    for problem in schemas.validate(resource):
        assert problem.path.startswith(resource["resourceType"])
    schemas.categories(resource)
    schemas.patient_of(resource)
    schemas.references(resource)
    schemas.extract_index(resource)
    schemas.identifiers(resource)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value inside a JSON document."""
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        found.append((node, key))
        found.extend(_slots(value))
    return found


@given(resources(), st.data())
def test_junk_anywhere_in_a_valid_resource_never_crashes(resource: dict[str, Any],
                                                        data: st.DataObject) -> None:
    resource = copy.deepcopy(resource)
    container, key = data.draw(st.sampled_from(_slots(resource)))
    if key == "resourceType":
        return
    container[key] = data.draw(_json)
    for problem in schemas.validate(resource):
        assert problem.path.startswith(resource["resourceType"])
    schemas.categories(resource)
    schemas.patient_of(resource)
    schemas.extract_index(resource)
