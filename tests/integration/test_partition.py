"""`dossier db partition` (issue 14 item 5, SPEC §15): an opt-in PostgreSQL step that
partitions the dossier tables by patient (hash) and the audit records by month, in one
transaction, keeping every row and every guarantee the code relies on. The rest of the
suite runs on the partitioned schema with DOSSIER_TEST_PG_PARTITIONS=N (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dossier import cli
from dossier.app import create_app
from dossier.db.engine import make_engine
from dossier.db.partition import PartitionError, describe, is_partitioned, partition
from tests import factories as f
from tests.integration.conftest import World, make_settings

pytestmark = pytest.mark.postgres


def test_refused_on_sqlite_with_a_plain_message(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert cli.main(["db", "partition", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "PostgreSQL feature" in err and "sqlite" in err and "Traceback" not in err


@pytest.fixture
def populated(pg_url: str, tmp_path: Path) -> Iterator[tuple[World, str, dict[str, Any]]]:
    """A dossier with a Consent and a Task, written through the API before partitioning."""
    if os.environ.get("DOSSIER_TEST_PG_PARTITIONS"):
        pytest.skip("the template is partitioned already")
    app = create_app(make_settings(tmp_path / "data", pg_url))
    with TestClient(app) as client:
        world = World(app, client)
        pid = world.consented()
        task = world.gp.create(f.task(f"Patient/{pid}"))
        app.state.runtime.engine.dispose()  # no pooled connection holds a lock
        yield world, pid, task
    app.state.runtime.engine.dispose()


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def test_partition_keeps_rows_and_the_product_works_on_it(
        populated: tuple[World, str, dict[str, Any]], pg_url: str) -> None:
    world, pid, task = populated
    engine = make_engine(pg_url)
    tables = ("resources", "resource_versions", "access_grants", "patient_keys",
              "audit_records", "search_index")
    with engine.connect() as conn:
        before = {t: _count(conn, t) for t in tables}
    report = partition(engine, 4)
    with engine.connect() as conn:
        assert is_partitioned(conn) and is_partitioned(conn, "audit_records")
        shape = describe(conn)
        assert {shape[t] for t in ("resources", "resource_versions", "patient_keys")} == {4}
        assert "access_grants" not in shape  # the access index stays one table
        assert shape["audit_records"] == len(report.audit_partitions) >= 2
        assert {t: _count(conn, t) for t in tables} == before
        assert _count(conn, "resource_ids") == before["resources"]
    # reads, searches, writes, history and the audit go on as before (copied rows too)
    gp = world.gp
    assert gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    assert gp.total("/fhir/Task", patient=f"Patient/{pid}") == 1
    changed = gp.put(f"/fhir/Task/{task['id']}", {**task, "status": "in-progress"})
    assert changed.status_code == 200, changed.text
    history = gp.get(f"/fhir/Task/{task['id']}/_history").json()
    assert history["total"] == 2
    second = gp.create(f.task(f"Patient/{pid}"))
    assert gp.total("/fhir/Task", patient=f"Patient/{pid}") == 2
    assert world.sw.get(f"/fhir/Task/{second['id']}").status_code == 404  # not granted
    with engine.connect() as conn:
        assert _count(conn, "audit_records") > before["audit_records"]
    engine.dispose()


def test_type_and_id_stay_unique_across_partitions(
        populated: tuple[World, str, dict[str, Any]], pg_url: str) -> None:
    _world, pid, task = populated
    engine = make_engine(pg_url)
    partition(engine, 4)
    row = ("SELECT res_type, :rid, version_id, last_updated, deleted, :pid, categories, "
           "content, sealed, cat_mask, addressee FROM resources WHERE res_id = :src")
    with engine.connect() as conn:  # the same Task id in another person's dossier
        with pytest.raises(IntegrityError):
            conn.execute(text(f"INSERT INTO resources {row}"),
                         {"rid": task["id"], "pid": "someone-else", "src": task["id"]})
        conn.rollback()
        directory = conn.execute(text(
            "SELECT res_id FROM resources WHERE res_type = 'Organization' LIMIT 1")).scalar()
        with pytest.raises(IntegrityError):  # a directory row (no patient) twice
            conn.execute(text(f"INSERT INTO resources {row}"),
                         {"rid": directory, "pid": None, "src": directory})
        conn.rollback()
        assert pid
    engine.dispose()


def test_audit_partitions_stay_append_only_and_a_second_run_is_refused(
        populated: tuple[World, str, dict[str, Any]], pg_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(pg_url)
    report = partition(engine, 2)
    with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text("UPDATE audit_records SET outcome = 'x'"))
        conn.rollback()
        for name in (report.audit_partitions[0], report.audit_partitions[-1]):
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(f'TRUNCATE "{name}"'))
            conn.rollback()
    with pytest.raises(PartitionError, match="already partitioned"):
        partition(engine, 2)
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", pg_url)
    for action in ("partition", "check"):  # plain messages, no traceback
        assert cli.main(["db", action, "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "partitioned" in err and "Traceback" not in err


def test_the_application_role_gets_no_rights_on_a_partition(
        populated: tuple[World, str, dict[str, Any]], pg_url: str) -> None:
    """Its rights are the parent's: it writes through `resources` (and the key trigger),
    never a partition directly, and an audit partition stays out of its reach."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from dossier.db.roles import grant_application_role

    world, pid, _task = populated
    engine = make_engine(pg_url)
    partition(engine, 2)
    role = f"dossier_app_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        statements = grant_application_role(engine, role)
        assert not any("audit_records_p" in s or "resources_p" in s for s in statements)
        assert f'GRANT SELECT, INSERT ON "audit_records" TO "{role}"' in statements
        as_app = create_engine(make_url(pg_url).set(username=role).render_as_string(
            hide_password=False))
        with as_app.begin() as conn:  # a new resource, through the parent and the trigger
            conn.execute(text(
                "INSERT INTO resources SELECT res_type, 'copy-' || res_id, version_id, "
                "last_updated, deleted, patient_id, categories, content, sealed, cat_mask, "
                "addressee FROM resources WHERE res_type = 'Task'"))
        for sql in ("TRUNCATE audit_records_pdefault", "DELETE FROM resources_p000",
                    "INSERT INTO audit_records_pdefault SELECT * FROM audit_records"):
            with pytest.raises(DBAPIError, match="permission denied"), as_app.begin() as c:
                c.execute(text(sql))
        as_app.dispose()
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        engine.dispose()
    assert world and pid


