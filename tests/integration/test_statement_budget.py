"""Cost budgets (SPEC §15): statements and transactions per request, counted on the real
engine with SQLAlchemy's cursor events, on SQLite and PostgreSQL. Timings are never
tested; these counts are, because each statement is a round trip under load."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg import pq

from tests import factories as f
from tests.integration.conftest import World, listening

CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")


@dataclass
class Count:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0

    @property
    def n(self) -> int:
        return len(self.statements)


@contextmanager
def counting(world: World) -> Iterator[Count]:
    count = Count()

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if head not in CONTROL:
            count.statements.append(" ".join(statement.split())[:160])

    def on_begin(conn: Any) -> None:
        count.transactions += 1

    with listening(world, "before_cursor_execute", on_execute), \
            listening(world, "begin", on_begin):
        yield count


# A practitioner's read: the principal; the row with its key and its person's Consents;
# the audit record and its notice. On PostgreSQL the first two are one statement
# (core/repository.py ReadAlong) and the last two are one (a WITH): 2; on SQLite 4.
# `transactions` counts the unit's begin as SQLAlchemy sees it; what PostgreSQL gets
# (no BEGIN or COMMIT for a read or a create) is checked on the wire, below.
READ = {"postgres": 2, "sqlite": 4}


def test_a_consented_read_is_one_transaction_of_at_most_four_statements(
        world: World, backend: str) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    world.gp.get(f"/fhir/Task/{task['id']}")  # warm: nothing is kept between requests
    with counting(world) as c:
        assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    assert c.transactions == 1, c.statements
    assert c.n <= READ[backend], c.statements


def test_a_consented_read_of_sealed_data_stays_within_the_same(world: World,
                                                               backend: str) -> None:
    pid = world.consented()
    with counting(world) as c:
        assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 200
    assert c.transactions == 1, c.statements
    assert c.n <= READ[backend], c.statements


def test_a_citizens_read_is_at_most_four_statements(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    citizen = world.citizen(pid)
    with counting(world) as c:
        assert citizen.get(f"/fhir/Task/{task['id']}").status_code == 200
        assert citizen.get(f"/fhir/Patient/{pid}").status_code == 200
    assert c.transactions == 2, c.statements
    assert c.n <= 8, c.statements


def test_a_refused_read_costs_no_more_than_a_permitted_one(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    with counting(world) as c:
        assert world.sw.get(f"/fhir/Task/{task['id']}").status_code == 404
    assert c.n <= 4, c.statements  # + the break-the-glass grants, read when refused


def test_a_missing_row_costs_what_a_hidden_one_does(world: World) -> None:
    """Existence hiding: a read of a missing id does the same statements as a refused
    one (the Consents are read for nobody in place of the grants)."""
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    with counting(world) as hidden:
        assert world.sw.get(f"/fhir/Task/{task['id']}").status_code == 404
    with counting(world) as missing:
        assert world.sw.get("/fhir/Task/no-such-task").status_code == 404
    assert missing.n == hidden.n, (missing.statements, hidden.statements)


def test_a_search_costs_the_same_whatever_the_caseload(world: World) -> None:
    """The social worker is granted by 2, then 12 dossiers: the statements of a search
    (and of a search with an _include) do not grow with the caseload."""
    counts = []
    granted = 0
    for caseload in (2, 12):
        for _ in range(caseload - granted):
            pid = world.consented(actor=world.sw_ref)
            world.sw.create(f.task(f"Patient/{pid}"))
        granted = caseload
        with counting(world) as c:
            r = world.sw.get("/fhir/Task", params={"_count": "5"})
            assert r.status_code == 200 and r.json()["total"] == caseload
            r = world.sw.get("/fhir/Task", params={"_count": "5",
                                                   "_include": "Task:patient"})
            assert r.status_code == 200
        assert c.transactions == 2
        counts.append(c.statements)
    assert len(counts[0]) == len(counts[1]), counts
    # PostgreSQL: one SET LOCAL per search, so it is planned for its reader
    # (test_search_plans.py)
    planned = 2 if world.app.state.runtime.engine.dialect.name == "postgresql" else 0
    assert len(counts[1]) <= 14 + planned, counts[1]


# principal, Consents, the Patient referenced, the active subscriptions (one statement on
# PostgreSQL: the unit reads the dossier and the subscriptions along with the
# practitioner, core/repository.py ReadAlong), the Task's and its Provenance's rows
# (resources, versions, index: one INSERT each on SQLite), the audit record. On
# PostgreSQL the rows and the audit record are one statement (the unit holds the rows to
# its end, Repository.hold_writes, and writes them with the record): 2.
CREATE = {"postgres": 2, "sqlite": 8}


def test_a_create_has_a_fixed_budget(world: World, backend: str) -> None:
    pid = world.consented()
    with counting(world) as c:
        world.gp.create(f.task(f"Patient/{pid}"))
    assert c.transactions == 1
    assert c.n <= CREATE[backend], c.statements


def _transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": resource,
         "request": {"method": "POST", "url": resource["resourceType"]}}
        for i, resource in enumerate(entries)]}


def test_a_bundles_statements_do_not_grow_with_its_entries(world: World) -> None:
    """A transaction Bundle of creates (issue 14): its rows go in table by table, one
    statement each (PostgreSQL re-plans its foreign-key checks first, one more), however
    many entries it holds; what grows is per person (their Consents are read once)."""
    first, second = world.consented(), world.consented()
    counts = []
    for n in (4, 60):
        entries = [f.task(f"Patient/{first if i % 2 else second}") for i in range(n)]
        with counting(world) as c:
            r = world.gp.post("/fhir", _transaction(entries))
            assert r.status_code == 200, r.text
        assert len(r.json()["entry"]) == n
        assert c.transactions == 1, c.statements
        counts.append(c.statements)
    small, large = counts
    # 8, one more consent read for the second person, DISCARD PLANS on PostgreSQL
    assert len(large) <= 10, [s[:50] for s in large]
    # the same statements (the 4-entry Bundle is under the re-planning threshold)
    assert [s[:60] for s in large if not s.startswith("DISCARD")] == [s[:60] for s in small]


def test_a_batch_of_creates_does_not_grow_with_its_entries(world: World) -> None:
    """A batch Bundle of plain creates (issue 14): no savepoint per entry, the reference
    each entry makes checked once, the rows inserted table by table at the end — the same
    statements as a transaction Bundle, however many entries."""
    first, second = world.consented(), world.consented()
    counts = []
    for n in (4, 60):
        bundle = _transaction([f.task(f"Patient/{first if i % 2 else second}")
                               for i in range(n)])
        bundle["type"] = "batch"
        with counting(world) as c:
            r = world.gp.post("/fhir", bundle)
            assert r.status_code == 200, r.text
        assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created"] * n
        assert c.transactions == 1, c.statements
        counts.append(c.statements)
    small, large = counts
    # the principal, each person's Consents and Patient (the reference), subscriptions,
    # 3 INSERTs, the audit: 10 (and DISCARD PLANS on PostgreSQL, from 100 index rows)
    assert len(large) <= 11, [s[:50] for s in large]
    assert [s[:60] for s in large if not s.startswith("DISCARD")] == [s[:60] for s in small]


@contextmanager
def on_the_wire(world: World) -> Iterator[list[str]]:
    """The messages each connection checked out meanwhile sent to PostgreSQL (libpq's
    trace), as "Query BEGIN" for a simple query and "Execute" for a statement run. Nothing
    listens to the engine's statements, so the hot statements take their direct path
    (db/prepared.py), as they do in service."""
    sent: list[str] = []
    files: list[Any] = []
    modes: list[bool] = []
    with ExitStack() as stack:

        def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            driver = record.driver_connection
            modes.append(driver.autocommit)  # as the pool hands it out
            trace = stack.enter_context(tempfile.TemporaryFile("w+"))
            files.append(trace)
            driver.pgconn.trace(trace.fileno())
            driver.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS
                                          | pq.Trace.REGRESS_MODE)

        def on_checkin(dbapi_conn: Any, record: Any) -> None:
            if record.driver_connection is not None:
                record.driver_connection.pgconn.untrace()

        with listening(world, "checkout", on_checkout), \
                listening(world, "checkin", on_checkin):
            yield sent
        for trace in files:
            trace.seek(0)
            for line in trace.read().splitlines():
                parts = line.split("\t")
                if parts[0] == "F" and parts[2] == "Query":
                    sent.append("Query " + parts[3].strip().strip('"').split()[0].upper())
                elif parts[0] == "F" and parts[2] == "Execute":
                    sent.append("Execute")
    assert modes and not any(modes), "a pooled connection was handed out in autocommit"


POSTGRES = [pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", POSTGRES)
def test_a_read_and_a_create_send_two_statements_and_no_begin_or_commit(
        world: World) -> None:
    """PostgreSQL: the principal with the row read along, then the audit record with its
    notice (a create's rows with its record): each commits on its own (db/tx.py UnitTx
    `deferred`), no BEGIN or COMMIT round trip. An update, several writes, opens its
    transaction after the principal. Every connection goes back to the pool out of
    autocommit (checked by on_the_wire)."""
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    world.gp.get(f"/fhir/Task/{task['id']}")
    with on_the_wire(world) as read:
        assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    assert read == ["Execute", "Execute"]
    with on_the_wire(world) as create:
        created = world.gp.create(f.task(f"Patient/{pid}"))
    assert create == ["Execute", "Execute"]
    with on_the_wire(world) as update:
        r = world.gp.put(f"/fhir/Task/{created['id']}", {**created, "status": "completed"})
        assert r.status_code == 200, r.text
    assert update[0] == "Execute" and update[1] == "Query BEGIN", update
    assert update[-1] == "Query COMMIT" and update.count("Query BEGIN") == 1, update
    assert world.gp.get(f"/fhir/Task/{created['id']}").json()["status"] == "completed"


@pytest.mark.parametrize("backend", POSTGRES)
def test_a_read_with_more_statements_opens_its_transaction_after_the_principal(
        world: World) -> None:
    """A citizen's read (no row read along) and a search: what the principal needed on
    its own, then one transaction for the rest, the audit record in it."""
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    citizen = world.citizen(pid)
    for get in (lambda: citizen.get(f"/fhir/Task/{task['id']}"),
                lambda: world.gp.get("/fhir/Task", params={"patient": pid})):
        assert get().status_code == 200
        with on_the_wire(world) as sent:
            assert get().status_code == 200
        begin = sent.index("Query BEGIN")
        assert sent[:begin] == ["Execute"] * begin and "Execute" in sent[begin:], sent
        assert sent[-1] == "Query COMMIT" and sent.count("Query BEGIN") == 1, sent
