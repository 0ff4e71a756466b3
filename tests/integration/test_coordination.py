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


AT = "2026-12-10T11:00:00+01:00"


def params(**values: Any) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        key = {"at": "valueDateTime", "available": "valueBoolean"}.get(name, "valueReference")
        out.append({"name": name, key: {"reference": value} if key == "valueReference"
                    else value})
    return {"resourceType": "Parameters", "parameter": out}


def named(body: dict[str, Any], name: str) -> list[Any]:
    return [p for p in body["parameter"] if p["name"] == name]


def test_the_discharge_protocol(world: World) -> None:
    nurse_ref = world.add_practitioner("Peeters", "persnurse")
    nurse = world.as_("practitioner", nurse_ref)
    outsider_ref = world.add_practitioner("Outsider", "persnurse")
    pid = world.consented()
    world.grant(pid, world.sw_ref, categories=("identity", "network"))
    world.grant(pid, nurse_ref, categories=("identity", "network"))
    daughter = world.gp.create(f.related_person(pid, "Martin", "Sophie"))
    team = f.care_team(f"Patient/{pid}", [(world.gp_ref, "general-practitioner", True),
                                          (world.sw_ref, "social-worker", True),
                                          (nurse_ref, "home-nurse", True),
                                          (outsider_ref, "home-nurse", True)])
    team["participant"].append({**team["participant"][0],
                                "member": {"reference": f"RelatedPerson/{daughter['id']}"}})
    team["participant"][-1]["role"] = [{"coding": [{
        "system": "https://dossier.brussels/fhir/CodeSystem/network-role",
        "code": "family"}]}]
    world.gp.create(team)
    world.gp.create(f.fragility(f"Patient/{pid}"))

    r = world.gp.post(f"/fhir/Patient/{pid}/$discharge-plan", params(at=AT))
    assert r.status_code == 200, r.text
    body = r.json()
    plan = named(body, "plan")[0]["valueReference"]["reference"]
    # asked: the consented professionals of the network, not the planner, not the outsider
    assert {p["valueReference"]["reference"] for p in named(body, "asked")} == {
        world.sw_ref, nurse_ref}
    assert [p["valueReference"]["reference"] for p in named(body, "informal")] == [
        f"RelatedPerson/{daughter['id']}"]
    assert kinds(inbox(nurse, nurse_ref)) == ["access-granted", "discharge-request"]
    [request] = inbox(nurse, nurse_ref, category=f"{CATEGORY}|discharge-request")
    # the plan is a démarche: the nurse (network only) sees its reference masked and
    # answers through the request in her inbox
    assert "reference" not in request["about"][0]
    assert world.gp.get("/fhir/Communication", params={
        "recipient": world.gp_ref, "category": f"{CATEGORY}|discharge-request"}).json()[
        "total"] == 0

    # the nurse confirms, the social worker refuses, the nurse answers for the daughter
    r = nurse.post(f"/fhir/Patient/{pid}/$discharge-confirm",
                   params(request=f"Communication/{request['id']}", available=True))
    assert r.status_code == 200, r.text
    # someone else's request: like a missing one
    r = world.sw.post(f"/fhir/Patient/{pid}/$discharge-confirm",
                      params(request=f"Communication/{request['id']}", available=True))
    assert r.status_code == 404, r.text
    assert world.sw.post(f"/fhir/Patient/{pid}/$discharge-confirm",
                         params(plan=plan, available=False)).status_code == 200
    r = nurse.post(f"/fhir/Patient/{pid}/$discharge-confirm",
                   params(plan=plan, available=True, onBehalfOf=f"RelatedPerson/{daughter['id']}"))
    assert r.status_code == 200, r.text
    answers = inbox(world.gp, world.gp_ref, category=",".join(
        f"{CATEGORY}|{c}" for c in ("discharge-confirmation", "discharge-refusal")))
    assert sorted(kinds(answers)) == ["discharge-confirmation", "discharge-confirmation",
                                      "discharge-refusal"]
    # the planner sees every answer; readiness counts them for that date
    again = world.gp.post(f"/fhir/Patient/{pid}/$discharge-plan", params(at=AT)).json()
    assert len(named(again, "answer")) == 3
    ready = world.gp.post(f"/fhir/Patient/{pid}/$discharge-readiness", {
        "resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": AT}]})
    assert ready.status_code == 200, ready.text
    assert named(ready.json(), "confirmed")[0]["valueInteger"] == 2
    assert named(ready.json(), "refused")[0]["valueInteger"] == 1

    # the social worker (network, no démarches) sees neither the plan nor its answers
    r = world.sw.post(f"/fhir/Patient/{pid}/$discharge-plan", params(at=AT))
    assert r.status_code in (403, 404), r.text
    r = world.sw.post(f"/fhir/Patient/{pid}/$discharge-readiness", {
        "resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": AT}]})
    assert r.status_code == 200 and named(r.json(), "confirmed") == [], r.text

    # not asked, or not in the network: answered like a missing resource
    outsider = world.as_("practitioner", outsider_ref)
    for api in (outsider, world.gp):
        r = api.post(f"/fhir/Patient/{pid}/$discharge-confirm",
                     params(plan=plan, available=True))
        assert r.status_code == 404, r.text
    bad = nurse.post(f"/fhir/Patient/{pid}/$discharge-confirm", params(plan=plan))
    assert bad.status_code == 422 and "available" in bad.text

    # a new date cancels the plan and asks again; the old answers no longer count
    later = "2026-12-12T11:00:00+01:00"
    moved = world.gp.post(f"/fhir/Patient/{pid}/$discharge-plan", params(at=later)).json()
    new_plan = named(moved, "plan")[0]["valueReference"]["reference"]
    assert new_plan != plan and named(moved, "answer") == []
    assert kinds(inbox(nurse, nurse_ref)) == ["access-granted", "discharge-request",
                                              "discharge-request"]
    ready = world.gp.post(f"/fhir/Patient/{pid}/$discharge-readiness", {
        "resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": later}]})
    assert named(ready.json(), "confirmed")[0]["valueInteger"] == 0
    assert nurse.post(f"/fhir/Patient/{pid}/$discharge-confirm",
                      params(plan=plan, available=True)).status_code == 404


