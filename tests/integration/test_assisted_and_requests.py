"""Assisted consent and asking for access (SPEC §13; issue 15), over HTTP on SQLite and
PostgreSQL: Martin's consent recorded at the prison desk, revoked from his own login;
a professional's request, accepted narrowed or declined by the person."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dossier.db.models import notification_outbox
from dossier.stores.access_requests import AccessRequests
from tests import factories as f
from tests.integration.conftest import Api, World

MARTIN = f.niss("670312", 151)
MISSING = "00000000-0000-0000-0000-000000000000"


def by_niss(world: World, niss: str) -> Api:
    return Api(world.client, world.issuer.mint(None, ["citizen"], None, 3600, niss=niss))


def assisted(patient_id: str, practitioner: str, *, verified: bool = True) -> dict[str, Any]:
    body = f.consent(patient_id, practitioner, categories=("identity", "demarches"),
                     actions=("access", "collect"))
    body["performer"] = [{"reference": practitioner}]
    if verified:
        body["verification"] = [{"verified": True,
                                 "verifiedWith": {"reference": f"Patient/{patient_id}"},
                                 "verificationDate": "2026-12-06T09:30:00+01:00"}]
    return body


def test_social_worker_records_martins_assisted_consent(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=MARTIN))
    r = world.sw.post("/fhir/Consent", assisted(pid, world.sw_ref))
    assert r.status_code == 201, r.text
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 200
    with world.app.state.runtime.engine.connect() as conn:
        urgent = conn.execute(select(notification_outbox.c.urgent).where(
            notification_outbox.c.patient_id == pid)).scalars().all()
    assert True in urgent  # told at once
    # one step: Martin revokes it later from his own login
    martin = by_niss(world, MARTIN)
    assert martin.delete(f"/fhir/Consent/{r.json()['id']}").status_code in (200, 204)
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 404


def test_consent_without_verification_stays_refused(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=MARTIN))
    assert world.sw.post("/fhir/Consent",
                         assisted(pid, world.sw_ref, verified=False)).status_code == 403
    # performer must be the one recording it
    assert world.sw.post("/fhir/Consent", assisted(pid, world.gp_ref)).status_code == 403
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 404


def test_refused_in_advance_answers_like_a_missing_person(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=MARTIN))
    martin = by_niss(world, MARTIN)
    refuse = {"resourceType": "Parameters",
              "parameter": [{"name": "refuse", "valueBoolean": True}]}
    r = martin.post(f"/fhir/Patient/{pid}/$assisted-consent", refuse)
    assert r.status_code == 200 and r.json()["parameter"][0]["valueBoolean"] is True
    refused = world.sw.post("/fhir/Consent", assisted(pid, world.sw_ref))
    missing = world.sw.post("/fhir/Consent", assisted(MISSING, world.sw_ref))
    assert refused.status_code == missing.status_code == 404
    assert refused.json() == missing.json()
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 404
    log = world.auditor.get("/fhir/AuditEvent", params={"patient": f"Patient/{pid}"}).json()
    assert any(e["resource"]["outcome"] != "0" for e in log.get("entry", []))
    # only the person decides it
    assert world.sw.post(f"/fhir/Patient/{pid}/$assisted-consent", refuse).status_code == 403


def ask(categories: tuple[str, ...]) -> dict[str, Any]:
    return {"resourceType": "Parameters",
            "parameter": [{"name": "category", "valueCode": c} for c in categories]}


def test_request_access_is_202_whatever_the_dossier(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=MARTIN))
    granted = world.consented()
    answers = [world.gp.post(f"/fhir/Patient/{target}/$request-access", ask(("identity",)))
               for target in (pid, MISSING, granted)]
    assert {a.status_code for a in answers} == {202}
    assert answers[0].content == answers[1].content == answers[2].content
    assert world.gp.post(f"/fhir/Patient/{pid}/$request-access",
                         ask(())).status_code == 422
    assert by_niss(world, MARTIN).post(f"/fhir/Patient/{pid}/$request-access",
                                       ask(("identity",))).status_code == 403


def _requests(world: World, practitioner: str) -> list[Any]:
    runtime = world.app.state.runtime
    from datetime import UTC, datetime
    with runtime.system_session() as session:
        return AccessRequests(session).by_practitioner(practitioner, datetime.now(UTC))


def test_person_accepts_narrowed_or_declines(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=MARTIN))
    world.gp.post(f"/fhir/Patient/{pid}/$request-access", ask(("identity", "demarches")))
    world.gp.post(f"/fhir/Patient/{MISSING}/$request-access", ask(("identity",)))
    world.sw.post(f"/fhir/Patient/{pid}/$request-access", ask(("network",)))
    martin = by_niss(world, MARTIN)
    inbox = martin.get("/fhir/Communication", params={"patient": f"Patient/{pid}"}).json()
    asked = [e["resource"] for e in inbox.get("entry", [])
             if e["resource"]["category"][0]["coding"][0]["code"] == "access-request"]
    assert {c["sender"]["reference"] for c in asked} == {world.gp_ref, world.sw_ref}
    assert len(_requests(world, world.gp_ref)) == 2  # the missing one looks the same
    by_sender = {c["sender"]["reference"]: c["identifier"][0]["value"] for c in asked}

    def answer(request_id: str, verdict: str, *keep: str) -> Any:
        params = [{"name": "request", "valueString": request_id},
                  {"name": "answer", "valueCode": verdict}]
        params += [{"name": "category", "valueCode": c} for c in keep]
        return martin.post(f"/fhir/Patient/{pid}/$answer-access-request",
                           {"resourceType": "Parameters", "parameter": params})

    accepted = answer(by_sender[world.gp_ref], "accept", "identity")
    assert accepted.status_code == 200, accepted.text
    assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 200
    task = world.gp.post("/fhir/Task", f.task(f"Patient/{pid}", owner=world.org_ref))
    assert task.status_code in (403, 404)  # demarches was not granted
    assert answer(by_sender[world.sw_ref], "decline").status_code == 200
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 404
    assert answer(by_sender[world.sw_ref], "accept").status_code == 404  # answered once
    assert [r.patient_id for r in _requests(world, world.gp_ref)] == [MISSING]
    assert _requests(world, world.sw_ref) == []
