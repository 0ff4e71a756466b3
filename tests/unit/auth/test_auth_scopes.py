"""SMART v2 scope parsing and matching, with hypothesis round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auth.errors import InvalidToken
from auth.scopes import (
    INTERACTIONS,
    Scope,
    allows,
    covered,
    format_scopes,
    parse_scope,
    parse_scopes,
)

contexts = st.sampled_from(["patient", "user", "system"])
resource_types = st.one_of(
    st.just("*"),
    st.sampled_from(["Patient", "Task", "CareTeam", "Observation", "Consent", "AuditEvent"]),
    st.from_regex(r"[A-Z][A-Za-z]{0,20}", fullmatch=True),
)
interaction_sets = st.frozensets(st.sampled_from(list(INTERACTIONS)), min_size=1)
scopes = st.builds(Scope, contexts, resource_types, interaction_sets)


@given(st.lists(scopes, unique=True, max_size=8))
def test_any_v2_scope_string_round_trips(values: list[Scope]) -> None:
    text = format_scopes(values)
    assert parse_scopes(text) == tuple(values)
    assert format_scopes(parse_scopes(text)) == text


@given(contexts, resource_types)
def test_v1_read_is_rs_and_write_is_cud(context: str, resource_type: str) -> None:
    assert parse_scope(f"{context}/{resource_type}.read") == \
        parse_scope(f"{context}/{resource_type}.rs")
    assert parse_scope(f"{context}/{resource_type}.write") == \
        parse_scope(f"{context}/{resource_type}.cud")
    assert parse_scope(f"{context}/{resource_type}.*") == \
        parse_scope(f"{context}/{resource_type}.cruds")


@given(scopes, st.sampled_from(list(INTERACTIONS)), resource_types)
def test_allows_matches_type_or_star_and_the_interaction(scope: Scope, interaction: str,
                                                         resource_type: str) -> None:
    expected = (interaction in scope.interactions
                and scope.resource_type in ("*", resource_type))
    assert allows([scope], resource_type, interaction) is expected


@given(st.text(max_size=40))
def test_parser_never_fails_other_than_invalid_token(text: str) -> None:
    try:
        parsed = parse_scopes(text)
    except InvalidToken:
        return
    assert all(isinstance(s, Scope) for s in parsed)


def test_openid_and_launch_scopes_grant_nothing() -> None:
    assert parse_scopes("openid fhirUser launch launch/patient offline_access profile") == ()


def test_examples_from_the_spec() -> None:
    assert parse_scopes("patient/*.rs user/Task.cruds system/*.rs") == (
        Scope("patient", "*", frozenset("rs")),
        Scope("user", "Task", frozenset("cruds")),
        Scope("system", "*", frozenset("rs")),
    )


def test_duplicates_and_extra_spaces_are_harmless() -> None:
    assert parse_scopes("  user/Task.rs  user/Task.read ") == (
        Scope("user", "Task", frozenset("rs")),)


def test_a_query_restricted_scope_grants_nothing() -> None:
    # The narrowing cannot be enforced, so the scope must not widen to the whole type.
    assert parse_scopes("patient/Observation.rs?category=laboratory") == ()


@pytest.mark.parametrize("garbage", [
    "patient/Observation", "patient/Observation.", "patient/Observation.x",
    "patient/Observation.sr", "patient/Observation.rr", "patient/Observation.READ",
    "Patient/Observation.rs", "admin/*.rs", "patient/observation.rs", "patient/*",
    "patient/**.rs", "patient/Obs-ervation.rs", "patient//Observation.rs",
    "system/*.rs\tuser/*.rs", "user/*.rs\"", "user/*.rs\\", "réservé",
    "user/*.rs " + "x" * 5000, "hello",
])
def test_garbage_raises_invalid_token(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        parse_scopes(garbage)


def test_matrix_of_allows() -> None:
    granted = parse_scopes("user/Task.cu user/Observation.read user/*.s")
    table = {(t, i): allows(granted, t, i)
             for t in ("Task", "Observation", "Consent") for i in INTERACTIONS}
    assert {k for k, v in table.items() if v} == {
        ("Task", "c"), ("Task", "u"), ("Task", "s"),
        ("Observation", "r"), ("Observation", "s"), ("Consent", "s"),
    }


def test_allows_refuses_an_unknown_interaction() -> None:
    with pytest.raises(ValueError, match="interaction"):
        allows([], "Task", "x")


def test_covered_checks_each_interaction_in_the_same_context() -> None:
    granted = parse_scopes("system/Patient.r system/*.s user/*.cruds")
    assert covered(granted, Scope("system", "Patient", frozenset("rs")))
    assert not covered(granted, Scope("system", "Patient", frozenset("u")))
    assert not covered(granted, Scope("system", "*", frozenset("r")))
    assert covered(granted, Scope("system", "*", frozenset("s")))