def test_the_demo_holds_the_stories(data_dir: Any, database_url: str | None) -> None:
    """Ricarda finds debt mediation in Spanish near her; Simone's discharge is planned and
    her home nurse confirmed."""
    from fastapi.testclient import TestClient

    from dossier.app import create_app
    from tests.integration.conftest import make_settings

    app = create_app(make_settings(data_dir, database_url, demo=True))
    try:
        with TestClient(app) as client:
            issuer = app.state.dev_issuer
            ricarda = Api(client, issuer.mint("Patient/ricarda", ["citizen"], None, 600))
            found = ricarda.get("/fhir/HealthcareService", params={
                "type": "debt-mediation", "language": "es",
                "serves": "Location/commune-saint-gilles"}).json()
            assert [e["resource"]["id"] for e in found["entry"]] == ["svc-debt-sud"]
            planner = Api(client, issuer.mint("Practitioner/coord-haddad", ["practitioner"],
                                           None, 600))
            plan = planner.get("/fhir/Task/simone-discharge")
            assert plan.status_code == 200, plan.text
            at = plan.json()["executionPeriod"]["start"]
            ready = planner.post("/fhir/Patient/simone/$discharge-readiness", {
                "resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": at}]})
            assert ready.status_code == 200, ready.text
            assert named(ready.json(), "confirmed")[0]["valueInteger"] == 1
            nurse = Api(client, issuer.mint("Practitioner/nurse-peeters", ["practitioner"],
                                            None, 600))
            assert "discharge-request" in kinds(inbox(nurse, "Practitioner/nurse-peeters"))
    finally:
        app.state.runtime.engine.dispose()


def test_the_inbox_and_a_territory_search_cost_the_same_whatever_their_size(
        world: World) -> None:
    """SPEC §15: the statements of an inbox read and of a containment search do not grow
    with the number of messages, people or services."""
    from tests.integration.test_statement_budget import counting

    def inbox_cost() -> int:
        with counting(world) as c:
            assert world.sw.get("/fhir/Communication", params={
                "recipient": world.sw_ref}).status_code == 200
        return c.n

    def search_cost() -> int:
        with counting(world) as c:
            assert world.sw.get("/fhir/HealthcareService", params={
                "coverage-area": "Location/brussels-region",
                "address-postalcode": "10"}).status_code == 200
        return c.n

    world.grant(world.open_dossier(f.patient(f.niss(serial=301))), world.sw_ref)
    small = (inbox_cost(), search_cost())
    for serial in range(302, 312):  # ten more people grant her: ten more messages
        world.grant(world.open_dossier(f.patient(f.niss(serial=serial))), world.sw_ref)
    for area in ("commune-jette", "quartier-cureghem", "bassin-sud", "commune-uccle"):
        world.admin.create({"resourceType": "HealthcareService", "name": area,
                            "providedBy": {"reference": world.org_ref},
                            "type": [{"coding": [{"system": "https://dossier.brussels/fhir/"
                                                  "CodeSystem/service-type",
                                                  "code": "legal-aid"}]}],
                            "coverageArea": [{"reference": f"Location/{area}"}]})
    assert len(inbox(world.sw, world.sw_ref)) == 11
    assert (inbox_cost(), search_cost()) == small
    assert small[1] <= 4, small
