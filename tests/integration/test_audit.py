"""The access log over HTTP and in the database: one record per request, fail closed,
append-only, tamper evidence caught by `dossier audit verify`, proofs per §12."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit.checkpoint import verify_tree_head
from tests import factories as f
from tests.integration.conftest import World
from tests.unit.audit.rfc6962_reference import mth, path

LOG_INDEX = "https://dossier.brussels/fhir/StructureDefinition/log-index"


def _sequence(world: World) -> int:
    return int(world.app.state.runtime.integrate_audit())


def _events(api: Any, **params: str) -> list[dict[str, Any]]:
    r = api.get("/fhir/AuditEvent", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_every_request_is_recorded_permitted_or_denied(world: World) -> None:
    pid = world.consented()
    stranger = world.open_dossier(f.patient(ssin=f.niss("800101", 4)))
    world.gp.get(f"/fhir/Patient/{pid}")
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 404  # no consent for the SW
    assert world.gp.get(f"/fhir/Patient/{stranger}").status_code == 404
    _sequence(world)
    mine = _events(world.citizen(pid))
    assert mine and all(e["entity"][0]["what"]["reference"] == f"Patient/{pid}" for e in mine)
    reads = [e for e in mine if e["action"] == "R"]
    outcomes = {(e["agent"][0]["who"]["reference"], e["outcome"]) for e in reads}
    assert (world.gp_ref, "0") in outcomes
    assert (world.sw_ref, "4") in outcomes  # the refusal is in the log too
    assert all(any(x["url"] == LOG_INDEX for x in e.get("extension", [])) for e in mine)
    # the stranger's log holds the GP's refused attempt, and Martin's log does not
    theirs = _events(world.as_("auditor", "Operator/dpo"), patient=f"Patient/{stranger}")
    assert any(e["outcome"] == "4" for e in theirs)
    assert all(e["entity"][0]["what"]["reference"] != f"Patient/{stranger}" for e in mine)


def test_who_reads_the_log(world: World) -> None:
    pid = world.consented()
    other = world.consented(f.patient(ssin=f.niss("800101", 5)))
    world.gp.get(f"/fhir/Patient/{other}")
    _sequence(world)
    assert world.gp.get("/fhir/AuditEvent").status_code == 403
    assert world.admin.get("/fhir/AuditEvent").status_code == 403
    everything = _events(world.auditor, _count="200")
    assert {e["entity"][0]["what"].get("reference") for e in everything
            if e["entity"]} >= {f"Patient/{pid}", f"Patient/{other}"}
    own = _events(world.citizen(pid), patient=f"Patient/{other}")
    assert own == []  # a citizen's search is always narrowed to their own dossier
    record = everything[0]["id"]
    hidden = world.citizen(pid).get(f"/fhir/AuditEvent/{record}")
    assert hidden.status_code in (200, 404)
    assert world.auditor.get(f"/fhir/AuditEvent/{record}").status_code == 200


def test_no_personal_data_in_records(world: World) -> None:
    niss = f.niss("590101", 321)
    pid = world.consented(f.patient(ssin=niss, family="Vandermeulen", given="Martin"))
    world.gp.get("/fhir/Patient", params={"identifier": f"{f.SSIN}|{niss}"})
    _sequence(world)
    engine = world.app.state.runtime.engine
    with engine.connect() as conn:
        dump = json.dumps([list(r) for r in conn.execute(text(
            "SELECT record FROM audit_records")).all()], default=str)
    assert pid in dump  # pseudonymous ids are how the log names people
    for secret in (niss, "Vandermeulen", "Martin"):
        assert secret not in dump


def test_fail_closed_when_the_audit_cannot_be_written(world: World, backend: str) -> None:
    pid = world.consented()
    engine = world.app.state.runtime.engine
    with engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(text("CREATE TRIGGER break_audit BEFORE INSERT ON audit_records "
                              "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            conn.execute(text("CREATE FUNCTION break_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER break_audit BEFORE INSERT ON audit_records "
                              "FOR EACH ROW EXECUTE FUNCTION break_audit()"))
    notices = "SELECT count(*) FROM notification_outbox"
    with engine.connect() as conn:
        before = conn.execute(text(notices)).scalar_one()
    r = world.gp.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 503
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Martin" not in r.text and pid not in r.text
    with engine.connect() as conn:  # the read's notice went with its record: no half
        assert conn.execute(text(notices)).scalar_one() == before
    w = world.gp.post("/fhir/Task", f.task(f"Patient/{pid}"))
    assert w.status_code == 503
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER break_audit" + ("" if backend == "sqlite"
                                                         else " ON audit_records")))
    assert world.gp.total("/fhir/Task", patient=pid) == 0  # the write left nothing


def test_append_only_in_the_database(world: World, backend: str) -> None:
    pid = world.consented()
    for _ in range(16):  # a stored Merkle node (level 4) exists from 16 leaves on
        world.gp.get(f"/fhir/Patient/{pid}")
    _sequence(world)
    engine = world.app.state.runtime.engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_nodes")).scalar_one() > 0
    statements = ["UPDATE audit_records SET outcome = 'success'",
                  "DELETE FROM audit_records",
                  "UPDATE audit_leaves SET leaf_index = leaf_index + 1",
                  "DELETE FROM audit_nodes", "DELETE FROM audit_tree_heads"]
    if backend == "postgres":
        statements.append("TRUNCATE audit_records")
    for sql in statements:
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(sql))


def _verify(world: World, settings: Any) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    return subprocess.run([sys.executable, "-m", "dossier", "audit", "verify", "--data-dir",
                           str(settings.data_dir)], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def _unprotect(conn: Any, backend: str) -> None:
    """What a superuser could do: remove the protection to tamper."""
    for table in ("audit_records", "audit_leaves", "audit_nodes", "audit_tree_heads"):
        if backend == "sqlite":
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
        else:
            conn.execute(text(f"DROP TRIGGER {table}_no_change ON {table}"))


@pytest.mark.parametrize("tamper", ["modify", "delete", "reorder"])
def test_audit_verify_names_the_first_bad_record(world: World, settings: Any, backend: str,
                                                 tamper: str) -> None:
    pid = world.consented()
    for _ in range(6):
        world.gp.get(f"/fhir/Patient/{pid}")
    size = _sequence(world)
    assert size >= 10
    ok = _verify(world, settings)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    target = 5
    engine = world.app.state.runtime.engine
    with engine.begin() as conn:
        _unprotect(conn, backend)
        rid = conn.execute(text("SELECT record_id FROM audit_leaves WHERE leaf_index = :i"),
                           {"i": target}).scalar_one()
        if tamper == "modify":
            record = conn.execute(text("SELECT record FROM audit_records WHERE id = :r"),
                                  {"r": rid}).scalar_one()
            record = json.loads(record) if isinstance(record, str) else record
            record["outcome"] = "denied"
            leaf = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            conn.execute(text("UPDATE audit_records SET record = :rec, leaf = :leaf "
                              "WHERE id = :r"), {"rec": json.dumps(record), "leaf": leaf,
                                                 "r": rid})
        elif tamper == "delete":
            conn.execute(text("DELETE FROM audit_records WHERE id = :r"), {"r": rid})
        else:
            other = conn.execute(text("SELECT record_id FROM audit_leaves WHERE "
                                      "leaf_index = :i"), {"i": target + 1}).scalar_one()
            conn.execute(text("UPDATE audit_leaves SET record_id = 'swap' WHERE "
                              "record_id = :a"), {"a": rid})
            conn.execute(text("UPDATE audit_leaves SET record_id = :a WHERE record_id = :b"),
                         {"a": rid, "b": other})
            conn.execute(text("UPDATE audit_leaves SET record_id = :b WHERE "
                              "record_id = 'swap'"), {"b": other})
    bad = _verify(world, settings)
    assert bad.returncode != 0
    assert f"index {target}" in bad.stdout


def test_proofs_follow_the_contract(world: World) -> None:
    pid = world.consented()
    for _ in range(4):
        world.gp.get(f"/fhir/Patient/{pid}")
    first = _sequence(world)
    world.gp.get(f"/fhir/Patient/{pid}")
    size = _sequence(world)
    head = world.anonymous.get("/audit/tree-head").json()
    assert set(head) == {"tree_size", "root_hash", "timestamp", "checkpoint", "signature"}
    assert head["tree_size"] == size
    lines = head["checkpoint"].split("\n")
    assert lines[1] == str(size) and lines[2] == head["root_hash"]
    jwk = world.anonymous.get("/audit/public-key").json()
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    verify_tree_head(head, jwk)

    auditor = world.auditor
    leaves = []
    for index in range(size):
        proof = auditor.get("/audit/proof/inclusion",
                            params={"index": index, "tree_size": size}).json()
        leaf = base64.b64decode(proof["leaf"])
        leaves.append(leaf)
        assert json.loads(leaf)["id"]  # the canonical record names its AuditEvent id
    assert base64.b64encode(mth(leaves)).decode() == head["root_hash"]
    for index in range(size):
        proof = auditor.get("/audit/proof/inclusion",
                            params={"index": index, "tree_size": size}).json()
        assert [base64.b64decode(p) for p in proof["audit_path"]] == path(index, leaves)

    # the auditor's proof reads are themselves recorded (not yet sequenced): take the
    # newest of the person's records that the sequencer has placed in the tree
    mine = [e for e in _events(world.citizen(pid)) if "extension" in e]
    idx = next(x["valueInteger"] for x in mine[0]["extension"] if x["url"] == LOG_INDEX)
    receipt = world.citizen(pid).get("/audit/proof/inclusion",
                                     params={"index": idx, "tree_size": size})
    assert receipt.status_code == 200
    assert json.loads(base64.b64decode(receipt.json()["leaf"]))["id"] == mine[0]["id"]
    others = [i for i in range(size) if json.loads(leaves[i]).get("patient")
              != f"Patient/{pid}"]
    assert world.citizen(pid).get("/audit/proof/inclusion", params={
        "index": others[0], "tree_size": size}).status_code == 403

    cons = world.anonymous.get("/audit/proof/consistency",
                               params={"first": first, "second": size}).json()
    assert cons["first"] == first and cons["second"] == size
    for bad in ({"first": 3, "second": 2}, {"first": 0, "second": size + 5},
                {"first": "x", "second": 1}):
        assert world.anonymous.get("/audit/proof/consistency", params=bad).status_code == 400


@pytest.mark.postgres
def test_application_role_cannot_alter_the_log(pg_url: str, tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: the service runs as a role with INSERT/SELECT only on the audit log,
    migrations as the owner; even without the triggers the role could not tamper."""
    import uuid as _uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from dossier.app import create_app
    from dossier.cli import main
    from tests.integration.conftest import make_settings

    role = f"dossier_app_{_uuid.uuid4().hex[:8]}"
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with monkeypatch.context() as env:
            env.setenv("DATABASE_URL", pg_url)
            assert main(["db", "grant", "--role", role, "--data-dir", str(tmp_path)]) == 0
        app_url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
        app = create_app(make_settings(tmp_path / "data", app_url,
                                       migration_database_url=pg_url))
        from fastapi.testclient import TestClient

        with TestClient(app) as client:
            w = World(app, client)
            pid = w.consented()
            assert w.gp.get(f"/fhir/Patient/{pid}").status_code == 200
            app.state.runtime.integrate_audit()
        app.state.runtime.engine.dispose()
        as_app = create_engine(app_url)
        for sql in ("UPDATE audit_records SET outcome = 'x'", "DELETE FROM audit_leaves",
                    "TRUNCATE audit_nodes", "DROP TRIGGER audit_records_no_change ON "
                    "audit_records"):
            with pytest.raises(DBAPIError) as err, as_app.begin() as conn:
                conn.execute(text(sql))
            assert "permission denied" in str(err.value) or "must be owner" in str(err.value)
        as_app.dispose()
    finally:
        with owner.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()


