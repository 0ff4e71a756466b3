"""The JSON definitions: valid FHIR, canonical URLs, the §12 codes, translations, bindings."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

import schemas
from schemas import terminology
from schemas.profiles import BOUND_BY_RULE, DATATYPES, EXTENSIONS, PROFILES, Element

ALL = [*schemas.code_systems(), *schemas.value_sets(), *schemas.structure_definitions()]

SPEC_CODES = {  # §12: these must exist (each code system may hold more)
    "dossier-category": {"identity", "demarches", "network", "fragility", "psy"},
    "demarche-type": {
        "unemployment-benefits", "cpas-support", "housing-application", "emergency-shelter",
        "health-insurance", "medical-card", "debt-mediation", "residence-permit",
        "disability-allowance", "care-home-admission", "mental-health-follow-up"},
    "network-role": {
        "general-practitioner", "social-worker", "home-nurse", "case-manager", "informal-carer",
        "family", "neighbour", "volunteer", "care-home", "psychologist"},
    "dossier-observation": {"social-fragility"},
    "fragility-component": {
        "housing", "lives-alone", "support-on-return", "mobility-limited", "language-barrier",
        "income-loss", "institution-exit", "adequate", "inadequate", "none"},
    "fragility-level": {"low", "moderate", "high"},
    "communication-category": {"access-notification"},
    "demarche-business-status": {
        "awaiting-documents", "appointment-set", "decision-positive", "decision-negative"},
    "organisation-sector": {"social", "health", "housing", "justice"},
}


def _system(url: str) -> dict[str, Any]:
    return next(cs for cs in schemas.code_systems() if cs["url"] == url)


@pytest.mark.parametrize("resource", ALL, ids=lambda r: f"{r['resourceType']}-{r['id']}")
def test_every_definition_is_valid_r4(resource: dict[str, Any]) -> None:
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert model.model_dump(mode="json", by_alias=True)["url"] == resource["url"]


@pytest.mark.parametrize("resource", ALL, ids=lambda r: f"{r['resourceType']}-{r['id']}")
def test_canonical_url_is_built_from_the_id(resource: dict[str, Any]) -> None:
    if resource["url"] == schemas.PROFESSION_SYSTEM:
        return  # the local fragment keeps eHealth's own URL
    assert resource["url"] == f"{schemas.CANONICAL}/{resource['resourceType']}/{resource['id']}"


@pytest.mark.parametrize(("name", "codes"), sorted(SPEC_CODES.items()))
def test_section_12_codes_exist(name: str, codes: set[str]) -> None:
    carried = {c["code"] for c in _system(schemas.code_system_url(name))["concept"]}
    assert codes <= carried


def test_profession_fragment_holds_the_section_12_professions() -> None:
    carried = {c["code"] for c in _system(schemas.PROFESSION_SYSTEM)["concept"]}
    assert {"persphysician", "persnurse", "perssocialworker", "perspsychologist",
            "persphysiotherapist", "perspharmacist"} <= carried
    assert _system(schemas.PROFESSION_SYSTEM)["content"] == "fragment"


@pytest.mark.parametrize("cs", schemas.code_systems(), ids=lambda cs: cs["id"])
def test_every_concept_has_english_french_and_dutch(cs: dict[str, Any]) -> None:
    assert cs["count"] == len(cs["concept"])
    for concept in cs["concept"]:
        languages = {d["language"] for d in concept["designation"] if d["value"].strip()}
        assert concept["display"].strip()
        assert {"fr", "nl"} <= languages


def test_psy_marks_mental_health_codes_only() -> None:
    def psy(url: str) -> set[str]:
        return {c["code"] for c in _system(url)["concept"]
                if terminology.concept_property(url, c["code"], "psy") is True}

    assert psy(schemas.DEMARCHE_TYPE_SYSTEM) == {"mental-health-follow-up", "addiction-care"}
    assert "psychologist" in psy(schemas.NETWORK_ROLE_SYSTEM)
    assert "general-practitioner" not in psy(schemas.NETWORK_ROLE_SYSTEM)
    assert "perspsychologist" in psy(schemas.PROFESSION_SYSTEM)


def test_housing_values_and_component_value_types_come_from_the_code_system() -> None:
    system = schemas.FRAGILITY_COMPONENT_SYSTEM
    assert terminology.concept_property(system, "housing", "value-type") == "CodeableConcept"
    housing = terminology.concept_property(system, "housing", "value-set")
    assert terminology.codes(str(housing)) == {"adequate", "inadequate", "none"}
    for code in terminology.codes(schemas.value_set_url("fragility-component")) - {"housing"}:
        assert terminology.concept_property(system, code, "value-type") == "boolean"
    assert not terminology.codes(schemas.value_set_url("fragility-component")) & {
        "adequate", "inadequate", "none"}


def _bindings(element: Element) -> list[tuple[str, str | None]]:
    found = [(element.type, element.binding)]
    children = element.children if element.children is not None else DATATYPES.get(
        element.type, {})
    for child in children.values():
        found.extend(_bindings(child))
    return found


def test_every_coded_element_has_a_binding_to_a_value_set_we_ship() -> None:
    shipped = {vs["url"] for vs in schemas.value_sets()}
    for profile in PROFILES.values():
        if profile.root is None:
            continue
        for kind, binding in _bindings(profile.root):
            if kind in ("CodeableConcept", "Coding"):
                assert binding is not None, profile.type
            if binding is not None and binding != BOUND_BY_RULE:
                assert binding in shipped, binding
    for definition in EXTENSIONS.values():
        assert definition.value.binding is None or definition.value.binding in shipped


@pytest.mark.parametrize("vs", schemas.value_sets(), ids=lambda vs: vs["id"])
def test_value_sets_expand_and_our_codes_exist(vs: dict[str, Any]) -> None:
    members = terminology.expansion(vs["url"])
    assert members
    ours = {cs["url"] for cs in schemas.code_systems()}
    for system, code in members:
        if system in ours:
            assert terminology.display(system, code) is not None, (system, code)


def test_extensions_have_a_structure_definition_or_are_standard() -> None:
    ours = {sd["url"] for sd in schemas.structure_definitions()}
    assert schemas.AVAILABLE_AT_DISCHARGE_URL in ours
    assert schemas.LOG_INDEX_URL in ours
    assert set(EXTENSIONS) - ours == {schemas.FLAG_DETAIL_URL}


def test_loaders_return_copies() -> None:
    first = schemas.code_systems()
    first[0]["concept"].clear()
    assert schemas.code_systems()[0]["concept"]
