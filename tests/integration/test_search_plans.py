"""Where the embedded SQLite default starts a consented search (dossier/search/sql.py
`planned`): from the reader's grants (the access index by grantee, then each person's
rows) while matches are few; in page order (ix_resources_type_updated) once more than the
total's cap match, so the page stops after its rows instead of sorting every match; from
the dossier itself when the search names the person. Left to itself SQLite scanned every
resource of the type (bench/scale.py: 826 ms instead of 8 ms on 10,000 dossiers), or,
with an index in page order, walked all of them to find one person's few. A plan is
behaviour; its timing is never tested."""

from __future__ import annotations

from typing import Any

import pytest

from dossier.db.engine import refresh_statistics
from tests import factories as f
from tests.integration.conftest import World, listening


def _search_statements(world: World, params: dict[str, str]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        if "FROM resources" in statement and "access_grants" in statement:
            seen.append((statement, parameters))

    with listening(world, "before_cursor_execute", on_execute):
        assert world.gp.get("/fhir/Task", params=params).status_code == 200
    return seen


def _first_resources_line(plan: str) -> str:
    return next(line for line in plan.splitlines() if "resources" in line)


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


def _caseload(world: World) -> str:
    """The GP's few dossiers among twenty others, granted to someone else."""
    if world.app.state.runtime.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's planner chooses from the statistics autovacuum keeps")
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
    return mine


def test_a_consented_search_starts_from_the_readers_grants(world: World) -> None:
    _caseload(world)
    statements = _search_statements(world, {"authored-on": "ge2020-01-01", "_count": "20"})
    assert len(statements) == 2  # the count and the page
    for plan in _plans(world, statements):
        assert "ix_resources_patient" in _first_resources_line(plan), plan
        assert "access_grants USING INDEX ix_access_grants_grantee (grantee=?)" in plan, plan
        assert "SCAN access_grants" not in plan, plan  # never every grant of the region


def test_a_search_naming_the_person_starts_from_their_dossier(world: World) -> None:
    mine = _caseload(world)
    statements = _search_statements(world, {"patient": f"Patient/{mine}"})
    for plan in _plans(world, statements):
        assert "ix_resources_patient (patient_id=?" in _first_resources_line(plan), plan


def test_many_matches_are_read_in_page_order(world: World,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """More matches than the total's cap: the page walks the type's rows in page order
    and stops after the page (the count still starts from the grants, and stops at the
    cap)."""
    from dossier.core import repository

    _caseload(world)
    monkeypatch.setattr(repository, "TOTAL_CAP", 1)
    r = world.gp.get("/fhir/Task", params={"_count": "1"})
    assert r.status_code == 200 and "total" not in r.json()
    count, page = _plans(world, _search_statements(world, {"_count": "1"}))
    assert "ix_resources_patient" in _first_resources_line(count), count
    assert "ix_resources_type_updated" in _first_resources_line(page), page
    assert "TEMP B-TREE" not in page, page  # no sort of every match
    # `_total=none` reports no total, and is planned the same way (counted to the cap)
    count, page = _plans(world, _search_statements(world, {"_count": "1", "_total": "none"}))
    assert "ix_resources_type_updated" in _first_resources_line(page), page


def test_a_caseload_search_is_planned_for_its_reader_on_postgresql(world: World) -> None:
    """PostgreSQL may reuse a generic plan for a statement run five times on a connection,
    made without knowing whose grants it reads; at a caseload of 5,000 that plan took
    1.5 s instead of 60 ms (docs/benchmarks.md). A search's transaction asks for plans
    made with its own parameters, before its first statement over the resources."""
    engine = world.app.state.runtime.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans each statement as it is prepared")
    mine = world.consented()
    world.gp.create(f.task(f"Patient/{mine}"))
    seen: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        seen.append(statement)

    with listening(world, "before_cursor_execute", on_execute):
        for _ in range(7):
            r = world.gp.get("/fhir/Task", params={"authored-on": "ge2020-01-01"})
            assert r.status_code == 200 and r.json()["total"] == 1
    sets = [i for i, s in enumerate(seen)
            if "'plan_cache_mode', 'force_custom_plan', true" in s and "'jit', 'off', true" in s]
    searches = [i for i, s in enumerate(seen) if "FROM resources" in s and "count(" in s]
    assert len(sets) == len(searches) == 7
    assert all(s < c for s, c in zip(sets, searches, strict=True))


def test_few_matches_are_found_from_the_people_then_sorted_on_postgresql(
        world: World) -> None:
    """Asked to order `resources` by time, PostgreSQL's planner walked every Task in page
    order and probed each one's grants (100,000 dossiers, caseload 50: 58,480 probes,
    285 ms for 20 rows). With few matches the page now sorts a materialized set found
    from the reader's people, whatever the statistics say."""
    engine = world.app.state.runtime.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite is told where to start (INDEXED BY)")
    mine = world.consented()
    made = [world.gp.create(f.task(f"Patient/{mine}"))["id"] for _ in range(7)]
    statements = _search_statements(world, {"authored-on": "ge2020-01-01", "_count": "3"})
    page = [s for s in statements if "count(" not in s[0]]
    assert len(page) == 1 and "MATERIALIZED" in page[0][0]
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        plan = "\n".join(r[0] for r in raw.execute("EXPLAIN " + page[0][0],
                                                   page[0][1]).fetchall())
    assert "CTE matches" in plan and "CTE Scan on matches" in plan, plan
    assert "Sort Key: matches.last_updated" in plan, plan  # sorted, not walked in page order
    assert page[0][0].count("LIMIT") == 1 and ") AS page" in page[0][0]  # cut, then keyed
    # the same pages, in the same order, as the whole list
    seen: list[str] = []
    for sort in ("_lastUpdated", "-_lastUpdated"):
        got = []
        url: str | None = "/fhir/Task"
        params: dict[str, str] | None = {"authored-on": "ge2020-01-01", "_count": "3",
                                         "_sort": sort}
        while url:
            bundle = world.gp.get(url, params=params).json()
            got += [e["resource"]["id"] for e in bundle.get("entry", [])]
            url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"),
                       None)
            params = None
        assert sorted(got) == sorted(made) and len(got) == 7
        seen.append(",".join(got))
    assert seen[0].split(",") == seen[1].split(",")[::-1]
