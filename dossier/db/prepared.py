"""Hot statements run straight on the unit's DBAPI cursor (PostgreSQL).

A statement of the request path that is built once (a read along its principal, a
read's audit record and notice, a create's rows) is compiled here once per dialect:
its SQL text, its own bound values, each parameter's and each column's type processing.
Each run then binds the request's values and executes on the cursor of the
connection the unit already holds, in its transaction.

SQLAlchemy's own execution of such a statement (cache key, execution context, the
cursor's description built anew by psycopg, result metadata) cost about 130 µs of CPU
on top of psycopg's 110 µs: a sixth of a consented read (docs/benchmarks.md, "Session
11"). The SQL is SQLAlchemy's compiled text with bound parameters, never built from
strings; a failure goes through SQLAlchemy's own error handling, so a lost connection is
invalidated and reported as one (core/runtime.py retries or answers 503).

The plain path is taken whenever this one could differ from it: another database, an
event listener on the engine (the statement-budget tests count statements there), no
transaction begun. Tests compare both paths' rows and effects
(tests/integration/test_direct_statements.py).
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Executable, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any]


class NotPreparable(ValueError):
    """The statement needs SQLAlchemy at each run (expanding IN lists, positional
    parameters, columns that cannot be named)."""


class _Form:
    """A statement compiled for one dialect."""

    __slots__ = ("binders", "fixed", "readers", "required", "row", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
        if compiled.positional:
            raise NotPreparable("positional parameters")
        self.sql = compiled.string
        self.binders: dict[str, Processor] = {}
        self.fixed: dict[str, Any] = {}
        required = set()
        for name, bind in compiled.binds.items():
            if bind.expanding or bind.literal_execute:
                raise NotPreparable(f"parameter {name} is rendered at each run")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.binders[name] = process
            if bind.required:
                required.add(name)
            else:  # a value of the statement itself (`res_type == "Practitioner"`)
                value = bind.effective_value
                self.fixed[name] = process(value) if process is not None else value
        self.required: frozenset[str] = frozenset(required)
        self.row: Callable[..., Any] | None = None
        self.readers: tuple[tuple[int, Processor], ...] = ()
        if isinstance(statement, Select):
            columns = list(statement.selected_columns)
            names = [str(c.key) for c in columns]
            try:
                self.row = collections.namedtuple("Row", names)._make  # type: ignore[attr-defined]
            except ValueError:
                raise NotPreparable("a column cannot be named") from None
            readers = [(i, c.type.dialect_impl(dialect).result_processor(dialect, None))
                       for i, c in enumerate(columns)]
            self.readers = tuple((i, p) for i, p in readers if p is not None)

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        missing = self.required - params.keys()
        if missing:
            raise ValueError(f"a value is required for {sorted(missing)}")
        bound = dict(self.fixed)
        binders = self.binders
        for name, value in params.items():
            process = binders.get(name)
            bound[name] = value if process is None else process(value)
        return bound

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[Any]:
        assert self.row is not None
        make, readers = self.row, self.readers
        if not readers:
            return [make(r) for r in fetched]
        out = []
        for r in fetched:
            values = list(r)
            for i, process in readers:
                values[i] = process(values[i])
            out.append(make(values))
        return out


class Prepared:
    """`Prepared(statement)`, made once (module level or a cache by shape); then
    `.rows(conn, params)` for a SELECT's rows (attribute access by column key, as a Row)
    or `.run(conn, params)` for a statement that returns none."""

    __slots__ = ("_forms", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._forms: weakref.WeakKeyDictionary[Dialect, _Form] = weakref.WeakKeyDictionary()

    def form(self, dialect: Dialect) -> _Form:
        found = self._forms.get(dialect)
        if found is None:
            found = self._forms[dialect] = _Form(self.statement, dialect)
        return found

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        if not _direct(conn):
            return list(conn.execute(self.statement, params).all())
        form = self.form(conn.dialect)
        if form.row is None:
            raise NotPreparable("the statement returns no rows")
        return form.rows(_execute(conn, form, params, fetch=True))

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        if not _direct(conn):
            conn.execute(self.statement, params)
            return
        _execute(conn, self.form(conn.dialect), params, fetch=False)


def _direct(conn: Connection) -> bool:
    """The direct path applies: PostgreSQL, nothing listening to the engine's statements
    (SQLAlchemy's own test, `Connection._has_events`), inside a begun transaction."""
    return (conn.dialect.name == "postgresql" and not conn._has_events
            and not conn.engine._has_events and conn.in_transaction())


def _execute(conn: Connection, form: _Form, params: Mapping[str, Any], *,
             fetch: bool) -> Sequence[Sequence[Any]]:
    bound = form.bind(params)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(form.sql, bound)
        return cursor.fetchall() if fetch else ()
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy wraps it, invalidates if lost
        conn._handle_dbapi_exception(exc, form.sql, bound, cursor, None)
    finally:
        cursor.close()
