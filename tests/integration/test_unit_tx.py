"""A unit on PostgreSQL opens its transaction only when it needs one (db/tx.py UnitTx
`deferred`, docs/architecture.md "A unit without BEGIN"): whatever the unit writes after
its principal commits together or not at all, a last statement commits on its own only
when nothing else was written, and the connection never goes back to the pool in
autocommit, wherever the unit fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.util import greenlet_spawn

from dossier.db.dialect import LoopDialect, idle
from dossier.db.engine import make_engine, make_loop_engine
from dossier.db.tx import UnitTx

pytestmark = pytest.mark.postgres


class Boom(Exception):
    pass


LOOPS: dict[Engine, asyncio.AbstractEventLoop] = {}  # the loop engine's, while a test runs


@pytest.fixture(params=["threads", "loop"])
def engine(request: pytest.FixtureRequest, pg_url: str) -> Iterator[Engine]:
    """The threads' engine, and the event loop's (db/dialect.py), whose units run here in
    a greenlet on one event loop kept for the test (`in_unit`), as the server runs them."""
    made = make_engine(pg_url, pool_size=1, max_overflow=0)  # one connection, reused
    with made.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS scratch (unit int, n int)"))
    if request.param == "threads":
        yield made
        made.dispose()
        return
    made.dispose()
    loop = asyncio.new_event_loop()
    on_loop = make_loop_engine(pg_url)
    assert isinstance(on_loop.sync_engine.dialect, LoopDialect)
    LOOPS[on_loop.sync_engine] = loop
    yield on_loop.sync_engine
    del LOOPS[on_loop.sync_engine]
    loop.run_until_complete(on_loop.dispose())
    loop.close()


def in_unit(engine: Engine, work: Callable[[], Any]) -> Any:
    """`work()` where a unit on `engine` runs: in a greenlet on its event loop (the loop
    engine), or here."""
    loop = LOOPS.get(engine)
    if loop is None:
        return work()
    return loop.run_until_complete(greenlet_spawn(work))


@pytest.fixture
def observer(pg_url: str) -> Iterator[Engine]:
    """Another connection: what is committed."""
    made = make_engine(pg_url)
    yield made
    made.dispose()


def _rows(observer: Engine, unit: int) -> list[int]:
    with observer.connect() as conn:
        return sorted(conn.execute(text("SELECT n FROM scratch WHERE unit = :u"),
                                   {"u": unit}).scalars())


def _pooled_autocommit(engine: Engine) -> bool:
    def pooled() -> bool:
        with engine.connect() as conn:
            return bool(conn.connection.driver_connection.autocommit)  # type: ignore[union-attr]

    return bool(in_unit(engine, pooled))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.integers(0, 3), fail_at=st.none() | st.integers(0, 5),
       last_alone=st.booleans())
def test_the_work_commits_together_or_not_at_all(engine: Engine, observer: Engine,
                                                 writes: int,
                                                 fail_at: int | None,
                                                 last_alone: bool) -> None:
    """principal read; begin_on_next; `writes` writes; commit_alone (when asked); a last
    write. A failure at step `fail_at` leaves none of the writes; none leaves all."""
    unit = abs(hash((writes, fail_at, last_alone))) % 1_000_000_000
    with observer.begin() as conn:
        conn.execute(text("DELETE FROM scratch WHERE unit = :u"), {"u": unit})
    steps = 0

    def step() -> None:
        nonlocal steps
        if steps == fail_at:
            raise Boom
        steps += 1

    def work() -> None:
        with UnitTx(engine, deferred=True) as tx, tx.begin():
            tx.execute(text("SELECT count(*) FROM scratch"))  # the principal
            step()
            tx.begin_on_next()
            for n in range(writes):
                tx.execute(text("INSERT INTO scratch VALUES (:u, :n)"), {"u": unit, "n": n})
                step()
            if last_alone:
                tx.commit_alone()
            tx.execute(text("INSERT INTO scratch VALUES (:u, :n)"), {"u": unit, "n": writes})
            step()

    with contextlib.suppress(Boom):
        in_unit(engine, work)
    last = writes + 1  # the step after the last write
    if fail_at is None or fail_at > last:
        assert _rows(observer, unit) == list(range(writes + 1))
    elif fail_at == last and writes == 0 and last_alone:
        # nothing else was written, so the last statement committed on its own before
        # the failure that followed it: in a unit that last statement is its audit
        # record, and nothing follows it but the answer
        assert _rows(observer, unit) == [0]
    else:
        assert _rows(observer, unit) == []
    assert not _pooled_autocommit(engine)


def test_a_last_statement_commits_alone_only_when_nothing_else_was_written(
        engine: Engine, observer: Engine) -> None:
    def alone() -> None:
        with UnitTx(engine, deferred=True) as tx, tx.begin():
            tx.begin_on_next()
            tx.commit_alone()  # nothing written yet: the next statement commits on its own
            tx.execute(text("INSERT INTO scratch VALUES (1, 1)"))
            assert _rows(observer, 1) == [1]  # seen from another connection at once

    def together() -> None:
        with UnitTx(engine, deferred=True) as tx, tx.begin():
            tx.begin_on_next()
            tx.execute(text("INSERT INTO scratch VALUES (2, 1)"))
            tx.commit_alone()  # a transaction is open: it stays, COMMIT at the end
            tx.execute(text("INSERT INTO scratch VALUES (2, 2)"))
            assert _rows(observer, 2) == []  # not yet committed

    with observer.begin() as conn:
        conn.execute(text("DELETE FROM scratch WHERE unit IN (1, 2, 3)"))
    in_unit(engine, alone)
    in_unit(engine, together)
    assert _rows(observer, 2) == [1, 2]
    assert not _pooled_autocommit(engine)


def test_a_unit_that_is_not_deferred_is_one_transaction_from_its_first_statement(
        engine: Engine, observer: Engine) -> None:
    def unit() -> None:
        with UnitTx(engine) as tx, tx.begin():
            tx.execute(text("INSERT INTO scratch VALUES (3, 1)"))
            tx.begin_on_next()  # no effect
            tx.commit_alone()  # no effect
            tx.execute(text("INSERT INTO scratch VALUES (3, 2)"))
            raise Boom

    with observer.begin() as conn:
        conn.execute(text("DELETE FROM scratch WHERE unit = 3"))
    with pytest.raises(Boom):
        in_unit(engine, unit)
    assert _rows(observer, 3) == []


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times psycopg's async commit and rollback were reached."""
    calls = {"commit": 0, "rollback": 0}
    for name in calls:
        real = getattr(psycopg.AsyncConnection, name)

        def counted(self: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(self)

        monkeypatch.setattr(psycopg.AsyncConnection, name, counted)
    return calls


def test_the_loop_engine_reaches_psycopg_only_when_a_transaction_is_open(
        pg_url: str, observer: Engine, driver_calls: dict[str, int]) -> None:
    """db/dialect.py: a unit that ends with no transaction open (its statements committed
    on their own) makes no commit and no rollback call through the greenlet bridge; one
    that ends inside a transaction commits it, or rolls it back when it fails."""
    loop = asyncio.new_event_loop()
    on_loop = make_loop_engine(pg_url)
    engine = on_loop.sync_engine
    LOOPS[engine] = loop
    try:
        with observer.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS scratch (unit int, n int)"))
            conn.execute(text("DELETE FROM scratch WHERE unit IN (4, 5, 6)"))

        def connect() -> None:  # the first connection: the dialect reads the server once
            engine.connect().close()

        in_unit(engine, connect)
        driver_calls.update(commit=0, rollback=0)

        def alone() -> None:  # as a read: each statement on its own
            with UnitTx(engine, deferred=True) as tx, tx.begin():
                tx.execute(text("SELECT 1"))
                tx.begin_on_next()
                tx.commit_alone()
                tx.execute(text("INSERT INTO scratch VALUES (4, 1)"))

        in_unit(engine, alone)
        assert _rows(observer, 4) == [1]
        assert driver_calls == {"commit": 0, "rollback": 0}

        def together() -> None:  # as an update: a transaction, committed at the end
            with UnitTx(engine, deferred=True) as tx, tx.begin():
                tx.begin_on_next()
                tx.execute(text("INSERT INTO scratch VALUES (5, 1)"))
                tx.execute(text("INSERT INTO scratch VALUES (5, 2)"))

        in_unit(engine, together)
        assert _rows(observer, 5) == [1, 2]
        assert driver_calls == {"commit": 1, "rollback": 0}

        def failing() -> None:
            with UnitTx(engine, deferred=True) as tx, tx.begin():
                tx.begin_on_next()
                tx.execute(text("INSERT INTO scratch VALUES (6, 1)"))
                raise Boom

        with pytest.raises(Boom):
            in_unit(engine, failing)
        assert _rows(observer, 6) == []
        assert driver_calls["commit"] == 1 and driver_calls["rollback"] >= 1
    finally:
        del LOOPS[engine]
        loop.run_until_complete(on_loop.dispose())
        loop.close()


def test_idle_is_what_libpq_reports(pg_url: str) -> None:
    """db/dialect.py `idle`: true only for an open connection with no transaction."""
    class Proxy:  # as SQLAlchemy's pool hands the dialect a connection
        def __init__(self, driver: Any) -> None:
            self.driver_connection = driver

    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        assert idle(Proxy(conn))
        conn.execute("SELECT 1")
        assert not idle(Proxy(conn))  # in a transaction
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        assert not idle(Proxy(conn))  # in a failed transaction
        conn.rollback()
        assert idle(Proxy(conn))
    assert not idle(Proxy(conn))  # closed
    assert not idle(Proxy(None)) and not idle(object())
