"""Reads of the log are reads like any other (issue 16 item 4): an inclusion proof, an
AuditEvent read or search each leave a record, and each is refused with 503 (nothing
returned) when that record cannot be written."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from tests.integration.conftest import World


def _sequence(world: World) -> int:
    return int(world.app.state.runtime.integrate_audit())


def _records(world: World) -> list[dict[str, Any]]:
    with world.app.state.runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT record FROM audit_records ORDER BY seq")).all()
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def _break_audit(world: World, backend: str) -> None:
    with world.app.state.runtime.engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(text("CREATE TRIGGER break_audit BEFORE INSERT ON audit_records "
                              "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            conn.execute(text("CREATE FUNCTION break_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER break_audit BEFORE INSERT ON audit_records "
                              "FOR EACH ROW EXECUTE FUNCTION break_audit()"))


def test_an_inclusion_proof_is_recorded(world: World) -> None:
    pid = world.consented()
    world.gp.get(f"/fhir/Patient/{pid}")
    size = _sequence(world)
    before = len(_records(world))
    r = world.auditor.get("/audit/proof/inclusion", params={"index": 1, "tree_size": size})
    assert r.status_code == 200
    new = _records(world)[before:]
    assert len(new) == 1
    assert new[0]["agent"]["who"] == "Operator/auditor"
    assert new[0]["events"][0]["type"] == "AuditEvent"
    assert new[0]["events"][0].get("detail") == "inclusion-proof"
    # a refused proof is recorded too
    refused = world.gp.get("/audit/proof/inclusion", params={"index": 1, "tree_size": size})
    assert refused.status_code == 403
    last = _records(world)[-1]
    assert last["agent"]["who"] == world.gp_ref and last["outcome"] == "denied"


def test_reads_of_the_log_fail_closed(world: World, backend: str) -> None:
    pid = world.consented()
    world.gp.get(f"/fhir/Patient/{pid}")
    size = _sequence(world)
    event = world.auditor.get("/fhir/AuditEvent", params={"_count": "1"}).json()
    event_id = event["entry"][0]["resource"]["id"]
    before = len(_records(world))
    _break_audit(world, backend)
    for api, path, params in (
            (world.auditor, "/audit/proof/inclusion", {"index": 0, "tree_size": size}),
            (world.citizen(pid), "/audit/proof/inclusion", {"index": 0, "tree_size": size}),
            (world.auditor, f"/fhir/AuditEvent/{event_id}", {}),
            (world.auditor, "/fhir/AuditEvent", {}),
            (world.citizen(pid), "/fhir/AuditEvent", {})):
        r = api.get(path, params=params)
        assert r.status_code == 503, (path, r.status_code)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert "leaf" not in body and "audit_path" not in body and event_id not in r.text
    assert len(_records(world)) == before
