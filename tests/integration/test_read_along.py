"""A practitioner's plain read (`GET /fhir/{type}/{id}`) reads the row in the statement
that resolves the practitioner on PostgreSQL (core/repository.py ReadAlong): the same
answers as a read made the long way, for every outcome, on both databases."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.integration.conftest import Api, World


def outcome(response: Any) -> tuple[int, Any]:
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        return response.status_code, [i.get("code") for i in body["issue"]]
    return response.status_code, (body["resourceType"], body["id"])


def test_each_outcome_of_a_read_is_the_long_way_s(world: World) -> None:
    granted = world.consented()
    task = world.gp.create(f.task(f"Patient/{granted}"))["id"]
    other = world.consented(actor=world.sw_ref)  # granted the social worker, not the GP
    hidden = world.sw.create(f.task(f"Patient/{other}"))["id"]
    erased = world.consented()
    gone = world.gp.create(f.task(f"Patient/{erased}"))["id"]
    erase = {"resourceType": "Parameters"}
    assert world.citizen(erased).post(f"/fhir/Patient/{erased}/$erase", erase).status_code == 200
    assert world.admin.post(f"/fhir/Patient/{erased}/$erase", erase).status_code == 200
    cases = {
        f"/fhir/Task/{task}": (200, ("Task", task)),
        f"/fhir/Patient/{granted}": (200, ("Patient", granted)),
        f"/fhir/Task/{hidden}": (404, ["not-found"]),  # no consent: as if missing
        "/fhir/Task/no-such-task": (404, ["not-found"]),
        f"/fhir/Task/{gone}": None,  # erased: 410, whatever its code
        f"/fhir/Practitioner/{world.gp_ref.split('/')[1]}": (
            200, ("Practitioner", world.gp_ref.split("/")[1])),
    }
    for path, expected in cases.items():
        plain = world.gp.get(path)
        long_way = world.gp.get(path, params={"_summary": "false"})  # FastAPI's route
        if expected is None:
            expected = outcome(long_way)
            assert expected[0] == 410
        assert outcome(plain) == expected, (path, plain.text[:300])
        assert outcome(long_way) == expected, path
        if plain.status_code == 200:
            assert plain.json() == long_way.json()


def test_the_hidden_and_the_missing_are_told_apart_by_nothing(world: World) -> None:
    other = world.consented(actor=world.sw_ref)
    hidden = world.sw.create(f.task(f"Patient/{other}"))["id"]
    one, two = world.gp.get(f"/fhir/Task/{hidden}"), world.gp.get("/fhir/Task/nothing-here")
    assert one.status_code == two.status_code == 404
    assert one.json() == two.json()


def test_an_inactive_practitioner_reads_nothing(world: World) -> None:
    ref = world.add_practitioner("Leaving", "persphysician")
    pid = world.consented(actor=ref)
    leaving = world.as_("practitioner", ref)
    task = leaving.create(f.task(f"Patient/{pid}"))["id"]
    practitioner = world.admin.get(f"/fhir/{ref}").json()
    assert world.admin.put(f"/fhir/{ref}", {**practitioner, "active": False}).status_code == 200
    refused = leaving.get(f"/fhir/Task/{task}")
    assert refused.status_code == 401
    assert "Task" not in refused.text


def test_a_hub_acting_for_a_practitioner_reads_as_that_practitioner(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))["id"]
    hub_token = world.token("hub", world.gp_ref, client_id="hub-1")
    hub = Api(world.client, hub_token)
    assert outcome(hub.get(f"/fhir/Task/{task}")) == (200, ("Task", task))


def test_every_read_is_recorded_once(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))["id"]
    mine = {"patient": f"Patient/{pid}", "agent": world.gp_ref}
    before = world.auditor.total("/fhir/AuditEvent", **mine)
    assert world.gp.get(f"/fhir/Task/{task}").status_code == 200
    assert world.auditor.total("/fhir/AuditEvent", **mine) == before + 1


def _created(response: Any) -> tuple[int, Any]:
    """A create's outcome without its new id."""
    status, found = outcome(response)
    return status, found[0] if status == 201 else found


def test_each_outcome_of_a_create_is_the_long_way_s(world: World, backend: str) -> None:
    """`POST /fhir/Task` by a practitioner reads the dossier (its row and Consents) with
    the principal on PostgreSQL (Repository._take_dossier); `If-None-Exist` with no
    match takes the long way. Same answers."""
    granted = world.consented()
    other = world.consented(actor=world.sw_ref)  # the social worker's, not the GP's
    erased = world.consented()
    erase = {"resourceType": "Parameters"}
    assert world.citizen(erased).post(f"/fhir/Patient/{erased}/$erase", erase).status_code == 200
    assert world.admin.post(f"/fhir/Patient/{erased}/$erase", erase).status_code == 200
    cases = {granted: (201, "Task"), other: None, "no-such-person": None,
             erased: None}
    for pid, expected in cases.items():
        body = f.task(f"Patient/{pid}")
        plain = world.gp.post("/fhir/Task", body)
        long_way = world.gp.post("/fhir/Task", body,
                                 {"If-None-Exist": "_id=none-such"})
        if expected is None:  # a refusal, whatever its code
            expected = _created(long_way)
            assert expected[0] in (403, 404, 410, 422), long_way.text
        assert _created(plain) == expected, (pid, plain.text[:300])
        assert _created(long_way) == expected, (pid, long_way.text[:300])


def test_a_create_takes_the_dossier_read_along_once(world: World, backend: str) -> None:
    """Creates in two dossiers, one after the other: each reads its own dossier's
    Consents (what one unit read along never decides another's)."""
    first, second = world.consented(), world.consented(actor=world.sw_ref)
    assert world.gp.post("/fhir/Task", f.task(f"Patient/{first}")).status_code == 201
    refused = world.gp.post("/fhir/Task", f.task(f"Patient/{second}"))
    assert refused.status_code in (403, 404, 422), refused.text
    assert world.sw.post("/fhir/Task", f.task(f"Patient/{second}")).status_code == 201
