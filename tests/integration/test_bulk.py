"""Bulk ingestion (issue 14): a hub or a migration loads a transaction Bundle of up to 500
entries — every entry validated, consented, sealed and audited (one audit record per
person per Bundle), written together; over the limit, 413 and nothing written."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from dossier.db import bulk
from dossier.db.models import audit_records, resource_versions, resources, search_index
from tests import factories as f
from tests.integration.conftest import World
from tests.integration.test_coordination import Cpas, inbox, kinds


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


def _written(world: World) -> tuple[int, int, int]:
    return (_count(world, resources), _count(world, resource_versions),
            _count(world, search_index))


def test_an_invalid_last_entry_writes_nothing(world: World) -> None:
    """499 good entries (a Task and its Provenance each, index rows, versions) and a last
    one the profile refuses: 422 naming the entry, and not one row of the others."""
    pid = world.consented()
    before = _written(world)
    entries = [f.task(f"Patient/{pid}") for _ in range(499)]
    entries.append({**f.task(f"Patient/{pid}"), "note": [{"text": "free text"}]})
    r = world.gp.post("/fhir", _bundle(entries))
    assert r.status_code == 422, r.text
    assert "entry 499" in r.json()["issue"][0]["diagnostics"]
    assert _written(world) == before


def test_a_message_written_by_a_bundle_keeps_its_addressee(world: World) -> None:
    """A referral in a Bundle after an ordinary Task: the message to the organisation's
    member is theirs alone (its row's addressee was lost when the rows went in with the
    columns of the Bundle's first row)."""
    cpas = Cpas(world)
    pid = world.consented()
    world.grant(pid, cpas.ref, categories=("identity", "demarches"))
    referral = f.task(f"Patient/{pid}", code="debt-mediation", status="requested",
                      owner=cpas.ref)
    referral["requester"] = {"reference": world.gp_ref}
    r = world.gp.post("/fhir", _bundle([f.task(f"Patient/{pid}"), referral]))
    assert r.status_code == 200, r.text
    messages = inbox(cpas.worker, cpas.worker_ref)
    assert kinds(messages) == ["referral"]
    assert world.gp.get(f"/fhir/Communication/{messages[0]['id']}").status_code == 404
    assert world.sw.get(f"/fhir/Communication/{messages[0]['id']}").status_code == 404


def test_rows_that_lack_a_column_get_its_default_not_lose_it() -> None:
    keys, rows = bulk.complete(resources, [
        {"res_type": "Task", "res_id": "a", "content": {}},
        {"res_type": "Communication", "res_id": "b", "content": {}, "addressee": "P/1",
         "deleted": True}])
    assert keys == ["res_type", "res_id", "deleted", "content", "addressee"]
    assert rows[0]["addressee"] is None and rows[0]["deleted"] is False  # its default
    assert rows[1]["addressee"] == "P/1" and rows[1]["deleted"] is True
    with pytest.raises(ValueError, match="no_such_column"):
        bulk.complete(resources, [{"res_type": "Task", "no_such_column": 1}])


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_foreign_key_checks_follow_the_table_as_it_grew(world: World) -> None:
    """PostgreSQL checks each index row's foreign key with a plan the connection cached,
    maybe when `resources` was nearly empty; kept as the table grows, that plan reads every
    row of the type for each check (measured: 8.5 s for one Bundle's 5,000 index rows).
    Bulk inserts re-plan first: each check reads one row."""
    engine = world.app.state.runtime.engine
    now = datetime.now(UTC)

    def resource(i: int) -> dict[str, object]:
        return {"res_type": "Task", "res_id": f"bulk-{i}", "version_id": 1,
                "last_updated": now, "deleted": False, "categories": "", "content": {}}

    def index_row(i: int) -> dict[str, object]:
        return {"res_type": "Task", "res_id": f"bulk-{i}", "param": "status",
                "system": None, "value": "requested"}

    fetched = text("SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) "
                   "FROM pg_stat_xact_user_tables WHERE relname = 'resources'")
    with engine.connect() as conn, Session(bind=conn) as session:
        # the plan is cached (generic) while the table holds a handful of rows
        session.execute(text("SET plan_cache_mode = force_generic_plan"))
        session.execute(insert(resources), [resource(0)])
        session.execute(insert(search_index), [index_row(0)])
        session.execute(insert(resources), [resource(i) for i in range(1, 3001)])
        start = session.execute(fetched).scalar_one()
        bulk.insert_rows(session, search_index, [index_row(i) for i in range(1, 301)])
        reads = session.execute(fetched).scalar_one() - start
        session.rollback()
    assert reads <= 2 * 300, reads  # about one row per check (thousands each without)
