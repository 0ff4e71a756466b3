"""Bulk ingestion (issue 14): a hub or a migration loads a transaction Bundle of up to 500
entries — every entry validated, consented, sealed and audited (one audit record per
person per Bundle), written together; over the limit, 413 and nothing written. A batch
Bundle's entries stand alone: a failing one leaves nothing written, the others stay."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dossier.core import content, repository
from dossier.db import bulk
from dossier.db.models import (
    audit_records,
    patient_keys,
    resource_versions,
    resources,
    search_index,
)
from dossier.errors import Unprocessable
from tests import factories as f
from tests.integration.conftest import World
from tests.integration.test_coordination import Cpas, inbox, kinds


def _bundle(entries: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [
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
    # every column with a default of its own is written out (named or not)
    assert keys == ["res_type", "res_id", "deleted", "categories", "cat_mask", "content",
                    "addressee"]
    assert rows[0]["addressee"] is None and rows[0]["deleted"] is False  # its default
    assert rows[1]["addressee"] == "P/1" and rows[1]["deleted"] is True
    assert rows[0]["categories"] == "" and rows[0]["cat_mask"] == 0
    assert all(type(k) is str for k in keys)  # JSON keys (orjson takes no str subclass)


def test_tables_whose_rows_lack_defaulted_columns_go_in_one_statement() -> None:
    """Two tables sharing defaulted columns (deleted, categories, cat_mask) that no row
    names: SQLAlchemy would add their defaults as parameters whose names clash."""
    from sqlalchemy.dialects import postgresql

    shapes = tuple((table, tuple(bulk.complete(table, [{"res_type": "Task", "res_id": "a",
                                                        "version_id": 1}])[0]))
                   for table in (resources, resource_versions))
    sql = str(bulk.tables_insert(shapes).statement.compile(dialect=postgresql.dialect()))
    assert sql.count("json_to_recordset") == 2
    with pytest.raises(ValueError, match="no_such_column"):
        bulk.complete(resources, [{"res_type": "Task", "no_such_column": 1}])


def test_an_index_row_without_its_resource_never_surfaces(world: World) -> None:
    """The search index has no foreign key (migration 0023: PostgreSQL's per-row check
    cost 0.06 ms an index row): a search reads its results from `resources`, so a stray
    index row — which the server never writes — finds nothing and breaks nothing."""
    engine = world.app.state.runtime.engine
    assert inspect(engine).get_foreign_keys("search_index") == []
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    with engine.begin() as conn:
        conn.execute(insert(search_index), [
            {"res_type": "Task", "res_id": "ghost", "param": param, "system": None,
             "value": value}
            for param, value in (("patient", f"Patient/{pid}"), ("status", "in-progress"))])
    for params in ({"patient": f"Patient/{pid}"}, {"status": "in-progress"}):
        r = world.gp.get("/fhir/Task", params=params)
        assert r.status_code == 200, r.text
        assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [task["id"]]
        assert r.json()["total"] == 1
    assert world.gp.get("/fhir/Task/ghost").status_code == 404


# ---------------------------------------------------------------- batch Bundles

def _statuses(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["response"]["status"][:3] for e in r.json()["entry"]]


def _provenance(world: World) -> int:
    return _count(world, resources, resources.c.res_type == "Provenance")


def test_a_batchs_failing_entries_leave_nothing_and_the_others_stay(world: World) -> None:
    """Invalid, refused (no consent) and bad-reference entries among good ones: each bad
    one gets its own error and leaves no row (resource, version, index, Provenance); the
    good ones are written exactly as a batch of only them writes; the refusal is audited
    in the person's log."""
    pid, stranger = world.consented(), world.open_dossier()
    good = [f.task(f"Patient/{pid}") for _ in range(6)]
    before = _written(world)
    assert _statuses(world.gp.post("/fhir", _bundle(good, "batch"))) == ["201"] * 6
    alone = [after - b for after, b in zip(_written(world), before, strict=True)]

    invalid = {**f.task(f"Patient/{pid}"), "note": [{"text": "free text"}]}
    bad_ref = {**f.task(f"Patient/{pid}"), "requester": {"reference": "Practitioner/none"}}
    entries = [*good[:2], invalid, good[2], f.task(f"Patient/{stranger}"), *good[3:5],
               bad_ref, good[5]]
    before, provenance = _written(world), _provenance(world)
    refused = (audit_records.c.patient_id == stranger, audit_records.c.outcome == "denied")
    refusals = _count(world, audit_records, *refused)
    r = world.gp.post("/fhir", _bundle(entries, "batch"))
    assert _statuses(r) == ["201", "201", "422", "201", "404", "201", "201", "422", "201"]
    outcomes = [e["response"].get("outcome") for e in r.json()["entry"]]
    assert outcomes[7]["issue"][0]["diagnostics"] == "The referenced resource does not exist."
    assert [after - b for after, b in zip(_written(world), before, strict=True)] == alone
    assert _provenance(world) == provenance + 6
    assert world.gp.total("/fhir/Task", patient=f"Patient/{pid}") == 12
    assert _count(world, audit_records, *refused) == refusals + 1
    for entry in r.json()["entry"]:  # each written one is there as answered
        if entry["response"]["status"].startswith("201"):
            location = entry["response"]["location"].split("/_history")[0]
            assert world.gp.get(f"/fhir/{location}").json() == entry["resource"]


