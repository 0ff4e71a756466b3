"""Reads and writes take turns (settings.unit_threads): on SQLite a few worker threads
(Runtime.unit_limiter; with as many threads as requests they took the interpreter lock
from each other and from the event loop, and the slowest answers waited longest:
docs/benchmarks.md, "Turns"); on PostgreSQL as many units in flight on the event loop
(Runtime.unit_gate). Searches have their own turns."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from dossier.app import create_app
from dossier.core import repository
from tests import factories as f
from tests.integration.conftest import Meter, World, make_settings


@pytest.mark.parametrize("threads", [1, 3])
def test_reads_take_turns(data_dir: Path, database_url: str | None,
                          monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    app = create_app(make_settings(data_dir, database_url, unit_threads=threads))
    meter = Meter()
    # on PostgreSQL the read's row now comes with the principal (ReadAlong): the read
    # itself awaits nothing, so the wait is a statement of its own
    monkeypatch.setattr(repository.Repository, "read", meter.wrap(
        repository.Repository.read, in_database=app.state.runtime.on_loop))
    try:
        with TestClient(app) as client:
            world = World(app, client)
            pid = world.consented()
            task = world.gp.create(f.task(f"Patient/{pid}"))
            with ThreadPoolExecutor(6) as pool:
                reads = [pool.submit(world.gp.get, f"/fhir/Task/{task['id']}")
                         for _ in range(6)]
                assert all(r.result().status_code == 200 for r in reads)
            # six asked at once: never more ran together (and more than one could)
            assert meter.most <= threads and (meter.most > 1 or threads == 1)
    finally:
        app.state.runtime.engine.dispose()


def test_a_search_does_not_take_a_reads_turn(data_dir: Path, database_url: str | None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The one unit turn busy with a slow read: a search is still answered. On SQLite
    the read holds the one unit thread; on PostgreSQL (units on the event loop) it waits
    in the database, for an advisory lock this test holds."""
    app = create_app(make_settings(data_dir, database_url, unit_threads=1))
    release = threading.Event()
    real = repository.Repository.read
    on_loop = app.state.runtime.on_loop
    holder = app.state.runtime.engine.connect() if on_loop else None
    if holder is not None:
        holder.execute(text("SELECT pg_advisory_lock(4242)"))

    def slow_read(repo: Any, *a: Any, **kw: Any) -> Any:
        if on_loop:
            repo.session.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        else:
            release.wait(30)
        return real(repo, *a, **kw)

    def let_go() -> None:
        release.set()
        if holder is not None and not holder.closed:
            holder.execute(text("SELECT pg_advisory_unlock_all()"))
            holder.close()

    try:
        with TestClient(app) as client:
            world = World(app, client)
            pid = world.consented()
            task = world.gp.create(f.task(f"Patient/{pid}"))
            monkeypatch.setattr(repository.Repository, "read", slow_read)
            with ThreadPoolExecutor(1) as pool:
                read = pool.submit(world.gp.get, f"/fhir/Task/{task['id']}")
                time.sleep(0.3)
                found = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}"})
                assert found.json()["total"] == 1
                assert not read.done()
                let_go()
                assert read.result(timeout=30).status_code == 200
    finally:
        let_go()
        app.state.runtime.engine.dispose()


def test_on_postgresql_a_request_unit_runs_on_the_event_loop(world: World) -> None:
    """PostgreSQL: a request's statements go through the event loop's engine, on the loop's
    thread (no worker thread waits for the database); SQLite: through the threads' one."""
    runtime = world.app.state.runtime
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    seen: list[tuple[int, str]] = []
    listeners = []
    for n, engine in enumerate(runtime.engines):
        def on_execute(*_: Any, n: int = n) -> None:
            seen.append((n, threading.current_thread().name))
        event.listen(engine, "before_cursor_execute", on_execute)
        listeners.append((engine, on_execute))
    try:
        assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    finally:
        for engine, fn in listeners:
            event.remove(engine, "before_cursor_execute", fn)
    assert seen
    if runtime.on_loop:
        assert {n for n, _ in seen} == {1}  # runtime.engines[1]: the loop's
        assert not any("worker" in name.lower() for _, name in seen), seen
    else:
        assert {n for n, _ in seen} == {0}
