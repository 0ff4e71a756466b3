"""Bulk ingestion (issue 14): a hub or a migration loads a transaction Bundle of up to 500
entries — every entry validated, consented, sealed and audited (one audit record per
person per Bundle), written together; over the limit, 413 and nothing written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from dossier.db.models import audit_records, resources
from tests import factories as f
from tests.integration.conftest import World


def _bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": resource,
         "request": {"method": "POST", "url": resource["resourceType"]}}
        for i, resource in enumerate(entries)]}


def _count(world: World, table: Any, *where: Any) -> int:
    with world.app.state.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where))
                   .scalar_one())


def test_a_bundle_of_500_entries_is_one_unit(world: World) -> None:
    first, second = world.consented(), world.consented()
    entries = [f.task(f"Patient/{first if n % 2 else second}") for n in range(498)]
    entries += [f.related_person(first), f.related_person(second)]  # sealed elements too
    records = _count(world, audit_records)
    r = world.gp.post("/fhir", _bundle(entries))
    assert r.status_code == 200, r.text
    answers = r.json()["entry"]
    assert len(answers) == 500 and all(a["response"]["status"].startswith("201")
                                       for a in answers)
    # one record per person touched by the Bundle, not one per entry
    assert _count(world, audit_records) == records + 2
    assert world.gp.total("/fhir/Task", patient=f"Patient/{first}") == 249
    location = answers[-1]["response"]["location"].split("/_history")[0]
    person = world.gp.get("/fhir/" + "/".join(location.split("/")[-2:]))
    assert person.status_code == 200 and person.json()["name"]  # sealed, opened on read


def test_a_refused_entry_writes_nothing(world: World) -> None:
    granted, other = world.consented(), world.open_dossier()
    before = _count(world, resources, resources.c.res_type == "Task")
    entries = [f.task(f"Patient/{granted}") for _ in range(20)] + [f.task(f"Patient/{other}")]
    r = world.gp.post("/fhir", _bundle(entries))
    assert r.status_code == 404  # the other dossier does not exist for this GP
    assert _count(world, resources, resources.c.res_type == "Task") == before


def test_over_the_entry_limit_is_413_and_says_the_limit(world: World) -> None:
    pid = world.consented()
    before = _count(world, resources, resources.c.res_type == "Task")
    r = world.gp.post("/fhir", _bundle([f.task(f"Patient/{pid}") for _ in range(501)]))
    assert r.status_code == 413
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "500" in outcome["issue"][0]["diagnostics"]
    assert _count(world, resources, resources.c.res_type == "Task") == before
