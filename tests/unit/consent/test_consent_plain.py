"""The plain reader (consent/parse.py `_read_plain`) against the full one (`_read`).

parse_consent reads a Consent in the plain form (the §12 encoding exactly as
render_consent writes it) without the full reader's paths and problem list, and hands
anything else to the full reader. These properties hold it to one rule: on any input,
the plain reader is either UNSURE or gives exactly the full reader's answer.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import CATEGORY_SYSTEM, ConsentFormatError, Provision, parse_consent, render_consent
from consent.parse import (
    ACTION_SYSTEM,
    LOINC_SYSTEM,
    POLICY_SYSTEM,
    PURPOSE_SYSTEM,
    SCOPE_SYSTEM,
    UNSURE,
    _read,
    _read_plain,
)
from tests.unit.consent.consent_strategies import consent_ids, denies, permits
from tests.unit.consent.test_consent_parse import REJECTIONS, Mutation, fixture

FIXTURES = Path(__file__).parent / "fixtures"
ERROR = "malformed"


def full(resource: Any) -> Provision | str | None:
    """The full reader's answer, as parse_consent gives it (ERROR for a raise)."""
    problems, status, provision = _read(resource)
    if problems or provision is None:
        return ERROR
    return provision if status == "active" else None


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON tree (dict keys and list indices), the root excluded."""
    found = []
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


# values that nearly fit: the encoding's own systems, codes, references and dates
NEAR = st.sampled_from([
    SCOPE_SYSTEM, LOINC_SYSTEM, POLICY_SYSTEM, ACTION_SYSTEM, PURPOSE_SYSTEM, CATEGORY_SYSTEM,
    "patient-privacy", "59284-0", "OPTIN", "OPTOUT", "access", "collect", "disclose",
    "identity", "psy", "finance", "BTG", " BTG", "B  TG", "", "permit", "deny", "maybe",
    "active", "inactive", "Active", "Practitioner/p1", "Organization/o1", "Patient/p1",
    "Group/profession-persnurse", "Group/friends", "Group/profession-PersNurse",
    "2027-01-15", "2027-02-30", "2027-01-15T10:00:00", "2027-01-15T10:00:00+15:00",
    "2027-01-15T10:00:00Z", "2026", "2028-01", "has space", "c1",
])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | NEAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["system", "code", "coding", "reference", "role", "start", "end",
                         "display", "type"]), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A rendered Consent with one to three places deleted, replaced or added to."""
    provision = replace(draw(st.one_of(permits, denies)), consent_id=draw(consent_ids),
                        patient="Patient/p-0001")
    status = draw(st.sampled_from(["active", "inactive", "draft"]))
    resource = render_consent(provision, status=status)
    for _ in range(draw(st.integers(1, 3))):
        places = paths(resource)
        if not places:
            break
        *parents, last = draw(st.sampled_from(places))
        node: Any = resource
        for key in parents:
            node = node[key]
        action = draw(st.sampled_from(["delete", "replace", "near", "add"]))
        if action == "delete":
            del node[last]
        elif action == "replace":
            node[last] = draw(JSON_VALUES)
        elif action == "near":
            node[last] = draw(NEAR)
        elif isinstance(node[last], dict):
            node[last][draw(st.sampled_from(["display", "extension", "modifierExtension",
                                             "provision", "data", "text"]))] = draw(JSON_VALUES)
        elif isinstance(node[last], list):
            node[last].append(draw(JSON_VALUES))
    return resource


