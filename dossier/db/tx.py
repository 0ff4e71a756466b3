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

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import _CoreAnyExecuteParams

__all__ = ["Tx", "UnitTx"]


class UnitTx(Tx):
    """`with UnitTx(engine) as tx, tx.begin():` checks a connection out of the pool,
    begins, and commits (or rolls back on an exception) and returns it at the end."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> UnitTx:
        self._conn = self._engine.connect()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._conn is not None:
            self._conn.close()  # rolls back what was not committed
            self._conn = None

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
