"""Many rows into one table in one statement (a transaction Bundle's resources, versions and
search index rows; docs/benchmarks.md "Bulk ingestion").

- Every row gets every column any row names: a key one row lacks is its column's default
  (or NULL), never dropped for all rows because the first row lacked it (an executemany
  takes its columns from the first row: a message's `addressee` after a Task's row was lost).
- PostgreSQL, a table of plain columns (search_index): one `INSERT … SELECT … FROM
  unnest(:col1, :col2, …)` with one array per column (bound parameters, SQLAlchemy Core)
  instead of one pipelined INSERT per row: 5,000 index rows in ~110 ms instead of ~250 ms.
  A table with JSON documents keeps the executemany: arrays of documents cost more to send
  than the rows (1,000 resources rows: 134 ms and 104 ms of CPU against 64 ms and 30 ms).
- PostgreSQL checks a foreign key (search_index → resources) row by row with a plan this
  connection cached the first time, maybe when the table was nearly empty; such a plan walks
  every row of the type (0.5 s → 8.5 s for 5,000 index rows while `resources` grew from
  1,000 to 6,000 rows, until autovacuum's ANALYZE). Before many rows go into a table with a
  foreign key, the connection's cached plans are dropped (`DISCARD PLANS`) so the checks
  are planned for the table as it is now.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Table, bindparam, func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

# below this many rows, the ordinary executemany (and the cached plans) are kept
REPLAN_AT = 100


def _default(column: Any) -> Any:
    default = column.default
    if default is not None and getattr(default, "is_scalar", False):
        return default.arg
    return None


def complete(table: Table, rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns any row names (in the table's order) and every row with all of them."""
    named: set[str] = set()
    for row in rows:
        named.update(row)
    unknown = named - set(table.c.keys())
    if unknown:
        raise ValueError(f"no such column in {table.name}: {sorted(unknown)}")
    keys = [c.name for c in table.c if c.name in named]
    defaults = {k: _default(table.c[k]) for k in keys}
    return keys, [row if len(row) == len(keys) else {k: row.get(k, defaults[k]) for k in keys}
                  for row in rows]


def unnest_insert(table: Table, keys: list[str]) -> Any:
    """INSERT INTO table (keys) SELECT * FROM unnest(:keys…) AS u(keys…) (PostgreSQL)."""
    arrays = [bindparam(k, type_=ARRAY(table.c[k].type)) for k in keys]
    rows = func.unnest(*arrays).table_valued(*keys).render_derived()
    return insert(table).from_select(keys, select(*[rows.c[k] for k in keys]))


def _documents(table: Table) -> bool:
    return any(isinstance(c.type, JSON) for c in table.c)


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys, full = complete(table, rows)
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and table.foreign_keys and len(full) >= REPLAN_AT:
        session.execute(text("DISCARD PLANS"))
    if not postgres or len(full) == 1 or _documents(table):
        session.execute(insert(table), full)
        return
    session.execute(unnest_insert(table, keys), {k: [r[k] for r in full] for k in keys})