def test_audit_export_writes_verifiable_ndjson(world: World, settings: Any,
                                               tmp_path: Any) -> None:
    pid = world.consented()
    world.gp.get(f"/fhir/Patient/{pid}")
    size = _sequence(world)
    out = tmp_path / "log.ndjson"
    env = {"PATH": "/usr/bin:/bin"}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    done = subprocess.run([sys.executable, "-m", "dossier", "audit", "export", "--data-dir",
                           str(settings.data_dir), "--output", str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    proofs, head = lines[:-1], lines[-1]["tree_head"]
    assert len(proofs) == size and head["tree_size"] == size
    leaves = [base64.b64decode(p["leaf"]) for p in proofs]
    assert base64.b64encode(mth(leaves)).decode() == head["root_hash"]
    for p in proofs:
        assert [base64.b64decode(x) for x in p["audit_path"]] == path(p["index"], leaves)


def test_the_log_keeps_its_name_when_the_address_changes(world: World, settings: Any,
                                                         data_dir: Any,
                                                         database_url: str | None) -> None:
    from dossier.app import create_app
    from tests.integration.conftest import make_settings

    pid = world.consented()
    world.gp.get(f"/fhir/Patient/{pid}")
    _sequence(world)
    moved = create_app(make_settings(data_dir, database_url, base_url="https://dossier.example"))
    from fastapi.testclient import TestClient

    with TestClient(moved) as client:
        w = World(moved, client)
        w.gp.get("/fhir/Organization")
        moved.state.runtime.integrate_audit()
    moved.state.runtime.engine.dispose()
    result = _verify(world, settings)
    assert result.returncode == 0, result.stdout
