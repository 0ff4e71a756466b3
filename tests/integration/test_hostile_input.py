"""Issue 16, defect 6: inputs that gave 500 (and a traceback with bound SQL parameters in
the server's log) are refused as 400/401, and a forced 500 leaves no parameter in any log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests import factories as f
from tests.integration.conftest import World

SECRET = "Zyxwvut-not-for-logs"


def outcome(r: Any, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("query", [
    "status=x%00y", "_id=a%00", "patient=Patient/a%00b", "_count=%C2%B2", "_offset=%C2%B3",
    "_count=%D9%A3", "_offset=99999999999999999999", "_lastUpdated=ge2020%00",
])
def test_search_values_that_gave_500(world: World, query: str) -> None:
    outcome(world.gp.get(f"/fhir/Task?{query}"), 400)


@pytest.mark.parametrize("path", [
    "/fhir/Patient/_history?_count=%C2%B2", "/fhir/_history?_offset=%C2%B3",
    "/fhir/Patient/p1/_history/%C2%B2", "/audit/proof/inclusion?index=%C2%B2&tree_size=1",
    "/audit/proof/consistency?first=%C2%B2&second=1", "/fhir/Patient/a%00b",
])
def test_other_numbers_and_nul(world: World, path: str) -> None:
    r = world.auditor.get(path)
    assert r.status_code in (400, 404), (path, r.status_code, r.text[:200])
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("body", [
    b'{"resourceType":"Patient","multipleBirthInteger":' + b"9" * 5000 + b"}",
    b'{"resourceType":"Patient","multipleBirthInteger":1e999}',
    b'{"resourceType":"Patient","gender":"male\\u0000"}',
    b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}',
])
def test_json_bodies_that_gave_500(world: World, body: bytes) -> None:
    r = world.gp.client.post("/fhir/Patient", content=body, headers={
        **world.gp.headers, "Content-Type": "application/fhir+json"})
    outcome(r, 400)


@pytest.mark.parametrize("claim", [1e308, -1, 1e19, 2**70, float("inf")])
def test_token_times_out_of_range_are_401(world: World, claim: Any) -> None:
    issuer = world.issuer
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": world.gp_ref,
              "iat": 1_700_000_000, "exp": claim, "jti": "j", "scope": "user/*.rs",
              "roles": ["practitioner"], "fhirUser": world.gp_ref, "client_id": "x"}
    try:
        token = issuer.sign(claims)
    except (ValueError, OverflowError):
        pytest.skip("the signer itself refuses this value")
    r = world.client.get("/fhir/Task", headers={"Authorization": f"Bearer {token}"})
    outcome(r, 401)


def test_a_forced_500_logs_no_parameter(world: World, app: Any,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """A real database fault whose error text holds the SQL and its bound parameters."""
    world.admin.create(f.practitioner("Dupont"))
    with app.state.runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE search_index"))
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:  # raise_server_exceptions: a re-raise fails the test
        r = client.get("/fhir/Practitioner", params={"name": SECRET},
                       headers=world.gp.headers)
    assert r.status_code in (500, 503)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert SECRET not in r.text
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("OperationalError" in r.getMessage() or "ProgrammingError" in r.getMessage()
               for r in server)  # the failure is logged, by type
    for record in server:  # the test client's own request log is not the server's
        assert SECRET not in record.getMessage()
        assert record.exc_info is None, record.getMessage()
        assert "SELECT" not in record.getMessage()
