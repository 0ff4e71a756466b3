"""Dates at the calendar's edges through the API, on both databases (see
tests/unit/schemas/test_fhirtime_edges.py): a Task authored on 9999-12-31 or at
0001-01-01T00:00+01:00 was refused with a 500, a search for such a date too, and a
Consent "until 9999-12-31" could not be given. A date before the year 1000 sorted after
every other in the index."""

from __future__ import annotations

from tests import factories as f
from tests.integration.conftest import World

EDGES = ["9999-12-31", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "0999-05-01"]


def test_tasks_at_the_calendars_edges_are_stored_and_found(world: World) -> None:
    pid = world.consented()
    made = {}
    for when in [*EDGES, "2024-06-01"]:
        r = world.gp.post("/fhir/Task", {**f.task(f"Patient/{pid}"), "authoredOn": when})
        assert r.status_code == 201, (when, r.text)
        made[when] = r.json()["id"]

    def found(value: str) -> set[str]:
        r = world.gp.get("/fhir/Task", params={"patient": pid, "authored-on": value,
                                                "_count": "50"})
        assert r.status_code == 200, (value, r.text)
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    late = {made["9999-12-31"], made["9999-12-31T23:59:59-01:00"]}
    assert found("ge2020-01-01") == late | {made["2024-06-01"]}  # not the year 999
    assert found("lt1000-01-01") == {made["0001-01-01T00:00:00+01:00"], made["0999-05-01"]}
    assert found("9999-12-31") == late
    assert found("0001") == {made["0001-01-01T00:00:00+01:00"]}
    assert found("ge9999-12-31T23:59:59Z") >= {made["9999-12-31T23:59:59-01:00"]}
    for value in ("lt9999-12-31T23:59:59Z", "eq9999", "ne0001-01-01", "sa9999-12"):
        found(value)  # an answer, not an error


def test_a_consent_until_9999_is_given_and_grants(world: World) -> None:
    pid = world.open_dossier()
    task = world.gp.post("/fhir/Task", f.task(f"Patient/{pid}"))
    assert task.status_code in (201, 403, 404), task.text
    citizen = world.citizen(pid)
    r = citizen.post("/fhir/Consent", f.consent(
        pid, world.gp_ref, categories=("identity", "demarches"), actions=("access", "collect"),
        start="2020-01-01", end="9999-12-31"))
    assert r.status_code == 201, r.text
    assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 200
    created = world.gp.create(f.task(f"Patient/{pid}"))
    assert world.gp.get(f"/fhir/Task/{created['id']}").status_code == 200
