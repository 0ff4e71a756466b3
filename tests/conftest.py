"""Shared fixtures: a real database per test (SQLite file, or a PostgreSQL database cloned
from a migrated template), and an app built on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# The machine may be shared (CI, benchmarks): slow input generation is not a failure, and
# examples are judged by their assertions, never by their wall time.
settings.register_profile("dossier", suppress_health_check=[HealthCheck.too_slow],
                          deadline=None)
settings.load_profile("dossier")

PG_ADMIN_URL = os.environ.get("DOSSIER_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means: not reachable
        return False


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A migrated template database; tests clone it. In CI PostgreSQL must be there."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 in CI")
        yield None
        return
    from dossier.db.engine import make_engine, upgrade

    name = f"dossier_tmpl_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    partitions = os.environ.get("DOSSIER_TEST_PG_PARTITIONS")
    if partitions:  # run the PostgreSQL tests on the partitioned schema (`db partition`)
        from dossier.db.partition import partition

        partition(engine, int(partitions))
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_template: str | None) -> Iterator[str]:
    if pg_template is None:
        pytest.skip("PostgreSQL not reachable (only allowed outside CI)")
    name = f"dossier_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return None
