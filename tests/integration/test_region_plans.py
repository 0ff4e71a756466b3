"""Statements on a request path read by key or by what the request concerns, whatever
the size of the region — the pattern of test_principal_plan.py, for the other requests
(SPEC §14, §15). Each test fills the region with rows the request does not concern,
written straight to the tables, and checks the plan of the request's own statements:
on PostgreSQL the rows each table gave up (EXPLAIN ANALYZE), on SQLite the index and
the bounds each step searches with (EXPLAIN QUERY PLAN). A plan is behaviour; its
timing is never tested."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dossier.db.engine import refresh_statistics
from dossier.db.models import audit_records, resources, search_index
from dossier.seed.territory import territory
from tests import factories as f
from tests.integration.conftest import Api, World, listening
from tests.integration.test_principal_plan import MANY, _rows, _rows_read, _seed

# the aliases a search gives search_index (dossier/search/sql.py)
INDEX_TABLES = ("search_index", "territory", "step", "up")


def _statements(world: World, api: Api, path: str, needle: str) -> list[tuple[str, Any]]:
    """The SELECT statements of a GET whose SQL mentions `needle` (at least one)."""
    def get() -> None:
        r = api.get(path)
        assert r.status_code == 200, r.text

    return _captured(world, get, needle)


def _captured(world: World, request: Callable[[], None],
              needle: str) -> list[tuple[str, Any]]:
    """The SELECT statements of a request whose SQL mentions `needle` (at least one)."""
    seen: list[tuple[str, Any]] = []

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        if needle in statement and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    with listening(world, "before_cursor_execute", on_execute):
        request()
    assert seen, f"no statement mentions {needle}"
    return seen


def _assert_bounded(world: World, statements: list[tuple[str, Any]], most: int,
                    tables: tuple[str, ...] = ("resources", "search_index")) -> None:
    """PostgreSQL: no table gives up more than `most` rows. SQLite: no step scans a
    table, and every step through the search index's (type, parameter, value) index is
    bounded by the value, not only by the type and the parameter."""
    engine = world.app.state.runtime.engine
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, parameters in statements:
            if engine.dialect.name == "sqlite":
                plan = [str(r[-1]) for r in raw.execute("EXPLAIN QUERY PLAN " + statement,
                                                        parameters).fetchall()]
                for line in plan:
                    words = line.split()
                    if len(words) < 2 or words[1] not in (*INDEX_TABLES, *tables):
                        continue
                    assert words[0] == "SEARCH", plan
                    if "ix_search_index_lookup" in line:
                        bounds = re.search(r"\((.*)\)", line)
                        assert bounds and "value" in bounds.group(1), plan
                continue
            (found,) = raw.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                                   parameters).fetchone()
            raw.rollback()
            tree = found if isinstance(found, list) else json.loads(found)
            for table in tables:
                read = _rows_read(tree[0]["Plan"], table)
                assert read <= most, (table, read, json.dumps(tree, indent=1)[:4000])


def _directory(kind: str, param: str, value: Any) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
    """MANY directory rows of `kind`, each with one `param` index value (value(n))."""
    rows = [_rows(kind, n, patient=False) for n in range(MANY)]
    index = [{"res_type": kind, "res_id": r["res_id"], "param": param, "system": None,
              "value": value(n)} for n, r in enumerate(rows)]
    return rows, index


def test_a_name_search_of_the_directory_reads_the_names_it_matches(world: World) -> None:
    """`Practitioner?name=` starts from the index (the directory is not bounded by any
    grant): a prefix LIKE read every Practitioner's names (PostgreSQL: the collation's
    index cannot bound a LIKE; SQLite: a case-insensitive LIKE never uses a BINARY
    index)."""
    rows, index = _directory("Practitioner", "name", lambda n: f"family{n:05d}")
    _seed(world, [(resources, rows), (search_index, index)])
    statements = _statements(world, world.gp, "/fhir/Practitioner?name=family0001",
                             "search_index")
    _assert_bounded(world, statements, most=60)


def test_a_postal_code_finds_its_places_by_index(world: World) -> None:
    """The répertoire's `address-postalcode` (SPEC §14) starts from the Locations whose
    postal code starts with the value: it read every Location's postal code."""
    rows, index = _directory("Location", "address-postalcode", lambda n: f"9{n:04d}")
    services, coverage = _directory("HealthcareService", "coverage-area",
                                    lambda n: f"Location/location-{n}")  # one place each
    _seed(world, [(resources, rows + services), (search_index, index + coverage)])
    statements = _statements(world, world.gp,
                             "/fhir/HealthcareService?address-postalcode=90012",
                             "territory")
    # the shipped territory's few `partof` rows may be read whole by the walks down and
    # up (a hash join while they are few); never the region's postal codes
    _assert_bounded(world, statements, most=2 * len(territory()) + 60)