def test_a_mixed_batch_keeps_its_behaviour(world: World) -> None:
    """Creates with an update, a conditional create, a Consent, reads and deletions:
    the entries that are not plain creates still run on their own (savepoints), in
    order, and see what the entries before them wrote."""
    pid = world.consented()
    kept = world.gp.create(f.task(f"Patient/{pid}"))
    tagged = f.task(f"Patient/{pid}", code="debt-mediation")
    entries: list[dict[str, Any]] = [
        {"resource": f.task(f"Patient/{pid}"), "request": {"method": "POST", "url": "Task"}},
        {"resource": {**kept, "status": "on-hold"},
         "request": {"method": "PUT", "url": f"Task/{kept['id']}"}},
        {"request": {"method": "DELETE", "url": f"Task/{kept['id']}"}},  # nobody may
        {"resource": tagged, "request": {"method": "POST", "url": "Task",
                                         "ifNoneExist": f"patient={pid}&code=debt-mediation"}},
        {"resource": f.task(f"Patient/{pid}"), "request": {"method": "POST", "url": "Task"}},
        {"resource": f.consent(pid, world.sw_ref), "request": {"method": "POST",
                                                                "url": "Consent"}},
        {"request": {"method": "GET", "url": f"Task/{kept['id']}"}},
    ]
    before = world.gp.total("/fhir/Task", patient=f"Patient/{pid}")
    r = world.gp.post("/fhir", _bundle([], "batch") | {"entry": entries})
    # a practitioner writes no Consent but a person's assisted one (refused here)
    assert _statuses(r) == ["201", "200", "403", "201", "201", "403", "200"]
    assert r.json()["entry"][6]["resource"]["status"] == "on-hold"  # the PUT before it
    assert world.gp.total("/fhir/Task", patient=f"Patient/{pid}") == before + 3
    r = world.gp.post("/fhir", _bundle([], "batch") | {"entry": entries[3:4]})
    assert _statuses(r) == ["200"]  # the conditional create finds the first one

    citizen = world.citizen(pid)
    old = world.grant(pid, world.sw_ref)
    assert world.sw.get(f"/fhir/Task/{kept['id']}").status_code == 200
    r = citizen.post("/fhir", _bundle([], "batch") | {"entry": [
        {"request": {"method": "DELETE", "url": f"Consent/{old['id']}"}},
        {"resource": f.consent(pid, world.sw_ref, categories=("identity",)),
         "request": {"method": "POST", "url": "Consent"}},
        {"request": {"method": "GET", "url": f"Task/{kept['id']}"}}]})
    assert _statuses(r) == ["204", "201", "200"]
    assert world.sw.get(f"/fhir/Task/{kept['id']}").status_code == 404


def test_a_reference_found_in_a_batch_is_looked_up_again_after_a_deletion(
        world: World) -> None:
    """References found live are remembered within a batch only until an entry that may
    change them: here a deletion between two creates that name the same organisation."""
    org = world.admin.create(f.organization("Gone soon", "housing"))
    pract = world.admin.create(f.practitioner("Peeters"))
    ref, org_ref = f"Practitioner/{pract['id']}", f"Organization/{org['id']}"
    role = f.practitioner_role(ref, org_ref, "perssocialworker")
    r = world.admin.post("/fhir", _bundle([], "batch") | {"entry": [
        {"resource": role, "request": {"method": "POST", "url": "PractitionerRole"}},
        {"request": {"method": "DELETE", "url": org_ref}},
        {"resource": role, "request": {"method": "POST", "url": "PractitionerRole"}}]})
    assert _statuses(r) == ["201", "204", "422"]


