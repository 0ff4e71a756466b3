"""Searches take turns (Runtime.search_gate, settings.search_concurrency): on the embedded
SQLite default one process serves everyone, and a few costly searches running at once
took the processor from every cheap read (docs/benchmarks.md, mixed load). A search waits
for its turn without holding a worker thread; reads never wait for it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dossier.app import create_app
from dossier.core import repository
from tests import factories as f
from tests.integration.conftest import Meter, World, make_settings


@pytest.mark.parametrize("limit", [1, 2, 0])
def test_searches_take_turns(data_dir: Path, database_url: str | None,
                             monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    app = create_app(make_settings(data_dir, database_url, search_concurrency=limit))
    meter = Meter()
    monkeypatch.setattr(repository.Repository, "run_search",
                        meter.wrap(repository.Repository.run_search))
    try:
        with TestClient(app) as client:
            world = World(app, client)
            pid = world.consented()
            task = world.gp.create(f.task(f"Patient/{pid}"))
            with ThreadPoolExecutor(4) as pool:
                searches = [pool.submit(world.gp.get, "/fhir/Task",
                                        params={"patient": f"Patient/{pid}"})
                            for _ in range(4)]
                assert all(s.result().json()["total"] == 1 for s in searches)
            # four searches at once: never more than the limit (0: no limit) run together
            assert meter.most <= limit if limit else meter.most > 1
            assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    finally:
        app.state.runtime.engine.dispose()


def test_the_default_limits_sqlite_only(data_dir: Path, database_url: str | None) -> None:
    app = create_app(make_settings(data_dir, database_url))
    try:
        with TestClient(app) as client:
            client.get("/fhir/metadata")
            runtime = app.state.runtime

            async def gate() -> Any:
                return runtime.search_gate()

            found = client.portal.call(gate)  # type: ignore[union-attr]
            if database_url is None:
                assert found is not None and found._value == 1
            else:
                assert found is None
    finally:
        app.state.runtime.engine.dispose()


def test_a_read_never_waits_for_a_searchs_turn(data_dir: Path,
                                               database_url: str | None) -> None:
    """Every turn taken: a search waits, a read of the same dossier is answered."""
    app = create_app(make_settings(data_dir, database_url, search_concurrency=1))
    try:
        with TestClient(app) as client:
            world = World(app, client)
            pid = world.consented()
            task = world.gp.create(f.task(f"Patient/{pid}"))
            runtime = app.state.runtime
            portal = client.portal
            assert portal is not None

            async def take() -> Any:
                gate = runtime.search_gate()
                await gate.acquire()
                return gate

            gate = portal.call(take)
            with ThreadPoolExecutor(1) as pool:
                search = pool.submit(world.gp.get, "/fhir/Task",
                                     params={"patient": f"Patient/{pid}"})
                time.sleep(0.3)
                assert not search.done()  # waiting for its turn
                assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
                assert not search.done()
                portal.call(_release, gate)
                assert search.result(timeout=30).json()["total"] == 1
    finally:
        app.state.runtime.engine.dispose()


async def _release(gate: Any) -> None:
    gate.release()
