"""Enrolment codes for pseudonymous dossiers (SPEC §13; issue 15): given when the dossier
is opened, single use, expiring, 10 wrong codes per login per hour then 429, audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from dossier.db.models import enrolment_codes
from tests import factories as f
from tests.integration.conftest import Api, World

RICARDA = f.niss("850412", 66)
OTHER = f.niss("850412", 67)


def login(world: World, niss: str) -> Api:
    return Api(world.client, world.issuer.mint(None, ["citizen"], None, 3600, niss=niss))


def code_body(code: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": code}]}


def open_pseudonymous(world: World) -> tuple[str, str]:
    r = world.sw.post("/fhir/Patient", f.patient(ssin=None, family="R."))
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"
    return r.json()["id"], r.headers["dossier-enrolment-code"]


def test_code_links_a_login_once(world: World) -> None:
    pid, code = open_pseudonymous(world)
    # a dossier with a national number gets no code
    assert "dossier-enrolment-code" not in world.sw.post(
        "/fhir/Patient", f.patient(ssin=OTHER)).headers
    ricarda = login(world, RICARDA)
    assert ricarda.get(f"/fhir/Patient/{pid}").status_code in (403, 404)
    r = ricarda.post("/fhir/$enrol", code_body(code.lower()))
    assert r.status_code == 200, r.text
    assert ricarda.get(f"/fhir/Patient/{pid}").status_code == 200
    grant = f.consent(pid, world.sw_ref, categories=("identity",))
    assert ricarda.post("/fhir/Consent", grant).status_code == 201
    # single use
    assert login(world, OTHER).post("/fhir/$enrol", code_body(code)).status_code == 404


def test_codes_expire(world: World) -> None:
    _pid, code = open_pseudonymous(world)
    with world.app.state.runtime.engine.begin() as conn:
        conn.execute(update(enrolment_codes).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert login(world, RICARDA).post("/fhir/$enrol", code_body(code)).status_code == 404


def test_ten_wrong_codes_per_login_per_hour_then_429(world: World) -> None:
    _pid, code = open_pseudonymous(world)
    ricarda = login(world, RICARDA)
    for _ in range(10):
        assert ricarda.post("/fhir/$enrol", code_body("AAAA-BBBB-CCCC")).status_code == 404
    assert ricarda.post("/fhir/$enrol", code_body(code)).status_code == 429  # even a right one
    # another login is not throttled
    assert login(world, OTHER).post("/fhir/$enrol", code_body(code)).status_code == 200
    log = world.auditor.get("/fhir/AuditEvent", params={"_count": "200"}).json()
    details = [d.get("valueString") for e in log.get("entry", [])
               for ent in e["resource"].get("entity", []) for d in ent.get("detail", [])]
    assert details.count("enrol wrong-code") == 10 and "enrol throttled" in details


def test_new_code_needs_identity_access(world: World) -> None:
    pid, _ = open_pseudonymous(world)
    assert world.gp.post(f"/fhir/Patient/{pid}/$enrolment-code", None).status_code == 404
    world.grant(pid, world.gp_ref)
    r = world.gp.post(f"/fhir/Patient/{pid}/$enrolment-code",
                      {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    code = r.json()["parameter"][0]["valueString"]
    assert login(world, RICARDA).post("/fhir/$enrol", code_body(code)).status_code == 200
