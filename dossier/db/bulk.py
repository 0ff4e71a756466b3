"""Many rows into one table in one statement: a transaction Bundle's resources, versions and
search index rows (docs/benchmarks.md, "Bulk ingestion").

- Every row gets every column any row names: a key one row lacks is its column's default
  (or NULL). An executemany takes its columns from the first row, so a message's
  `addressee` was dropped when a Task's row came first in the same Bundle.
- PostgreSQL: one `INSERT … SELECT … FROM json_to_recordset(:rows) AS r(col type, …)`, the
  rows in one bound JSON parameter (serialised by orjson, parsed by PostgreSQL) instead of
  one pipelined INSERT per row whose parameters psycopg converts one by one in Python:
  1,000 resources rows cost 3 ms of CPU instead of 32, 5,000 index rows 2 ms instead of
  ~60 (psycopg's text-array dumper for an `unnest` of arrays). Column types, lengths and
  NOT NULL are checked by PostgreSQL as for any INSERT.
- Several tables at once (`insert_tables`, a create's resources, versions and index rows):
  on PostgreSQL one statement, each table's INSERT a data-modifying WITH of the last;
  a round trip cost ~5 % of a create's instructions (docs/benchmarks.md, "Session 9").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, column, func, insert, select
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.types import TypeDecorator

from dossier.db.prepared import Prepared
from dossier.db.tx import Tx


def _default(col: Any) -> Any:
    default = col.default
    if default is not None and getattr(default, "is_scalar", False):
        return default.arg
    return None


def complete(table: Table, rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns any row names or that have a default of their own (in the table's
    order), and every row with all of them. Defaults are written out: SQLAlchemy adds
    them to an INSERT … SELECT as parameters whose names clash between the tables of one
    statement (`insert_tables`)."""
    own_defaults, order = _columns(table)
    named = set(own_defaults)
    for row in rows:
        named.update(row)
    unknown = named - order.keys()
    if unknown:
        raise ValueError(f"no such column in {table.name}: {sorted(unknown)}")
    keys = sorted(named, key=order.__getitem__)  # the rows' own str keys (JSON keys)
    if all(len(row) == len(keys) for row in rows):
        return keys, rows
    defaults = {k: own_defaults.get(k) for k in keys}
    return keys, [row if len(row) == len(keys) else {k: row.get(k, defaults[k]) for k in keys}
                  for row in rows]


@functools.cache  # the table's definition: read once, not at every write
def _columns(table: Table) -> tuple[dict[str, Any], dict[str, int]]:
    """(the columns with a default of their own → that default, each column's position)."""
    defaults = {str(c.name): value for c in table.c  # str: JSON keys
                if (value := _default(c)) is not None}
    return defaults, {str(c.name): i for i, c in enumerate(table.c)}


@functools.cache  # a few shapes per table; building the expression costs more than running it
def recordset_insert(table: Table, keys: tuple[str, ...], name: str = "rows") -> Any:
    """INSERT INTO table (keys) SELECT keys FROM json_to_recordset(:name) AS r(key type, …)."""
    rows = func.json_to_recordset(bindparam(name, type_=JSON)).table_valued(
        *[column(k, table.c[k].type) for k in keys]).render_derived(with_types=True)
    return insert(table).from_select(keys, select(*[rows.c[k] for k in keys]))


Shapes = tuple[tuple[Table, tuple[str, ...]], ...]  # each table and the columns written


@functools.cache
def tables_insert(shapes: Shapes) -> Prepared:
    """PostgreSQL: every table's recordset INSERT in one statement; the first ones as
    data-modifying WITHs of the last (PostgreSQL runs them all, whatever is selected).
    Run on the unit's cursor (dossier/db/prepared.py)."""
    *first, (last, keys) = shapes
    return Prepared(recordset_insert(last, keys, f"rows_{len(first)}").add_cte(
        *tables_ctes(tuple(first))))


def tables_ctes(shapes: Shapes) -> list[Any]:
    """Each table's recordset INSERT as a data-modifying WITH, its rows in `rows_{n}`."""
    return [recordset_insert(table, cols, f"rows_{n}").cte(f"into_{table.name}")
            for n, (table, cols) in enumerate(shapes)]


def tables_params(dialect: Any, batches: Sequence[tuple[Table, list[dict[str, Any]]]],
                  params: dict[str, Any]) -> Shapes:
    """The shapes of `batches` (`tables_ctes`), their rows added to `params` as
    `rows_{n}`."""
    shapes = []
    for n, (table, rows) in enumerate(batches):
        keys, full = complete(table, rows)
        shapes.append((table, tuple(keys)))
        params[f"rows_{n}"] = _bound(table, keys, full, dialect)
    return tuple(shapes)


def _bound(table: Table, keys: list[str], rows: list[dict[str, Any]],
           dialect: Any) -> list[dict[str, Any]]:
    """Rows with each value as its column type binds it (UTCDateTime: aware, in UTC)."""
    decorated: list[tuple[str, TypeDecorator[Any]]] = [
        (k, t) for k in keys if isinstance(t := table.c[k].type, TypeDecorator)]
    if not decorated:
        return rows
    return [{**row, **{k: t.process_bind_param(row[k], dialect) for k, t in decorated}}
            for row in rows]


def insert_rows(session: Tx, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys, full = complete(table, rows)
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql" or len(full) == 1:
        session.execute(insert(table), full)
        return
    session.connection().execute(recordset_insert(table, tuple(keys)),
                                 {"rows": _bound(table, keys, full, dialect)})


def insert_tables(session: Tx, batches: list[tuple[Table, list[dict[str, Any]]]]) -> None:
    """Each table's rows, in the order given; on PostgreSQL in ONE statement."""
    batches = [(table, rows) for table, rows in batches if rows]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql" or len(batches) < 2:
        for table, rows in batches:
            insert_rows(session, table, rows)
        return
    params: dict[str, Any] = {}
    tables_insert(tables_params(dialect, batches, params)).run(session.connection(), params)
