"""The §12 Consent encoding: fixtures, every rejection, and the round trip."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.consent import Consent
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    ConsentFormatError,
    Provision,
    parse_consent,
    render_consent,
    validate_consent,
)
from tests.unit.consent.consent_strategies import consent_ids, denies, permits

FIXTURES = Path(__file__).parent / "fixtures"
DOCS = Path(__file__).parents[3] / "docs" / "consent.md"
BRUSSELS = ZoneInfo("Europe/Brussels")


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_follows_the_encoding(name: str) -> None:
    assert validate_consent(fixture(name)) == []


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_is_valid_fhir_r4(name: str) -> None:
    Consent.model_validate(fixture(name))  # raises if not


def test_profession_grant_reads_as_expected() -> None:
    assert parse_consent(fixture("grant-profession.json")) == Provision(
        consent_id="grant-gps",
        type="permit",
        actors=frozenset({"Group/profession-persphysician"}),
        actions=frozenset({"access"}),
        categories=frozenset({"identity", "network", "fragility"}),
        start=datetime(2027, 1, 15, 9, 0, tzinfo=UTC),
        end=datetime(2028, 1, 15, 9, 0, tzinfo=UTC),
        patient="Patient/p-0001",
    )


def test_exclusion_covers_everything_it_does_not_name() -> None:
    parsed = parse_consent(fixture("exclusion.json"))
    assert parsed is not None
    assert (parsed.type, parsed.actors) == ("deny", frozenset({"Practitioner/dr-x"}))
    assert parsed.actions == parsed.categories == parsed.purposes == frozenset()


def test_break_glass_refusal_reads_as_expected() -> None:
    parsed = parse_consent(fixture("refuse-break-glass.json"))
    assert parsed is not None
    assert (parsed.type, parsed.actors) == ("deny", frozenset())
    assert parsed.purposes == {"BTG"}


def test_date_period_covers_whole_days_in_brussels() -> None:
    parsed = parse_consent(fixture("grant-organization.json"))  # 2027-02-01 .. 2027-07-31
    assert parsed is not None
    assert parsed.start == datetime(2027, 2, 1, tzinfo=BRUSSELS)
    assert parsed.end == datetime(2027, 8, 1, tzinfo=BRUSSELS)  # exclusive: 31 July included


@pytest.mark.parametrize(
    ("start", "end", "lower", "upper"),
    [
        ("2027", "2027", datetime(2027, 1, 1), datetime(2028, 1, 1)),
        ("2027-03", "2027-12", datetime(2027, 3, 1), datetime(2028, 1, 1)),
        ("2027-03-27", "2027-03-28", datetime(2027, 3, 27), datetime(2027, 3, 29)),
    ],
)
def test_partial_dates_become_brussels_bounds(
    start: str, end: str, lower: datetime, upper: datetime
) -> None:
    resource = fixture("grant-practitioner-psy.json")
    resource["provision"]["period"] = {"start": start, "end": end}
    parsed = parse_consent(resource)
    assert parsed is not None
    assert parsed.start == lower.replace(tzinfo=BRUSSELS)
    assert parsed.end == upper.replace(tzinfo=BRUSSELS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-03-28T01:30:00Z", datetime(2027, 3, 28, 1, 30, tzinfo=UTC)),
        ("2027-03-28T03:30:00+02:00", datetime(2027, 3, 28, 1, 30, tzinfo=UTC)),
        ("2027-03-28T01:30:00.123456789-00:00", datetime(2027, 3, 28, 1, 30, 0, 123456, UTC)),
        ("2027-03-28T15:30:00+14:00", datetime(2027, 3, 28, 1, 30, tzinfo=UTC)),
    ],
)
def test_full_date_times_keep_their_instant(text: str, expected: datetime) -> None:
    resource = fixture("grant-practitioner-psy.json")
    resource["provision"]["period"] = {"start": text, "end": text}
    parsed = parse_consent(resource)
    assert parsed is not None
    assert parsed.start == parsed.end == expected


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2027-01-31T10:00:00+01:00", "2027-01-31"),  # until the end of that day
        ("2027-01-31T10:00:00+01:00", "2027-01-31T10:00:00+01:00"),  # empty, harmless
        ("2027-01", "2027-01-31"),
    ],
)
def test_accepts_periods_that_do_not_end_before_they_start(start: str, end: str) -> None:
    resource = fixture("grant-profession.json")
    resource["provision"]["period"] = {"start": start, "end": end}
    assert validate_consent(resource) == []


def test_inactive_consent_has_no_effect() -> None:
    assert parse_consent(fixture("revoked-grant.json")) is None
    for status in ("draft", "proposed", "rejected", "entered-in-error"):
        resource = fixture("grant-profession.json") | {"status": status}
        assert validate_consent(resource) == []
        assert parse_consent(resource) is None


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    """Set (or, with value ..., delete) a dotted path such as provision.actor.0.role."""

    def mutate(resource: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = resource
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        leaf: Any = int(last) if last.isdigit() else last
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value

    return mutate


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


CATEGORY = "https://dossier.brussels/fhir/CodeSystem/dossier-category"
# (why, base fixture, mutation, the path that must be reported)
REJECTIONS: list[tuple[str, str, Mutation, str]] = [
    ("wrong resource type", "grant-profession.json", _set("resourceType", "Patient"),
     "resourceType"),
    ("bad id", "grant-profession.json", _set("id", "has space"), "Consent.id"),
    ("unknown status", "grant-profession.json", _set("status", "bogus"), "Consent.status"),
    ("missing status", "grant-profession.json", _set("status", ...), "Consent.status"),
    ("status not a string", "grant-profession.json", _set("status", ["active"]),
     "Consent.status"),
    ("wrong scope", "grant-profession.json",
     _set("scope", _coding("http://terminology.hl7.org/CodeSystem/consentscope", "research")),
     "Consent.scope"),
    ("missing scope", "grant-profession.json", _set("scope", ...), "Consent.scope"),
    ("wrong category", "grant-profession.json",
     _set("category", [_coding("http://loinc.org", "64292-6")]), "Consent.category"),
    ("missing patient", "grant-profession.json", _set("patient", ...), "Consent.patient"),
    ("patient not a Patient", "grant-profession.json",
     _set("patient", {"reference": "Group/g1"}), "Consent.patient.reference"),
    ("absolute patient reference", "grant-profession.json",
     _set("patient", {"reference": "https://x.example/fhir/Patient/p1"}),
     "Consent.patient.reference"),
    ("opt-out policy", "grant-profession.json",
     _set("policyRule", _coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTOUT")),
     "Consent.policyRule"),
    ("modifier extension", "grant-profession.json",
     _set("modifierExtension", [{"url": "https://x.example/x", "valueBoolean": True}]),
     "Consent.modifierExtension"),
    ("missing provision", "grant-profession.json", _set("provision", ...), "Consent.provision"),
    ("unknown provision type", "grant-profession.json", _set("provision.type", "maybe"),
     "Consent.provision.type"),
    ("nested provision", "grant-profession.json",
     _set("provision.provision", [{"type": "deny"}]), "Consent.provision.provision"),
    ("provision.data", "grant-profession.json",
     _set("provision.data", [{"meaning": "instance", "reference": {"reference": "Task/t1"}}]),
     "Consent.provision.data"),
    ("provision.class", "grant-profession.json",
     _set("provision.class", [{"system": "http://hl7.org/fhir/resource-types", "code": "Task"}]),
     "Consent.provision.class"),
    ("provision modifier extension", "grant-profession.json",
     _set("provision.modifierExtension", [{"url": "https://x.example/x", "valueBoolean": True}]),
     "Consent.provision.modifierExtension"),
    ("actor is a Patient", "grant-profession.json",
     _set("provision.actor.0.reference", {"reference": "Patient/p2"}),
     "Consent.provision.actor[0].reference.reference"),
    ("actor is an arbitrary Group", "grant-profession.json",
     _set("provision.actor.0.reference", {"reference": "Group/friends"}),
     "Consent.provision.actor[0].reference.reference"),
    ("profession code not lower-case", "grant-profession.json",
     _set("provision.actor.0.reference", {"reference": "Group/profession-PersNurse"}),
     "Consent.provision.actor[0].reference.reference"),
    ("actor by identifier only", "grant-profession.json",
     _set("provision.actor.0.reference", {"identifier": {"value": "x"}}),
     "Consent.provision.actor[0].reference.reference"),
    ("actor without role", "grant-profession.json", _set("provision.actor.0.role", ...),
     "Consent.provision.actor[0].role"),
    ("actor not an array", "grant-profession.json", _set("provision.actor", {}),
     "Consent.provision.actor"),
    ("action outside access|collect", "grant-profession.json",
     _set("provision.action.0",
          _coding("http://terminology.hl7.org/CodeSystem/consentaction", "disclose")),
     "Consent.provision.action[0]"),
    ("action from another system", "grant-profession.json",
     _set("provision.action.0", _coding("https://x.example/actions", "access")),
     "Consent.provision.action[0]"),
    ("label from another system", "grant-profession.json",
     _set("provision.securityLabel.0",
          {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}),
     "Consent.provision.securityLabel[0].system"),
    ("unknown category", "grant-profession.json",
     _set("provision.securityLabel.0", {"system": CATEGORY, "code": "finance"}),
     "Consent.provision.securityLabel[0].code"),
    ("purpose from another system", "refuse-break-glass.json",
     _set("provision.purpose.0", {"system": "https://x.example/why", "code": "BTG"}),
     "Consent.provision.purpose[0].system"),
    ("purpose without code", "refuse-break-glass.json",
     _set("provision.purpose.0.code", ...), "Consent.provision.purpose[0].code"),
    ("period start after end", "grant-profession.json",
     _set("provision.period", {"start": "2027-02-01", "end": "2027-01-31"}),
     "Consent.provision.period"),
    ("period time without zone", "grant-profession.json",
     _set("provision.period.start", "2027-01-15T10:00:00"), "Consent.provision.period.start"),
    ("period end not a date", "grant-profession.json",
     _set("provision.period.end", "next year"), "Consent.provision.period.end"),
    ("impossible date", "grant-profession.json",
     _set("provision.period.end", "2027-02-30"), "Consent.provision.period.end"),
    ("zone out of range", "grant-profession.json",
     _set("provision.period.end", "2027-02-01T10:00:00+15:00"), "Consent.provision.period.end"),
    ("period not an object", "grant-profession.json", _set("provision.period", "2027"),
     "Consent.provision.period"),
    ("permit without actor", "grant-profession.json", _set("provision.actor", ...),
     "Consent.provision.actor"),
    ("permit without action", "grant-profession.json", _set("provision.action", []),
     "Consent.provision.action"),
    ("permit without category", "grant-profession.json", _set("provision.securityLabel", ...),
     "Consent.provision.securityLabel"),
]


@pytest.mark.parametrize(
    ("base", "mutate", "path"), [case[1:] for case in REJECTIONS], ids=[c[0] for c in REJECTIONS]
)
def test_rejects_what_the_encoding_does_not_allow(base: str, mutate: Mutation, path: str) -> None:
    resource = fixture(base)
    mutate(resource)
    problems = validate_consent(resource)
    assert path in [where for where, _ in problems]
    with pytest.raises(ConsentFormatError) as raised:
        parse_consent(resource)
    assert raised.value.problems == problems


def test_nested_provision_says_so() -> None:
    resource = fixture("grant-profession.json")
    resource["provision"]["provision"] = [{"type": "deny"}]
    assert any("nested provisions are not supported" in m for _, m in validate_consent(resource))


@pytest.mark.parametrize("value", [None, [], "Consent", 3])
def test_rejects_what_is_not_an_object(value: Any) -> None:
    assert validate_consent(value) == [("Consent", "must be a JSON object")]


def test_malformed_consent_is_rejected_whatever_its_status() -> None:
    resource = fixture("revoked-grant.json")
    resource["provision"]["type"] = "maybe"
    with pytest.raises(ConsentFormatError):
        parse_consent(resource)


def test_errors_never_echo_submitted_values() -> None:
    secret = "85073100123-Jane-Doe"
    resource = fixture("grant-profession.json")
    resource["id"] = secret + " x"
    resource["status"] = secret
    resource["patient"] = {"reference": f"Patient/{secret} x"}
    resource["provision"]["actor"][0]["reference"] = {"reference": f"Patient/{secret}"}
    resource["provision"]["period"]["end"] = secret
    resource["provision"]["purpose"] = [{"system": secret, "code": secret}]
    with pytest.raises(ConsentFormatError) as raised:
        parse_consent(resource)
    assert len(raised.value.problems) >= 6
    assert isinstance(raised.value, ValueError)
    assert "85073100123" not in str(raised.value)
    assert "Jane" not in repr(raised.value.problems)


def test_render_requires_a_patient() -> None:
    glass = Provision("c1", "deny", purposes=frozenset({"BTG"}))
    with pytest.raises(ValueError, match="patient"):
        render_consent(glass)
    with pytest.raises(ValueError, match="status"):
        render_consent(glass, "Patient/p1", status="revoked")
    assert render_consent(glass, "Patient/p1", status="inactive")["status"] == "inactive"


@settings(max_examples=150, deadline=None)
@given(provision=st.one_of(permits, denies), consent_id=consent_ids)
def test_render_then_parse_is_identity(provision: Provision, consent_id: str | None) -> None:
    original = replace(provision, consent_id=consent_id, patient="Patient/p-0001")
    resource = render_consent(original)
    assert validate_consent(resource) == []
    assert parse_consent(resource) == original
    Consent.model_validate(resource)


def _doc_examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    loaded = [json.loads(block) for block in blocks]
    return [b for b in loaded if isinstance(b, dict) and b.get("resourceType") == "Consent"]


def test_docs_examples_follow_the_encoding() -> None:
    examples = _doc_examples()
    assert len(examples) >= 4
    for example in examples:
        assert validate_consent(copy.deepcopy(example)) == []
        Consent.model_validate(example)
