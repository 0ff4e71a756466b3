"""Every request's principal is read by key, whatever the size of the region
(dossier/core/directory.py). Two statements read the whole table instead on PostgreSQL:
- a practitioner's, where one OR across the Practitioner and its PractitionerRoles read
  every PractitionerRole of the region (or, by the statistics, every row without a
  person: the répertoire's Locations and Groups, their Provenance);
- a citizen's by national number, where a subquery correlated with the outer row probed
  the blind index once per Patient of the region.
A plan is behaviour; its timing is never tested."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert

from dossier.db.models import resources, search_index
from dossier.domain.people import SSIN
from tests import factories as f
from tests.integration.conftest import Api, World, listening

MANY = 3000


def _rows(kind: str, n: int, patient: bool) -> dict[str, Any]:
    rid = f"{kind.lower()}-{n}"
    return {"res_type": kind, "res_id": rid, "version_id": 1,
            "last_updated": datetime.now(UTC), "deleted": False,
            "patient_id": rid if patient else None, "categories": "", "cat_mask": 0,
            "content": {"resourceType": kind, "id": rid}}


def _seed(world: World, table_rows: list[tuple[Any, list[dict[str, Any]]]]) -> None:
    """Rows written straight to the tables, then the planner's statistics refreshed."""
    engine = world.app.state.runtime.engine
    with engine.begin() as conn:
        for table, rows in table_rows:
            conn.execute(insert(table), rows)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def _statement(world: World, api: Api, path: str, needle: str) -> tuple[str, Any]:
    """The one statement of a GET whose SQL or parameters mention `needle`."""
    seen: list[tuple[str, Any]] = []

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        if needle in statement or needle in str(parameters):
            seen.append((statement, parameters))

    with listening(world, "before_cursor_execute", on_execute):
        assert api.get(path).status_code == 200
    assert len(seen) == 1, seen
    return seen[0]


def _rows_read(node: dict[str, Any], table: str) -> int:
    """Rows of `table` an analysed PostgreSQL plan read: returned plus filtered out."""
    own = 0
    if node.get("Relation Name") == table:
        own = ((node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) *
               node.get("Actual Loops", 1))
    return own + sum(_rows_read(child, table) for child in node.get("Plans", []))


def _assert_by_key(world: World, statement: str, parameters: Any) -> None:
    engine = world.app.state.runtime.engine
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        if engine.dialect.name == "sqlite":
            plan = [str(r[-1]) for r in raw.execute("EXPLAIN QUERY PLAN " + statement,
                                                    parameters).fetchall()]
            on_resources = [line for line in plan if " resources" in line]
            assert on_resources and all(line.startswith("SEARCH resources USING ") and
                                        "(res_type=? AND res_id=?)" in line
                                        for line in on_resources), plan
            return
        (found,) = raw.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                               parameters).fetchone()
        tree = found if isinstance(found, list) else json.loads(found)
        for table in ("resources", "search_index"):
            read = _rows_read(tree[0]["Plan"], table)
            assert read <= 5, (table, json.dumps(tree, indent=1)[:3000])


def test_a_practitioners_principal_is_read_by_key_whatever_the_directory_holds(
        world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    roles = [_rows("PractitionerRole", n, patient=False) for n in range(MANY)]
    _seed(world, [
        (resources, roles + [_rows("Location", n, patient=False) for n in range(MANY)]),
        (search_index, [{"res_type": "PractitionerRole", "res_id": r["res_id"],
                         "param": "practitioner", "system": None,
                         "value": f"Practitioner/other-{n}"} for n, r in enumerate(roles)])])
    statement, parameters = _statement(world, world.gp, f"/fhir/Task/{task['id']}",
                                       "PractitionerRole")
    _assert_by_key(world, statement, parameters)


def test_a_citizens_principal_is_read_by_key_whatever_the_region_holds(
        world: World) -> None:
    issuer = getattr(world.app.state, "dev_issuer", None)
    if issuer is None:
        pytest.skip("the embedded issuer mints the national-number token")
    niss = f.niss("690505", 41)
    pid = world.consented(f.patient(ssin=niss))
    task = world.gp.create(f.task(f"Patient/{pid}"))
    blind = world.app.state.runtime.sealer().blind
    people = [_rows("Patient", n, patient=True) for n in range(MANY)]
    _seed(world, [(resources, people), (search_index, [
        {"res_type": "Patient", "res_id": p["res_id"], "param": "identifier",
         "system": SSIN, "value": blind(SSIN, f.niss("700101", n % 900 + 1) + str(n))}
        for n, p in enumerate(people)])])
    citizen = Api(world.client, issuer.mint(None, ["citizen"], None, 600, niss=niss))
    statement, parameters = _statement(world, citizen, f"/fhir/Task/{task['id']}",
                                       "identifier")
    _assert_by_key(world, statement, parameters)
