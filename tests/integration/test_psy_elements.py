"""Element-level psy (issue 18 item 6, SPEC §14): one psy participant hides that
participant, not the whole network map, from readers without psy."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.integration.conftest import World

REDACTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "REDACTED", "display": "redacted"}


def members(team: dict[str, Any]) -> set[str]:
    return {p["member"]["reference"] for p in team["participant"]}


def setting(world: World) -> tuple[str, str, str]:
    psy_ref = world.add_practitioner("Claes", "perspsychologist")
    pid = world.consented()
    world.grant(pid, world.sw_ref, categories=("identity", "network", "demarches"))
    world.grant(pid, psy_ref, categories=("identity", "network", "psy"))
    team = world.gp.create(f.care_team(f"Patient/{pid}", [
        (world.gp_ref, "general-practitioner", True),
        (world.sw_ref, "social-worker", True),
        (psy_ref, "psychologist", False)]))
    return pid, team["id"], psy_ref


def test_a_psy_participant_is_hidden_not_the_team(world: World) -> None:
    pid, tid, psy_ref = setting(world)
    psy = world.as_("practitioner", psy_ref)
    seen = world.sw.get(f"/fhir/CareTeam/{tid}")
    assert seen.status_code == 200, seen.text
    team = seen.json()
    assert members(team) == {world.gp_ref, world.sw_ref}
    assert REDACTED in team["meta"]["security"]
    assert not any(c["code"] in ("psy", "PSY") for c in team["meta"]["security"])
    full = psy.get(f"/fhir/CareTeam/{tid}").json()
    assert members(full) == {world.gp_ref, world.sw_ref, psy_ref}
    assert REDACTED not in full["meta"].get("security", [])
    assert world.citizen(pid).get(f"/fhir/CareTeam/{tid}").json()["participant"] == \
        full["participant"]
    # the same in searches, history, $everything and $network
    found = world.sw.get("/fhir/CareTeam", params={"patient": f"Patient/{pid}"}).json()
    assert members(found["entry"][0]["resource"]) == {world.gp_ref, world.sw_ref}
    assert world.sw.get("/fhir/CareTeam", params={"participant": psy_ref}).json()["total"] == 0
    history = world.sw.get(f"/fhir/CareTeam/{tid}/_history").json()
    assert psy_ref not in str(history)
    assert psy_ref not in world.sw.get(f"/fhir/Patient/{pid}/$everything").text
    network = world.sw.get(f"/fhir/Patient/{pid}/$network")
    assert network.status_code == 200, network.text
    assert world.gp_ref in network.text and psy_ref not in network.text
    assert psy_ref in psy.get(f"/fhir/Patient/{pid}/$network").text


def test_discharge_readiness_keeps_its_contacts(world: World) -> None:
    pid, _, psy_ref = setting(world)
    world.gp.create(f.fragility(f"Patient/{pid}"))
    r = world.sw.post(f"/fhir/Patient/{pid}/$discharge-readiness", {
        "resourceType": "Parameters", "parameter": [
            {"name": "at", "valueDateTime": "2026-12-08T10:00:00+01:00"}]})
    assert r.status_code == 200, r.text
    assert world.gp_ref in r.text and psy_ref not in r.text


def test_a_writer_without_psy_keeps_what_they_cannot_see(world: World) -> None:
    _, tid, psy_ref = setting(world)
    team = world.sw.get(f"/fhir/CareTeam/{tid}").json()
    team["status"] = "active"
    team["participant"] = [p for p in team["participant"]
                           if p["member"]["reference"] != world.gp_ref]
    r = world.sw.put(f"/fhir/CareTeam/{tid}", team)  # sent back as read, REDACTED label too
    assert r.status_code == 200, r.text
    assert members(r.json()) == {world.sw_ref}
    full = world.as_("practitioner", psy_ref).get(f"/fhir/CareTeam/{tid}").json()
    assert members(full) == {world.sw_ref, psy_ref}
    # adding a psy participant needs psy: refused like a missing resource or forbidden
    team = world.sw.get(f"/fhir/CareTeam/{tid}").json()
    team["participant"].append(f.care_team("Patient/x", [(psy_ref, "psychiatrist",
                                                          False)])["participant"][0])
    assert world.sw.put(f"/fhir/CareTeam/{tid}", team).status_code in (403, 404)
    assert members(world.as_("practitioner", psy_ref).get(
        f"/fhir/CareTeam/{tid}").json()) == {world.sw_ref, psy_ref}


def test_a_team_of_psy_participants_only_stays_hidden(world: World) -> None:
    pid, _, psy_ref = setting(world)
    only = world.gp.create(f.care_team(f"Patient/{pid}", [(psy_ref, "psychologist", True)]))
    assert world.sw.get(f"/fhir/CareTeam/{only['id']}").status_code == 404