def test_a_row_moving_to_another_partition_keeps_its_key(
        populated: tuple[World, str, dict[str, Any]], pg_url: str) -> None:
    """A resource whose patient is set where it was NULL moves partition (a DELETE and an
    INSERT for PostgreSQL): its key row follows, and the id stays taken."""
    _world, pid, task = populated
    engine = make_engine(pg_url)
    partition(engine, 4)
    key = text("SELECT patient_id FROM resource_ids WHERE res_id = :r")
    with engine.begin() as conn:
        for patient in (None, pid):
            conn.execute(text("UPDATE resources SET patient_id = :p WHERE res_id = :r"),
                         {"p": patient, "r": task["id"]})
            assert conn.execute(key, {"r": task["id"]}).scalars().all() == [patient]
        where = conn.execute(text("SELECT tableoid::regclass::text FROM resources "
                                  "WHERE res_id = :r"), {"r": task["id"]}).scalars().all()
        assert len(where) == 1 and where[0].startswith("resources_p")
    engine.dispose()


def test_a_role_that_may_not_change_the_schema_changes_nothing(
        populated: tuple[World, str, dict[str, Any]], pg_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Run as the application role (not the owner): refused in one line, nothing done."""
    import uuid

    from sqlalchemy.engine import make_url

    from dossier.db.roles import grant_application_role

    engine = make_engine(pg_url)
    role = f"dossier_app_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        grant_application_role(engine, role)
        monkeypatch.setenv("DATABASE_URL", make_url(pg_url).set(username=role)
                           .render_as_string(hide_password=False))
        assert cli.main(["db", "partition", "--data-dir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert "nothing was changed" in err and "Traceback" not in err
        with engine.connect() as conn:
            assert not is_partitioned(conn) and not is_partitioned(conn, "audit_records")
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        engine.dispose()
