"""Reads while a writer holds the write lock (SPEC §15: no request fails because another
is slow). On SQLite each read appends its audit record; when the lock is taken the reads
queue their records for one group commit, and none answers before its record is in."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from dossier.db.models import audit_records
from tests import factories as f
from tests.integration.conftest import World


def _reads(world: World) -> int:
    with world.app.state.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_records)
                                .where(audit_records.c.action == "read")).scalar_one())


def test_reads_wait_their_turn_and_each_is_audited_once(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    before = _reads(world)
    engine = world.app.state.runtime.engine
    holding = threading.Event()

    def slow_writer() -> None:  # a long write: holds the lock for 0.5 s
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_pending WHERE 1 = 0"))
            holding.set()
            time.sleep(0.5)

    statuses: list[int] = []
    lock = threading.Lock()

    def read() -> None:
        r = world.gp.get(f"/fhir/Task/{task['id']}")
        with lock:
            statuses.append(r.status_code)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert holding.wait(10)
    readers = [threading.Thread(target=read) for _ in range(12)]
    for t in readers:
        t.start()
    for t in [*readers, writer]:
        t.join(timeout=60)
    assert statuses == [200] * 12
    assert _reads(world) - before == 12  # each read recorded once, none lost
    if engine.dialect.name == "sqlite":
        assert world.app.state.runtime.read_audits is not None  # they queued, as meant


def test_a_read_never_writes_its_record_while_another_holds_the_turn(world: World,
                                                                    backend: str) -> None:
    """SQLite: a read unit's connection comes from an option engine (`dossier_read`); it
    must still find the process's write turn (it did not: it wrote its record while a
    writer held the turn, then waited in SQLite's busy handler behind that writer)."""
    if backend != "sqlite":
        return
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    before = _reads(world)
    turn = world.app.state.runtime.engine.info_writer
    statuses: list[int] = []
    reader = threading.Thread(
        target=lambda: statuses.append(world.gp.get(f"/fhir/Task/{task['id']}").status_code))
    assert turn.acquire(timeout=10)  # a writer's turn, as `take_writer` takes it
    try:
        reader.start()
        reader.join(0.5)
        assert reader.is_alive()  # its record waits for the turn (nothing read here: a
        # count from this thread would queue for the turn it holds)
    finally:
        turn.release()
    reader.join(30)
    assert statuses == [200]
    assert _reads(world) == before + 1
    assert world.app.state.runtime.read_audits is not None  # in the group commit
