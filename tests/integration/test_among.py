"""`audit.tx.among`: `column IN values` as one array parameter on PostgreSQL, an
expanding IN on SQLite. The same rows as Python's own filter, whatever the values (none,
duplicates, some absent), on both databases; on PostgreSQL one statement text for every
number of values. `audit.tx.insert_many`: the rows given, as given (bytes, NULLs, one
row or many), in one statement on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.orm import Session

from audit.tx import among, insert_many

metadata = MetaData()
things = Table("among_things", metadata, Column("n", Integer, primary_key=True),
               Column("name", String(16), nullable=False))
NAMES = [f"name-{i}" for i in range(40)]
written = Table("among_written", metadata, Column("n", Integer, primary_key=True),
                Column("name", String(16), nullable=True),
                Column("hash", LargeBinary, nullable=False))


@pytest.fixture
def engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = (str(request.getfixturevalue("pg_url")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'among.db'}")
    made = create_engine(url)
    metadata.create_all(made)
    with made.begin() as conn:
        conn.execute(insert(things), [{"n": i, "name": n} for i, n in enumerate(NAMES)])
    yield made
    made.dispose()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(numbers=st.lists(st.integers(-5, 50), max_size=60),
       names=st.lists(st.sampled_from([*NAMES, "absent", "name-"]), max_size=60))
def test_among_finds_what_in_finds(engine: Engine, numbers: list[int],
                                   names: list[str]) -> None:
    with Session(engine) as session:
        by_number = set(session.execute(select(things.c.n).where(
            among(session, things.c.n, numbers))).scalars())
        by_name = set(session.execute(select(things.c.name).where(
            among(session, things.c.name, iter(names)))).scalars())
    assert by_number == {n for n in numbers if 0 <= n < len(NAMES)}
    assert by_name == set(names) & set(NAMES)


def test_one_statement_text_for_any_number_of_values(engine: Engine, backend: str) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    with Session(engine) as session:
        for count in (1, 2, 7, 30):
            session.execute(select(things.c.n).where(among(session, things.c.n,
                                                           range(count)))).all()
    event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == 4
    assert len(set(seen)) == (1 if backend == "postgres" else 4)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=16)),
                               st.binary(max_size=40)), max_size=40))
def test_insert_many_writes_the_rows_given(engine: Engine, backend: str,
                                           rows: list[tuple[str | None, bytes]]) -> None:
    given_rows = [{"n": i, "name": name.replace("\x00", ""), "hash": h} if name is not None
                  else {"n": i, "name": None, "hash": h} for i, (name, h) in enumerate(rows)]
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session, session.begin():
            session.execute(written.delete())
            seen.clear()
            insert_many(session, written, given_rows)
            statements = len(seen)
            got = [dict(r._mapping) for r in session.execute(
                select(written).order_by(written.c.n))]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [{**r, "hash": bytes(r["hash"])} for r in got] == given_rows
    # an executemany is one cursor call too: the wire is what differs, so count the
    # statement PostgreSQL is sent by its text
    if backend == "postgres" and len(given_rows) > 1:
        assert statements == 1 and "unnest" in seen[0]
    assert statements == (1 if given_rows else 0)


def test_arrays_go_to_postgresql_in_binary_format(engine: Engine, backend: str) -> None:
    """psycopg's default for a list is the text format, quoted and escaped element by
    element in Python (3 µs per hash); `among` and `insert_many` send theirs binary."""
    if backend != "postgres":
        pytest.skip("SQLite takes no array parameters")
    from psycopg.adapt import PyFormat
    from psycopg.pq import Format

    formats: list[Format] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        adapters = cursor.connection.adapters
        formats.extend(adapters.get_dumper(type(value), PyFormat.AUTO).format
                       for value in parameters.values() if isinstance(value, list))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session, session.begin():
            session.execute(select(things.c.n).where(among(session, things.c.name,
                                                           NAMES[:3]))).all()
            insert_many(session, written, [{"n": i, "name": None, "hash": b"\x00\xff"}
                                           for i in range(3)])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert formats == [Format.BINARY] * 4  # the names; then n, name and hash
