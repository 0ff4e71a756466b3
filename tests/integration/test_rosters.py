"""Rosters and Group-level Bulk Data export (issue 9 item 3), on SQLite and PostgreSQL:
a hub's or practitioner's own Group of the people it follows, private to it, exported
through the same consent engine as every other read."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f
from tests.integration.conftest import Api, World
from tests.integration.test_hubs import (
    ASSERTION_TYPE,
    ASYNC,
    JWT_TYPE,
    TOKEN_EXCHANGE,
    Hub,
    dossier_with_everything,
    exported,
    keyed,
    kick_off,
    outcome,
    records,
    wait,
)

SCOPE = "system/*.rs system/Group.cruds"


def roster(*patient_ids: str) -> dict[str, Any]:
    return {"resourceType": "Group", "type": "person", "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patient_ids]}


@pytest.fixture
def hub(world: World) -> Hub:
    org = world.admin.create(f.organization("Abrumet", "health"))
    made = Hub(world, "hub-abrumet", f"Organization/{org['id']}")
    assert made.register(scope=SCOPE).status_code == 200
    return made


@pytest.fixture
def claes_api(world: World, hub: Hub) -> tuple[Api, str]:
    """The hub acting for Claes, a physician of its organisation."""
    claes = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    r = world.client.post("/auth/token", data={
        "grant_type": TOKEN_EXCHANGE, "scope": SCOPE,
        "client_assertion_type": ASSERTION_TYPE, "client_assertion": hub.signed(),
        "subject_token_type": JWT_TYPE, "subject_token": hub.signed(sub=claes)})
    assert r.status_code == 200, r.text
    return Api(world.client, r.json()["access_token"]), claes


def test_a_roster_is_private_to_whoever_made_it(world: World, claes_api: Any) -> None:
    api, _ = claes_api
    made = api.create(roster("p1", "p2", "p1"))
    assert made["id"].startswith("roster-") and made["quantity"] == 2
    path = f"/fhir/Group/{made['id']}"
    assert api.get(path).json()["member"][1]["entity"]["reference"] == "Patient/p2"
    for other in (world.gp, world.sw, world.admin, world.auditor):
        outcome(other.get(path), 404)  # the same answer as for no Group at all
    keeper = world.as_("practitioner", world.gp_ref, "user/*.rs user/Group.cruds")
    outcome(keeper.get(path), 404)
    outcome(keeper.delete(path), 404)
    outcome(keeper.put(path, {**roster("p9"), "id": made["id"]}), 404)
    listed = world.gp.get("/fhir/Group", params={"_count": "200"}).json()
    assert made["id"] not in {e["resource"]["id"] for e in listed.get("entry", [])}
    changed = api.put(path, {**roster("p3"), "id": made["id"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["meta"]["versionId"] == "2" and changed.json()["quantity"] == 1
    assert api.delete(path).status_code == 204
    outcome(api.get(path), 404)


@pytest.mark.parametrize(("body", "where"), [
    ({"resourceType": "Group", "type": "practitioner", "actual": True}, "Group.type"),
    ({**roster("p1"), "actual": False}, "Group.type"),
    ({"resourceType": "Group", "type": "person", "actual": True,
      "member": [{"entity": {"reference": "Practitioner/x"}}]}, "Group.member.entity"),
    ({"resourceType": "Group", "type": "person", "actual": True,
      "member": [{"entity": {"reference": "Patient/p1", "display": "Jean Martin"}}]},
     "Group.member.entity"),
    ({**roster("p1"), "characteristic": []}, "Group.characteristic"),
    ({**roster("p1"), "name": "Jean Martin's family"}, "Group.name"),  # free text
])
def test_bad_rosters_are_422_audited_and_not_stored(world: World, claes_api: Any,
                                                    body: dict[str, Any], where: str) -> None:
    api, _ = claes_api
    r = api.post("/fhir/Group", body)
    assert outcome(r, 422)["issue"][0]["expression"] == [where]
    assert records(world)[-1]["outcome"] != "success"
    assert "Jean" not in r.text


def test_rosters_need_a_group_write_scope(world: World, hub: Hub) -> None:
    organisation = Api(world.client, hub.credentials().json()["access_token"])  # *.rs
    outcome(organisation.post("/fhir/Group", roster("p1")), 403)
    outcome(world.citizen("p1").post("/fhir/Group", roster("p1")), 403)


def test_group_export_is_the_roster_through_consent(world: World, claes_api: Any) -> None:
    api, claes = claes_api
    granted, made = dossier_with_everything(world)
    world.grant(granted, claes, ("demarches", "fragility"), ("access",))
    also = world.consented()  # granted to Claes, but not on the roster
    world.grant(also, claes, ("demarches",), ("access",))
    world.gp.create(f.task(f"Patient/{also}"))
    hidden = world.consented()  # on the roster, but never granted to Claes
    world.gp.create(f.task(f"Patient/{hidden}"))
    group = api.create(roster(granted, hidden, "no-such-dossier"))

    rows = exported(api, wait(api, kick_off(api, f"/fhir/Group/{group['id']}/$export")))
    everything = api.get(f"/fhir/Patient/{granted}/$everything").json()
    assert keyed(rows) == {(e["resource"]["resourceType"], e["resource"]["id"])
                           for e in everything["entry"]}
    assert ("Task", made["task"]) in keyed(rows)
    assert {r.get("for", r.get("subject", {})).get("reference") for r in rows
            if r["resourceType"] == "Task"} == {f"Patient/{granted}"}
    # `patient` narrows a Patient-level export the same way
    narrowed = exported(api, wait(api, kick_off(api, "/fhir/Patient/$export",
                                                 patient=f"Patient/{granted},Patient/{hidden}")))
    assert keyed(narrowed) == keyed(rows)


def test_group_export_refusals(world: World, claes_api: Any) -> None:
    api, _ = claes_api
    group = api.create(roster("p1"))
    # a profession Group lists no patients; another's roster or no Group: not found
    body = outcome(api.get("/fhir/Group/profession-persphysician/$export", headers=ASYNC),
                   422)
    assert "Group of Patients" in body["issue"][0]["diagnostics"]
    outcome(world.gp.get(f"/fhir/Group/{group['id']}/$export", headers=ASYNC), 404)
    outcome(api.get("/fhir/Group/roster-0123/$export", headers=ASYNC), 404)
    outcome(api.get("/fhir/$export", params={"patient": "Patient/p1"}, headers=ASYNC), 400)
    outcome(api.get("/fhir/Patient/$export", params={"patient": "p1"}, headers=ASYNC), 400)
