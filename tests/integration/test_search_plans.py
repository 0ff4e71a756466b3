"""The embedded SQLite default plans a consented search from the reader's grants once the
service has refreshed the planner's statistics (db/engine.py `refresh_statistics`, run by
the maintenance worker at start and every 10 minutes). Without statistics SQLite scanned
every resource of the type, whatever the caseload (bench/scale.py: 826 ms instead of
8 ms on 10,000 dossiers). A plan is behaviour; its timing is never tested."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from dossier.db.engine import refresh_statistics
from tests import factories as f
from tests.integration.conftest import World


def _search_statements(world: World, params: dict[str, str]) -> list[tuple[str, Any]]:
    engine = world.app.state.runtime.engine
    seen: list[tuple[str, Any]] = []

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        if "FROM resources" in statement and "access_grants" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        assert world.gp.get("/fhir/Task", params=params).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    return seen


def _plans(world: World, statements: list[tuple[str, Any]]) -> list[str]:
    engine = world.app.state.runtime.engine
    out = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, parameters in statements:
            rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            out.append("\n".join(str(r[-1]) for r in rows))
    return out


def test_a_consented_search_starts_from_the_readers_grants(world: World) -> None:
    if world.app.state.runtime.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's autovacuum keeps its own statistics")
    mine = world.consented()
    for _ in range(2):
        world.gp.create(f.task(f"Patient/{mine}"))
    for _ in range(20):  # other people's dossiers, granted to someone else
        pid = world.consented(actor=world.sw_ref)
        r = world.sw.post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": f.task(f"Patient/{pid}"), "request": {"method": "POST", "url": "Task"}}
            for _ in range(5)]})
        assert r.status_code == 200, r.text
    refresh_statistics(world.app.state.runtime.engine)
    statements = _search_statements(world, {"authored-on": "ge2020-01-01", "_count": "20"})
    assert len(statements) == 2  # the count and the page
    for plan in _plans(world, statements):
        first_resources = next(line for line in plan.splitlines() if "resources" in line)
        assert "ix_resources_patient" in first_resources, plan
        assert plan.index("granted") < plan.index("resources"), plan
