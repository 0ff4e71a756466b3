"""The transaction the stores work in, as a structural type: what they call on it.

Both an ORM `Session` (the service's background work) and the service's `UnitTx` (a
request unit's Core connection, dossier/db/tx.py) fit it. The stores run Core statements
only and map no objects, so they need no more than this. It lives here, in the lowest
package that stores data, so that audit/ and dossier/ share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVarTuple, overload

from sqlalchemy import ARRAY, ColumnElement, Connection, Engine, Executable, Result, any_, bindparam

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import _CoreAnyExecuteParams
    from sqlalchemy.sql.selectable import TypedReturnsRows

_Ts = TypeVarTuple("_Ts")


class Tx(Protocol):
    @overload
    def execute(self, statement: TypedReturnsRows[*_Ts],
                params: _CoreAnyExecuteParams | None = None, /) -> Result[*_Ts]: ...

    @overload
    def execute(self, statement: Executable,
                params: _CoreAnyExecuteParams | None = None, /
                ) -> Result[*tuple[Any, ...]]: ...

    def connection(self) -> Connection:
        """The Core connection the transaction runs on."""

    def get_bind(self) -> Engine | Connection:
        """What the transaction is bound to (its dialect tells the database)."""

    def begin_nested(self) -> Any:
        """A savepoint, as a context manager."""


def among(tx: Tx, column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL, one array parameter (`column = ANY(:values)`):
    the statement's text is the same whatever the number of values, so SQLAlchemy compiles
    it once and psycopg parses it once, where an expanding IN is rendered anew at each
    run, one parameter per value (a quarter of the background workers' CPU with batches of
    500, measured: docs/benchmarks.md, "Session 12")."""
    values = list(values)
    if tx.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