@st.composite
def leaf_mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A rendered Consent with one or two of its texts replaced by a text that nearly
    fits (most problems hide in one text: a code, a reference, a date)."""
    provision = replace(draw(st.one_of(permits, denies)), consent_id=draw(consent_ids),
                        patient="Patient/p-0001")
    resource = render_consent(provision, status=draw(st.sampled_from(["active", "inactive"])))
    for _ in range(draw(st.integers(1, 2))):
        leaves = [place for place in paths(resource) if isinstance(_at(resource, place), str)]
        *parents, last = draw(st.sampled_from(leaves))
        _at(resource, tuple(parents))[last] = draw(NEAR)
    return resource


def _at(node: Any, place: tuple[Any, ...]) -> Any:
    for key in place:
        node = node[key]
    return node


@settings(max_examples=300, deadline=None)
@given(provision=st.one_of(permits, denies), consent_id=consent_ids,
       status=st.sampled_from(["active", "inactive", "proposed", "entered-in-error"]))
def test_what_render_writes_is_read_plainly(provision: Provision, consent_id: str | None,
                                           status: str) -> None:
    """The form the dossier writes never needs the full reader, and reads the same."""
    resource = render_consent(replace(provision, consent_id=consent_id,
                                      patient="Patient/p-0001"), status=status)
    plain = _read_plain(resource)
    assert plain is not UNSURE
    assert plain == full(resource)
    assert parse_consent(resource) == plain


@settings(max_examples=1000, deadline=None)
@given(resource=mutated())
def test_plain_is_unsure_or_the_full_answer(resource: dict[str, Any]) -> None:
    before = copy.deepcopy(resource)
    plain = _read_plain(resource)
    answer = full(resource)
    assert resource == before  # neither reader changes what it reads
    if plain is not UNSURE:
        assert answer != ERROR, "the plain reader accepted what the full reader refuses"
        assert plain == answer
    if answer == ERROR:
        with pytest.raises(ConsentFormatError):
            parse_consent(resource)
    else:
        assert parse_consent(resource) == answer


@settings(max_examples=1000, deadline=None)
@given(resource=leaf_mutated())
def test_a_near_miss_text_is_unsure_or_the_full_answer(resource: dict[str, Any]) -> None:
    plain = _read_plain(resource)
    if plain is not UNSURE:
        assert full(resource) != ERROR, "the plain reader accepted what the full one refuses"
        assert plain == full(resource)


@given(value=JSON_VALUES)
def test_what_is_not_a_consent_is_unsure(value: Any) -> None:
    assert _read_plain(value) is UNSURE


@pytest.mark.parametrize(("base", "mutate"), [case[1:3] for case in REJECTIONS],
                         ids=[case[0] for case in REJECTIONS])
def test_every_refusal_of_the_full_reader_is_unsure(base: str, mutate: Mutation) -> None:
    assert _read_plain(fixture(base)) is not UNSURE  # the fixtures are in the plain form
    resource = fixture(base)
    mutate(resource)
    assert full(resource) == ERROR
    assert _read_plain(resource) is UNSURE


@pytest.mark.parametrize("element", ["actor", "action", "securityLabel", "purpose"])
@pytest.mark.parametrize("value", [{}, "", 0, False, {"code": "access"}, "access"])
def test_an_array_that_is_not_one_is_unsure(element: str, value: Any) -> None:
    """On a deny, where an empty list is allowed, a falsy or lone value is not one."""
    resource = fixture("exclusion.json")
    resource["provision"][element] = value
    assert full(resource) == ERROR
    assert _read_plain(resource) is UNSURE


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_fixtures_read_plainly_and_the_same(name: str) -> None:
    resource = json.loads((FIXTURES / name).read_text())
    assert _read_plain(resource) == full(resource) == parse_consent(resource)


def test_a_display_or_extra_coding_goes_to_the_full_reader() -> None:
    """Shapes a hub may send that the full reader accepts: read the same, by it."""
    resource = render_consent(Provision("c1", "permit", actors=frozenset({"Practitioner/p1"}),
                                        actions=frozenset({"access"}),
                                        categories=frozenset({"identity"})), "Patient/p1")
    resource["scope"]["coding"][0]["display"] = "Privacy Consent"
    resource["provision"]["action"][0]["coding"].append({"system": "https://x.example",
                                                         "code": "read"})
    assert _read_plain(resource) is UNSURE
    assert parse_consent(resource) == full(resource) != ERROR


@pytest.mark.parametrize("choices", [
    {"kind": "permit", "actor": "Practitioner/p1", "categories": ["identity", "demarches"],
     "actions": ["access", "collect"], "start": "2027-01-15", "end": "2027-12-31",
     "now": "2027-01-15T10:00:00+01:00"},
    {"kind": "permit", "actor": "Group/profession-persnurse", "categories": ["network"],
     "actions": ["access"]},
    {"kind": "deny", "actor": "Organization/o1", "categories": ["psy"]},
    {"kind": "deny", "purpose": "BTG", "categories": ["fragility"]},
])
def test_what_the_portal_writes_is_read_plainly(choices: dict[str, Any]) -> None:
    """The portal's and the operations' builder (dossier/domain/consents.py) writes the
    plain form too: the people's own Consents take the fast path."""
    from dossier.domain.consents import consent_body

    kind = choices.pop("kind")
    resource = consent_body("p-0001", kind, **choices)
    plain = _read_plain(resource)
    assert plain is not UNSURE
    assert plain == full(resource)
