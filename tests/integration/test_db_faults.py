"""The database connection dies (PostgreSQL restarted, a pooler dropping it): requests in
flight fail with a 503 OperationOutcome and are still audited; the next ones succeed
without restarting the service, and no connection check runs on the hot path."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from dossier.core import repository
from dossier.core.context import RequestContext
from dossier.db.models import audit_records
from dossier.errors import ServiceUnavailable
from tests import factories as f
from tests.conftest import PG_ADMIN_URL
from tests.integration.conftest import World

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend() -> str:
    return "postgres"


def _kill_connections(world: World) -> int:
    """Terminate every server process of the service's database (not ours)."""
    name = world.app.state.runtime.engine.url.database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": name}).scalar_one()
    admin.dispose()
    return int(killed)


def _records(world: World) -> int:
    """Counted on a connection of its own (the service's pool is what is under test)."""
    engine = create_engine(world.app.state.runtime.engine.url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_records))
                       .scalar_one())
    finally:
        engine.dispose()


def test_a_dead_pooled_connection_costs_no_request(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    assert _kill_connections(world) >= 1  # the pooled connections are now dead
    before = _records(world)
    r = world.gp.get(f"/fhir/Task/{task['id']}")
    assert r.status_code == 200, r.text  # the unit met a dead connection and ran again
    assert _records(world) == before + 1  # audited once, for the one answer given


def test_a_connection_lost_mid_request_fails_503_and_is_audited(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    runtime: Any = world.app.state.runtime
    claims = world.app.state.dev_issuer  # the same token the GP uses
    token = world.gp.headers["Authorization"].split()[1]
    ctx = world.app.state.authenticate(f"Bearer {token}")
    assert isinstance(ctx, RequestContext) and claims is not None
    before = _records(world)

    def read_twice() -> None:
        with runtime.unit(ctx, writes=False) as repo:
            repo.read("Task", task["id"])
            _kill_connections(world)  # the server goes away in the middle of the request
            repo.read("Task", task["id"])

    with pytest.raises(ServiceUnavailable) as caught:
        read_twice()
    assert caught.value.status == 503 and "Try again" in caught.value.message
    assert _records(world) == before + 1  # the failure is in the log (a fresh connection)
    engine = create_engine(runtime.engine.url)
    with engine.connect() as conn:
        last = conn.execute(select(audit_records.c.outcome).order_by(
            audit_records.c.recorded_at.desc()).limit(1)).scalar_one()
    engine.dispose()
    assert last == "error"
    assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200  # and it recovers


def test_a_connection_lost_in_a_request_on_the_event_loop_fails_503_and_is_audited(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP, where the unit runs on the event loop (Runtime.on_loop): the row is read,
    then the server goes away before the audit record is written. The answer is a 503
    OperationOutcome, never the row; the failure is in the log; the next read succeeds."""
    assert world.app.state.runtime.on_loop
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    before = _records(world)
    real = repository.Repository.read

    def read_then_lose(repo: Any, *a: Any, **kw: Any) -> Any:
        found = real(repo, *a, **kw)
        _kill_connections(world)
        return found

    monkeypatch.setattr(repository.Repository, "read", read_then_lose)
    r = world.gp.get(f"/fhir/Task/{task['id']}")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and "Try again" in r.text
    assert task["id"] not in r.text
    assert _records(world) == before + 1
    engine = create_engine(world.app.state.runtime.engine.url)
    with engine.connect() as conn:
        last = conn.execute(select(audit_records.c.outcome).order_by(
            audit_records.c.recorded_at.desc()).limit(1)).scalar_one()
    engine.dispose()
    assert last == "error"
    assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
