"""The transaction the stores work in, as a structural type: what they call on it.

Both an ORM `Session` (the service's background work) and the service's `UnitTx` (a
request unit's Core connection, dossier/db/tx.py) fit it. The stores run Core statements
only and map no objects, so they need no more than this. It lives here, in the lowest
package that stores data, so that audit/ and dossier/ share it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVarTuple, overload

import psycopg
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Result,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import _CoreAnyExecuteParams
    from sqlalchemy.sql.selectable import TypedReturnsRows

_Ts = TypeVarTuple("_Ts")


class _Packed(list[Any]):
    """A list psycopg sends in PostgreSQL's binary array format. Its default for a list
    is the text format, which quotes and escapes each element in Python: 3 µs per hash
    and 2 µs per id, where the binary format takes 0.2–0.3 µs (docs/benchmarks.md,
    "Session 15"). The statement casts the array to its column's type either way."""


psycopg.adapters.register_dumper(_Packed, ListBinaryDumper)


class _Array(TypeDecorator[Any]):
    """ARRAY(item type) whose value goes to psycopg as a _Packed list, after the item
    type's own processing (if any)."""

    impl = ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        inner = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)

        def process(value: Any) -> Any:
            if value is None:
                return None
            return _Packed(inner(value) if inner is not None else value)
        return process


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
        return column == any_(bindparam(None, values, type_=_Array(column.type)))
    return column.in_(values)


def insert_many(tx: Tx, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows that all name the same columns, into `table`. On PostgreSQL one statement,
    `INSERT … SELECT * FROM unnest(:column_1, :column_2, …)`, one array parameter per
    column, where an executemany sends one INSERT per row (the sequencer's leaves: one
    statement per request served, docs/benchmarks.md "Session 14"). Elsewhere, and for
    one row, a plain INSERT. Not dossier/db/bulk.py's JSON recordset: audit/ does not
    import the service, and JSON carries no bytes (the hashes)."""
    if not rows:
        return
    if len(rows) == 1 or tx.get_bind().dialect.name != "postgresql":
        tx.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    tx.execute(_unnest_insert(table, columns), {c: [row[c] for row in rows] for c in columns})


@functools.cache  # a statement per (table, columns): built once, compiled once
def _unnest_insert(table: Table, columns: tuple[str, ...]) -> Executable:
    arrays = func.unnest(*[bindparam(c, type_=_Array(table.c[c].type)) for c in columns]
                         ).table_valued(*columns).render_derived()
    return insert(table).from_select(list(columns), select(*[arrays.c[c] for c in columns]))