def test_a_data_key_rolled_back_with_an_entry_is_forgotten(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry in a savepoint stores the person's first data key, then fails: the key's
    row is rolled back with it, so the request must not seal a later entry with that key
    (nothing could ever open it): a new key is stored."""
    pid = world.consented({"resourceType": "Patient", "active": True})  # nothing sealed
    assert _count(world, patient_keys, patient_keys.c.patient_id == pid) == 0
    after_write = content.after_write

    def fails(repo: repository.Repository, stored: repository.Stored) -> None:
        after_write(repo, stored)
        if stored.resource and stored.resource["name"][0]["family"] == "Fails":
            raise Unprocessable("made to fail after sealing")

    monkeypatch.setattr(content, "after_write", fails)
    r = world.gp.post("/fhir", _bundle([f.related_person(pid, family="Fails"),
                                        f.related_person(pid)], "batch"))
    assert _statuses(r) == ["422", "201"]
    location = r.json()["entry"][1]["response"]["location"].split("/_history")[0]
    read = world.gp.get(f"/fhir/{location}")
    assert read.status_code == 200, read.text
    assert read.json()["name"][0]["family"] == "Peeters"


@pytest.mark.parametrize("how", ["statement", "flush"])
def test_an_entry_that_wrote_then_failed_fails_the_whole_batch(
        world: World, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The guard: a plain create has no savepoint, so if one ever wrote to the database
    (itself, or by writing the buffer out) and then failed, its rows could not be undone
    alone. The whole unit is rolled back and the answer says so: nothing written."""
    pid = world.consented()
    marked = "2026-11-03T10:00:00+01:00"
    after_write = content.after_write

    def writes_then_fails(repo: repository.Repository, stored: repository.Stored) -> None:
        after_write(repo, stored)
        if stored.resource and stored.resource.get("authoredOn") == marked:
            if how == "statement":
                repo.session.execute(update(resources).where(
                    resources.c.res_id == pid).values(categories="identity"))
            else:
                repo.flush_writes()
            raise Unprocessable("made to fail after writing")

    monkeypatch.setattr(content, "after_write", writes_then_fails)
    entries = [f.task(f"Patient/{pid}") for _ in range(3)]
    entries.insert(2, f.task(f"Patient/{pid}", authored=marked))
    before = _written(world)
    r = world.gp.post("/fhir", _bundle(entries, "batch"))
    assert r.status_code == 500, r.text
    assert "nothing of the Bundle was written" in r.json()["issue"][0]["diagnostics"]
    assert _written(world) == before
    monkeypatch.setattr(content, "after_write", after_write)
    assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 200  # the UPDATE undone


def test_a_batch_whose_rows_the_database_refuses_writes_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entries' rows go in together at the end: if the database refuses them (a
    constraint), the entries cannot be told apart — the request fails, saying that
    nothing was written (it is not retried entry by entry)."""
    pid = world.consented()
    insert_tables = repository.insert_tables

    def refuses(session: Session, batches: list[tuple[Any, list[dict[str, Any]]]]) -> None:
        if any(table is search_index and len(rows) > 20 for table, rows in batches):
            raise IntegrityError("INSERT INTO search_index", {}, Exception("refused"))
        insert_tables(session, batches)

    monkeypatch.setattr(repository, "insert_tables", refuses)
    before = _written(world)
    r = world.gp.post("/fhir", _bundle([f.task(f"Patient/{pid}") for _ in range(10)],
                                       "batch"))
    assert r.status_code == 500, r.text
    assert "nothing of the Bundle was written" in r.json()["issue"][0]["diagnostics"]
    assert _written(world) == before


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["good", "invalid", "refused", "bad-reference"]),
                min_size=1, max_size=12))
def test_a_batch_writes_exactly_its_good_entries(world: World, kinds: list[str]) -> None:
    pid, stranger = _people(world)
    make = {
        "good": lambda: f.task(f"Patient/{pid}"),
        "invalid": lambda: {**f.task(f"Patient/{pid}"), "note": [{"text": "x"}]},
        "refused": lambda: f.task(f"Patient/{stranger}"),
        "bad-reference": lambda: {**f.task(f"Patient/{pid}"),
                                  "requester": {"reference": "Practitioner/none"}},
    }
    before = _written(world)
    tasks = world.gp.total("/fhir/Task", patient=f"Patient/{pid}")
    r = world.gp.post("/fhir", _bundle([make[k]() for k in kinds], "batch"))
    assert _statuses(r) == [{"good": "201", "invalid": "422", "refused": "404",
                             "bad-reference": "422"}[k] for k in kinds]
    good = kinds.count("good")
    assert world.gp.total("/fhir/Task", patient=f"Patient/{pid}") == tasks + good
    written = [after - b for after, b in zip(_written(world), before, strict=True)]
    assert written[:2] == [2 * good, 2 * good]  # each Task and its Provenance
    assert (written[2] == 0) == (good == 0)


def _people(world: World) -> tuple[str, str]:
    """A consented dossier and one the GP may not write to, made once per world (the
    examples of one property share it)."""
    found: tuple[str, str] | None = getattr(world, "batch_people", None)
    if found is None:
        found = (world.consented(), world.open_dossier())
        world.batch_people = found  # type: ignore[attr-defined]
    return found
