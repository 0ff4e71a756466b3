"""Behind pgbouncer in transaction mode before 1.21 (Debian 12 ships 1.18) a statement
prepared on one server connection is missing on the next: `DOSSIER_DB_PREPARED_STATEMENTS
=false` keeps psycopg from preparing any (docs/operations.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text

from dossier.app import create_app
from dossier.db.models import resources
from tests.integration.conftest import make_settings


@pytest.mark.parametrize("prepared", [True, False])
def test_prepared_statements_can_be_turned_off(data_dir: Path, database_url: str | None,
                                               prepared: bool) -> None:
    if database_url is None:
        pytest.skip("PostgreSQL only: SQLite has no server to prepare on")
    app = create_app(make_settings(data_dir, database_url, db_prepared_statements=prepared))
    runtime = app.state.runtime
    query = select(resources.c.res_id).where(resources.c.res_type == "Task")
    count = text("SELECT count(*) FROM pg_prepared_statements")
    try:
        with runtime.engine.connect() as conn:  # the threads' engine
            for _ in range(8):  # psycopg prepares after five runs
                conn.execute(query).all()
            held = conn.execute(count).scalar()
        assert (held or 0) > 0 if prepared else held == 0

        async def on_loop() -> int:  # the engine of the /fhir units (Runtime.on_loop)
            async with runtime.loop_engine.connect() as conn:
                for _ in range(8):
                    (await conn.execute(query)).all()
                return int((await conn.execute(count)).scalar() or 0)

        held = asyncio.run(on_loop())
        assert held > 0 if prepared else held == 0
    finally:
        runtime.engine.dispose()
        asyncio.run(runtime.loop_engine.dispose())
