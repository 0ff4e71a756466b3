"""The dialect of the event loop's engine (PostgreSQL, psycopg's async connection): psycopg's
own, except that a commit or a rollback is not sent through SQLAlchemy's greenlet bridge
when psycopg reports no transaction open on the connection.

psycopg then does nothing itself (its commit and rollback return at once on an idle
connection), but reaching it cost a greenlet switch, an asyncio lock and a wait per call.
Most units end so: a read's statements and a create's each commit on their own
(db/tx.py, "deferred"), and the pool's rollback when the connection is returned finds
nothing to roll back either. Skipping both, with the unit reading the same status from
its own connection (db/tx.py), took 4.8 % of a read's instructions (docs/benchmarks.md,
"Session 16"). A connection in any other state (a transaction open,
failed, or the connection broken) gets the real call, and its errors, as before.

Registered under the name `postgresql+dossier_loop`, which only `make_loop_engine` uses.
"""

from __future__ import annotations

from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg

DRIVER_NAME = "dossier_loop"


class LoopDialect(PGDialectAsync_psycopg):
    supports_statement_cache = True

    @classmethod
    def get_async_dialect_cls(cls, url: Any) -> type[LoopDialect]:
        return cls  # psycopg's sync dialect would name its own async class here

    def do_commit(self, dbapi_connection: Any) -> None:
        if not idle(dbapi_connection):
            super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]

    def do_rollback(self, dbapi_connection: Any) -> None:
        if not idle(dbapi_connection):
            super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]


def idle(dbapi_connection: Any) -> bool:
    """Whether psycopg reports the connection open with no transaction (False when it
    cannot tell: the real call is then made)."""
    return driver_idle(getattr(dbapi_connection, "driver_connection", None))


def driver_idle(driver: Any) -> bool:
    """The same, of psycopg's connection itself (None: False)."""
    return driver is not None and driver.pgconn.transaction_status == TransactionStatus.IDLE


registry.register(f"postgresql.{DRIVER_NAME}", __name__, "LoopDialect")
