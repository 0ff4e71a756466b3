"""ReadById takes only the plain `GET /fhir/{type}/{id}`, CreateByType only the plain
`POST /fhir/{type}`; every other shape goes on to FastAPI's routes (operations, rosters,
the AuditEvent view, definitions, Subscription, queries, HEAD)."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from dossier.fhir.routes import CreateByType, ReadById


def scope(path: str, method: str = "GET", query: bytes = b"", root: str = "") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": query,
            "root_path": root}


@pytest.mark.parametrize("path", ["/fhir/Task/abc-1", "/fhir/Patient/p.1",
                                  "/fhir/Communication/x", "/fhir/Provenance/x"])
def test_plain_reads_are_taken(path: str) -> None:
    match, child = ReadById().matches(scope(path))
    assert match == Match.FULL
    assert child["path_params"]["rid"] == path.rsplit("/", 1)[1]


@pytest.mark.parametrize("request_scope", [
    scope("/fhir/Task/abc", query=b"_summary=true"),
    scope("/fhir/Task/abc", method="HEAD"),
    scope("/fhir/Task/abc", method="PUT"),
    scope("/fhir/Task/$everything"),
    scope("/fhir/Task/_history"),
    scope("/fhir/Task/abc/_history"),
    scope("/fhir/Group/roster-1"),
    scope("/fhir/AuditEvent/abc"),
    scope("/fhir/OperationDefinition/abc"),
    scope("/fhir/Subscription/abc"),
    scope("/fhir/Unknown/abc"),
    scope("/portal/Task/abc"),
])
def test_every_other_shape_goes_on(request_scope: dict) -> None:
    assert ReadById().matches(request_scope)[0] == Match.NONE


def test_a_root_path_is_taken_off_as_starlette_does() -> None:
    match, _ = ReadById().matches(scope("/api/fhir/Task/abc", root="/api"))
    assert match == Match.FULL


def test_it_offers_get_only() -> None:
    assert ReadById().methods == {"GET"}  # the Allow header of a 405 is unchanged


@pytest.mark.parametrize("path", ["/fhir/Task", "/fhir/Patient", "/fhir/Group",
                                  "/fhir/Consent"])
def test_plain_creates_are_taken(path: str) -> None:
    match, child = CreateByType().matches(scope(path, method="POST"))
    assert match == Match.FULL
    assert child["path_params"] == {"rtype": path.rsplit("/", 1)[1]}


@pytest.mark.parametrize("request_scope", [
    scope("/fhir/Task", method="POST", query=b"_format=json"),  # no_query's 400 there
    scope("/fhir/Task", method="PUT"),
    scope("/fhir/Task"),
    scope("/fhir/$export", method="POST"),
    scope("/fhir/Subscription", method="POST"),  # its own router
    scope("/fhir/AuditEvent", method="POST"),  # not creatable: the route refuses it
    scope("/fhir/Unknown", method="POST"),
    scope("/fhir/Task/_search", method="POST"),
    scope("/fhir/Task/abc", method="POST"),
    scope("/fhir", method="POST"),
    scope("/portal/Task", method="POST"),
])
def test_every_other_post_goes_on(request_scope: dict) -> None:
    assert CreateByType().matches(request_scope)[0] == Match.NONE


def test_a_root_path_is_taken_off_for_creates_too() -> None:
    assert CreateByType().matches(scope("/api/fhir/Task", "POST", root="/api"))[0] == \
        Match.FULL
