"""Referrals, the professional inbox and the discharge protocol over HTTP (issue 18,
SPEC §14)."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.integration.conftest import Api, World

CATEGORY = "https://dossier.brussels/fhir/CodeSystem/communication-category"
DECLINE = "https://dossier.brussels/fhir/CodeSystem/referral-decline-reason"


def inbox(api: Api, practitioner: str, **params: str) -> list[dict[str, Any]]:
    r = api.get("/fhir/Communication", params={"recipient": practitioner, **params})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", ())]


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [m["category"][0]["coding"][0]["code"] for m in messages]


class Cpas:
    """A second organisation (a CPAS) with one social worker."""

    def __init__(self, world: World) -> None:
        self.org = world.admin.create(f.organization("CPAS d'Anderlecht"))
        self.ref = f"Organization/{self.org['id']}"
        self.worker_ref = world.add_practitioner("Lambert", "perssocialworker", self.ref)
        self.worker = world.as_("practitioner", self.worker_ref)


def referral(world: World, pid: str, owner: str) -> dict[str, Any]:
    task = f.task(f"Patient/{pid}", code="debt-mediation", status="requested", owner=owner)
    task["requester"] = {"reference": world.gp_ref}
    return world.gp.create(task)


def test_a_referral_reaches_the_owner_and_its_answer_the_referrer(world: World) -> None:
    cpas = Cpas(world)
    pid = world.consented()
    world.grant(pid, cpas.ref, categories=("identity", "demarches"))
    task = referral(world, pid, cpas.ref)
    messages = inbox(cpas.worker, cpas.worker_ref)
    assert kinds(messages) == ["referral"]
    assert messages[0]["about"] == [{"reference": f"Task/{task['id']}"}]
    assert messages[0]["sender"] == {"reference": world.gp_ref}
    # readable only by its addressee: anyone else gets an empty Bundle
    assert inbox(world.sw, cpas.worker_ref) == []
    assert world.sw.get(f"/fhir/Communication/{messages[0]['id']}").status_code == 404
    assert world.gp.get(f"/fhir/Communication/{messages[0]['id']}").status_code == 404
    assert messages[0]["id"] not in world.gp.get(f"/fhir/Patient/{pid}/$everything").text
    # the receiving organisation declines with a coded reason; the referrer is told
    seen = cpas.worker.get(f"/fhir/Task/{task['id']}").json()
    seen["status"] = "rejected"
    seen["statusReason"] = {"coding": [{"system": DECLINE, "code": "outside-area"}]}
    r = cpas.worker.put(f"/fhir/Task/{task['id']}", seen)
    assert r.status_code == 200, r.text
    answers = inbox(world.gp, world.gp_ref, category=f"{CATEGORY}|referral-answer")
    assert len(answers) == 1
    assert answers[0]["reasonCode"][0]["coding"][0]["code"] == "outside-area"
    assert answers[0]["sender"] == {"reference": cpas.worker_ref}


def test_an_accepted_referral(world: World) -> None:
    cpas = Cpas(world)
    pid = world.consented()
    world.grant(pid, cpas.ref, categories=("identity", "demarches"))
    task = referral(world, pid, cpas.ref)
    seen = cpas.worker.get(f"/fhir/Task/{task['id']}").json()
    seen["status"] = "accepted"
    assert cpas.worker.put(f"/fhir/Task/{task['id']}", seen).status_code == 200
    assert "referral-answer" in kinds(inbox(world.gp, world.gp_ref))
    seen = cpas.worker.get(f"/fhir/Task/{task['id']}").json()
    seen["status"] = "requested"  # nothing goes back to requested
    assert cpas.worker.put(f"/fhir/Task/{task['id']}", seen).status_code == 422


def test_no_referral_message_without_the_persons_grant(world: World) -> None:
    cpas = Cpas(world)
    pid = world.consented()
    referral(world, pid, cpas.ref)
    assert inbox(cpas.worker, cpas.worker_ref) == []


def test_a_referral_to_an_unknown_organisation_is_refused(world: World) -> None:
    pid = world.consented()
    task = f.task(f"Patient/{pid}", status="requested", owner="Organization/nowhere")
    r = world.gp.post("/fhir/Task", task)
    assert r.status_code == 422, r.text
    assert "owner" in r.text


def test_access_granted_and_withdrawn_reach_the_professional(world: World) -> None:
    pid = world.open_dossier()
    given = world.grant(pid, world.sw_ref)
    assert kinds(inbox(world.sw, world.sw_ref)) == ["access-granted"]
    given["status"] = "inactive"
    assert world.citizen(pid).put(f"/fhir/Consent/{given['id']}", given).status_code == 200
    assert kinds(inbox(world.sw, world.sw_ref)) == ["access-granted", "access-withdrawn"]
    assert inbox(world.gp, world.sw_ref) == []
    # the person sees what was sent about them
    mine = world.citizen(pid).get("/fhir/Communication", params={"patient": f"Patient/{pid}"})
    assert "access-granted" in mine.text