def test_what_one_professional_did_is_read_by_agent(world: World) -> None:
    """`AuditEvent?agent=` (the auditor's log, filtered by who acted) read every record
    of the log: audit_records had no index by agent."""
    world.gp.get("/fhir/Practitioner")  # the professional asked about has a record or two
    now = datetime.now(UTC)
    _seed(world, [(audit_records, [
        {"id": f"other-{n}", "recorded_at": now - timedelta(seconds=n), "patient_id": None,
         "agent": f"Practitioner/other-{n % 500}", "action": "search", "outcome": "success",
         "record": {"id": f"other-{n}"}, "leaf": None, "mac": None}
        for n in range(5 * MANY)])])
    statements = _statements(world, world.auditor, f"/fhir/AuditEvent?agent={world.gp_ref}",
                             "audit_records.agent")
    _assert_bounded(world, statements, most=20, tables=("audit_records",))


def test_a_referral_tells_the_organisations_members_without_reading_every_inactive_role(
        world: World) -> None:
    """A referral (a Task owned by another organisation, SPEC §14) finds the owner's
    members with an active role: `NOT IN` (every inactive role) read every inactive
    PractitionerRole of the region — roles end, and stay — for each referral."""
    roles = [_rows("PractitionerRole", n, patient=False) for n in range(MANY)]
    _seed(world, [(resources, roles), (search_index, [
        {"res_type": "PractitionerRole", "res_id": r["res_id"], "param": param,
         "system": None, "value": value} for n, r in enumerate(roles)
        for param, value in (("active", "false"), ("organization", f"Organization/o-{n}"),
                             ("practitioner", f"Practitioner/p-{n}"))])])
    cpas = f"Organization/{world.admin.create(f.organization('CPAS d’Anderlecht'))['id']}"
    world.add_practitioner("Lambert", "perssocialworker", cpas)
    pid = world.consented()
    world.grant(pid, cpas, categories=("identity", "demarches"))
    task = f.task(f"Patient/{pid}", code="debt-mediation", status="requested", owner=cpas)

    def refer() -> None:
        world.gp.create(task)

    statements = _captured(world, refer, "SELECT DISTINCT")
    _assert_bounded(world, statements, most=30)


def test_a_repertoire_import_is_planned_with_fresh_statistics(world: World) -> None:
    """Right after a répertoire import PostgreSQL's statistics know of no service (the
    import is less than the 10 % of a region's search index autovacuum waits for): the
    planner joined every service to every service's coverage rows — `serves=` read
    320,000 index rows for 600 services, and took minutes over 3,000. The maintenance
    worker (every 10 minutes) now analyses a table of ours once 2 % of it changed."""
    engine = world.app.state.runtime.engine
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        with engine.connect() as conn:  # only the maintenance analyses, as in a region
            for name in ("search_index", "resources"):
                conn.exec_driver_sql(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
            conn.commit()
    _seed(world, [])  # analysed before the import: no service
    places = [p["id"] for p in territory()]
    services, coverage = _directory("HealthcareService", "coverage-area",
                                    lambda n: f"Location/{places[n % len(places)]}")
    n = len(services) // 5
    with engine.begin() as conn:  # the import
        conn.execute(resources.insert(), services[:n])
        conn.execute(search_index.insert(), coverage[:n])
        if postgres:  # its counts reach the statistics views at its commit
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    refresh_statistics(engine)  # the maintenance worker's next pass
    statements = _statements(world, world.gp,
                             "/fhir/HealthcareService?serves=Location/bassin-sud",
                             "RECURSIVE")
    _assert_bounded(world, statements, most=2 * n + 2 * len(places))
