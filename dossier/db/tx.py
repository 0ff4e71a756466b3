"""A request unit's transaction: one Core connection, begun and ended by the unit
(core/runtime.py). It offers the stores what an ORM Session offered them (`audit.tx.Tx`)
without the ORM's bookkeeping (identity map, session-transaction states), which the
service never uses (it maps no objects) and which cost 4.5 % of a read's instructions
(docs/benchmarks.md)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Executable, Result, RootTransaction

from audit.tx import Tx
from dossier.db.dialect import driver_idle

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import _CoreAnyExecuteParams

__all__ = ["Tx", "UnitTx"]


class UnitTx(Tx):
    """`with UnitTx(engine) as tx, tx.begin():` checks a connection out of the pool,
    begins, and commits (or rolls back on an exception) and returns it at the end.

    `deferred` (a unit on PostgreSQL): the connection is put in autocommit, so the
    statements run each on its own until `begin_on_next()`, after which the next one
    opens the transaction. At the end, `commit_alone()` lets a last statement commit on
    its own when no transaction was opened. At PostgreSQL's READ COMMITTED each
    statement reads its own snapshot inside a transaction too, so a unit whose reads are
    one statement and whose writes are one statement sees and writes exactly what it
    would in BEGIN … COMMIT, two round trips fewer (docs/architecture.md, "A unit
    without BEGIN"). The connection goes back to the pool out of autocommit, or is
    discarded. The driver's flag is set here: SQLAlchemy's `isolation_level` option put a
    listener on the engine, and the hot statements left their direct path
    (db/prepared.py): +41 % instructions per read, measured."""

    def __init__(self, engine: Engine, *, deferred: bool = False) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._driver: Any = None  # psycopg's connection under it (deferred units)
        self.deferred = deferred
        self._alone = False  # the driver connection is in autocommit

    def __enter__(self) -> UnitTx:
        self._conn = self._engine.connect()
        if self.deferred:
            self._driver = self._conn.connection.driver_connection
            self._autocommit(True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._conn is None:
            return
        try:
            if self._alone:
                self._autocommit(False)
        except Exception:  # noqa: BLE001 - never back to the pool in autocommit
            self._conn.invalidate()
        finally:
            self._conn.close()  # rolls back what was not committed
            self._conn = self._driver = None

    def begin(self) -> RootTransaction:
        return self.connection().begin()

    def execute(self, statement: Executable, params: _CoreAnyExecuteParams | None = None, /
                ) -> Result[*tuple[Any, ...]]:
        return self.connection().execute(statement, params)

    def connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the unit's transaction is not open")
        return self._conn

    def get_bind(self) -> Connection:
        return self.connection()

    def begin_nested(self) -> Any:
        return self.connection().begin_nested()

    def begin_on_next(self) -> None:
        """Deferred unit: the next statement opens the transaction (autocommit off)."""
        if self._alone:
            self._autocommit(False)

    def commit_alone(self) -> None:
        """Deferred unit with no transaction open: the next statement commits on its own
        (autocommit on again). Call it only before the unit's last statement."""
        if self.deferred and not self._alone and self._idle():
            self._autocommit(True)

    def _autocommit(self, on: bool) -> None:
        """psycopg's `set_autocommit` refuses inside a transaction, then sets this flag.
        On the async connection it is a coroutine, and awaiting it from the unit (a
        greenlet switch and an asyncio lock each time) cost as much as the round trips
        it saves: the same check and the same flag here (psycopg 3.3, pinned;
        tests/integration/test_statement_budget.py watches what is sent)."""
        if not self._idle():
            raise RuntimeError("autocommit cannot change inside a transaction")
        self._driver._autocommit = on
        self._alone = on

    def _idle(self) -> bool:
        """psycopg's connection is open with no transaction (read from libpq: the same
        connection for the whole unit, taken once at its start)."""
        return driver_idle(self._driver)
