"""Issue 16, fuzzing in the suite (bounded): every type × search parameter × modifier with
hostile values, and every operation's parameters and body: never a 5xx, every 4xx an
OperationOutcome. On SQLite and PostgreSQL (NUL bytes and huge numbers fail differently).

The counts of what ran are in docs/threat-model.md."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dossier.fhir import operations
from schemas.search import _PARAMS
from tests import factories as f
from tests.integration.conftest import World

GENERIC = ["_id", "_lastUpdated", "_count", "_offset", "_sort", "_include", "_revinclude",
           "_summary", "_elements", "_total", "_format", "_has:Task:patient:status"]
MODIFIERS = ["", ":exact", ":contains", ":missing", ":not", ":text", ":above", ":below",
             ":Patient", ":identifier", ":of-type", ":in", ":x\x00"]
HOSTILE = ["", "x\x00y", "²", "³", "٣", "1" * 5000, "-1", "1e308", "ge", "ge2020-13-45",
           "eq9999999999-01-01", "Patient/", "Patient/../../x", "a|", "|b", "a|b|c",
           "'; DROP TABLE resources; --", "*", "%00", "\ud7ff", "Task:patient:Patient",
           "true", "null", "[]", "{}", "a" * 300, "lt1900-01-01T00:00:00+99:00", "0",
           "99999999999999999999", "Patient/x,Patient/y", "\u202e", "\ufeff", "..", "\\"]
TYPES = sorted(_PARAMS)
SMALL = settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                        HealthCheck.too_slow], deadline=None)


def names(rtype: str) -> list[str]:
    return [p.name for p in _PARAMS[rtype]] + GENERIC


@st.composite
def search(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(TYPES))
    pairs = draw(st.lists(st.tuples(
        st.builds(lambda n, m: n + m, st.sampled_from(names(rtype)), st.sampled_from(MODIFIERS)),
        st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))), min_size=1, max_size=4))
    return rtype, pairs


def check(r: Any, what: Any) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400 and r.status_code != 406:
        body = r.json()
        assert body["resourceType"] == "OperationOutcome", (what, r.text[:300])


def url(path: str, pairs: list[tuple[str, str]]) -> str:
    return path + "?" + "&".join(f"{quote(k, safe=':')}={quote(v, safe='')}" for k, v in pairs)


@pytest.fixture
def seeded(world: World) -> World:
    pid = world.consented()
    world.gp.create(f.task(f"Patient/{pid}"))
    return world


@SMALL
@given(case=search())
def test_search_fuzz(seeded: World, case: tuple[str, list[tuple[str, str]]]) -> None:
    rtype, pairs = case
    check(seeded.gp.get(url(f"/fhir/{rtype}", pairs)), (rtype, pairs))


@SMALL
@given(case=search())
@example(case=("Endpoint", [("status", "x\x00y")]))  # was a 500: PostgreSQL DataError
def test_search_fuzz_as_citizen_by_post(seeded: World,
                                        case: tuple[str, list[tuple[str, str]]]) -> None:
    rtype, pairs = case
    r = seeded.gp.client.post(f"/fhir/{rtype}/_search", data=dict(pairs),
                              headers=seeded.gp.headers)
    check(r, (rtype, pairs))


PARAMETER_VALUES = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["reason", "actor", "webhook", "email",
                                                    "language", "x"]),
                           "valueString": st.one_of(st.sampled_from(HOSTILE), st.text())}),
    st.fixed_dictionaries({"name": st.text(max_size=10),
                           "valueInteger": st.integers(-2**70, 2**70)}),
    st.fixed_dictionaries({"name": st.just("webhook"), "valueUrl": st.sampled_from(
        ["http://127.0.0.1/x", "file:///etc/passwd", "https://ex.org/\x00", "ftp://x"])}),
)


@SMALL
@given(op=st.sampled_from(sorted(operations.REGISTRY.values(), key=lambda o: (o.name, o.level))),
       params=st.lists(st.tuples(st.sampled_from(["_count", "_offset", "_type", "_since",
                                                  "actor", "x", "_outputFormat", "patient"]),
                                 st.sampled_from(HOSTILE)), max_size=3),
       body=st.lists(PARAMETER_VALUES, max_size=3),
       who=st.sampled_from(["gp", "citizen", "admin", "auditor"]))
def test_operation_fuzz(seeded: World, op: operations.Operation,
                        params: list[tuple[str, str]], body: list[dict[str, Any]],
                        who: str) -> None:
    api = {"gp": seeded.gp, "admin": seeded.admin, "auditor": seeded.auditor,
           "citizen": seeded.as_("citizen", "Patient/p-fuzz")}[who]
    rid = {"Patient": "p-fuzz", "Organization": seeded.org["id"], "Group": "g"}.get(
        op.resource_type or "", "x")
    path = {"instance": f"/fhir/{op.resource_type}/{rid}/${op.name}",
            "type": f"/fhir/{op.resource_type}/${op.name}", "system": f"/fhir/${op.name}"}[
        op.level]
    for method in sorted(op.methods):
        if method == "GET":
            r = api.get(url(path, params))
        else:
            r = api.post(url(path, params), {"resourceType": "Parameters", "parameter": body})
        check(r, (method, path, params, body))
