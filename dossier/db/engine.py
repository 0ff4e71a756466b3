"""Engine creation and migrations (Alembic, applied on start and by `dossier db upgrade`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, column, create_engine, event, make_url, select, table
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class _SQLiteHints(SQLiteCompiler):
    """Renders a statement's SQLite table hint (`Select.with_hint(t, "INDEXED BY ix",
    "sqlite")`), which SQLAlchemy's SQLite compiler drops: search tells SQLite where to
    start (dossier/search/sql.py `planned`)."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def make_engine(url: str, *, prepared: bool = True, **kwargs: Any) -> Engine:
    """The engine; JSON columns (de)serialised with orjson (the read path's hot spot).
    `prepared` False: PostgreSQL statements are never prepared on the server (a pooler in
    transaction mode that cannot carry them, docs/operations.md)."""
    kwargs.setdefault("json_serializer", _dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        engine.dialect.statement_compiler = _SQLiteHints

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # autocommit off in the driver; SQLAlchemy emits BEGIN itself (see below)
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A write unit takes the write lock at BEGIN (IMMEDIATE), so concurrent
            # writers queue instead of failing half-way with SQLITE_BUSY on upgrade. A
            # read unit (execution option dossier_read) begins DEFERRED: in WAL mode it
            # reads its snapshot without waiting for any writer.
            if conn.get_execution_options().get("dossier_read"):
                conn.exec_driver_sql("BEGIN")
                return
            take_writer(conn)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                release_writer(conn)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn: Any) -> None:
            release_writer(conn)

        @event.listens_for(engine, "checkin")
        def _sqlite_checkin(dbapi_conn: Any, record: Any) -> None:
            if record.info.pop(_HOLDS_WRITER, False):  # never left held by a lost connection
                engine.info_writer.release()  # type: ignore[attr-defined]

        engine.info_writer = threading.Lock()  # type: ignore[attr-defined]
        # kept on the pool too: the engine of a read unit is an option engine of this one
        # (`execution_options`), which shares the pool but not the attribute
        engine.pool.info_writer = engine.info_writer  # type: ignore[attr-defined]
        return engine
    return create_engine(url, **_postgres_options(kwargs, prepared))


def _postgres_options(kwargs: dict[str, Any], prepared: bool) -> dict[str, Any]:
    """The pool and driver options of both PostgreSQL engines (threads', event loop's)."""
    # No pre-ping round trip per checkout: a connection found dead is invalidated with the
    # pool's older ones, and the unit that met it first retries once (core/runtime.py).
    # Connections kept open for as many units as can run at once in one process: an
    # overflow connection is opened and closed per unit, a new PostgreSQL session (fork +
    # authentication) each time under load.
    kwargs.setdefault("pool_size", 24)
    kwargs.setdefault("max_overflow", 8)
    if not prepared:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "prepare_threshold": None}
    return kwargs


# SQLite has one write lock per database; a writer that finds it taken sleeps in
# SQLite's busy handler (1, 2, 5 … 100 ms between tries) and newcomers can overtake it, so
# under load some waited seconds (measured: read p99 2.5 s with 16 clients). The server is
# one process on SQLite, so its writers first queue on this in-process lock, which hands
# over at once; other processes (the CLI) still meet SQLite's busy timeout.
_HOLDS_WRITER = "dossier_holds_writer"
WRITER_WAIT_SECONDS = 10.0  # as PRAGMA busy_timeout


def take_writer(conn: Any, *, wait: bool = True) -> bool:
    """Queue for the process's SQLite write turn; True once held (always True on other
    databases). `wait=False`: only if free now."""
    lock = _writer(conn)
    if lock is None or conn.info.get(_HOLDS_WRITER):
        return True
    if lock.acquire(timeout=WRITER_WAIT_SECONDS if wait else 0):
        conn.info[_HOLDS_WRITER] = True
        return True
    return wait  # timed out waiting: SQLite's own busy timeout decides; not free: False


def _writer(conn: Any) -> Any:
    """The process's SQLite write turn for this connection's database, or None."""
    return getattr(conn.engine.pool, "info_writer", None)


def release_writer(conn: Any) -> None:
    lock = _writer(conn)
    if lock is not None and conn.info.pop(_HOLDS_WRITER, False):
        lock.release()


# PostgreSQL: a table of ours is analysed again once this many of its rows changed since
# its last ANALYZE (a base, plus a share of its rows)
STALE_ROWS = 500
STALE_SHARE = 0.02
_PG_TABLES = table("pg_stat_user_tables", column("relname"), column("n_live_tup"),
                   column("n_mod_since_analyze"))


def refresh_statistics(engine: Engine) -> None:
    """Refresh the query planner's statistics where they are stale (the maintenance worker:
    at start, then every 10 minutes).

    SQLite: ANALYZE, sampled (at most 1,000 rows per index, so its cost does not grow with
    the database). Without it SQLite guessed that a consented search should scan every
    resource of the type rather than start from the reader's grants (826 ms instead of
    8 ms on 10,000 dossiers).

    PostgreSQL: ANALYZE of each of our tables with more than STALE_ROWS + STALE_SHARE of
    its rows changed since it was last analysed. Autovacuum waits for 10 %: a répertoire
    import of 3,000 services is less than that of a region's search index, and until
    then the planner believed there was no service at all — it joined every service to
    every service's index rows, and `HealthcareService?serves=` took 198 s, the portal's
    service search 4.7 s, a practitioner's `Task?status=` 190 ms instead of 0.1 ms."""
    if engine.dialect.name == "postgresql":
        _refresh_postgres(engine)
        return
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def _refresh_postgres(engine: Engine) -> None:
    from dossier.db.models import metadata

    T = _PG_TABLES.c
    stale = select(T.relname).where(
        T.relname.in_(sorted(metadata.tables)),
        T.n_mod_since_analyze > STALE_ROWS + STALE_SHARE * T.n_live_tup)
    with engine.connect() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for name in conn.execute(stale).scalars().all():
            conn.exec_driver_sql(f"ANALYZE {quote(name)}")  # a name of ours, quoted
        conn.commit()


def alembic_config(engine_or_conn: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = engine_or_conn
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def check(engine: Engine) -> None:
    """Raise if the models and the migrated schema differ (CI runs this)."""
    with engine.begin() as conn:
        command.check(alembic_config(conn))


def make_loop_engine(url: str, *, prepared: bool = True) -> AsyncEngine:
    """PostgreSQL: the engine of the request units run on the event loop (psycopg's async
    connection, awaited by SQLAlchemy's greenlet bridge; core/runtime.py `on_loop`), with
    the dialect of db/dialect.py."""
    from dossier.db.dialect import DRIVER_NAME  # registers the dialect

    options = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
    loop_url = make_url(url).set(drivername=f"postgresql+{DRIVER_NAME}")
    return create_async_engine(loop_url, **_postgres_options(options, prepared))
