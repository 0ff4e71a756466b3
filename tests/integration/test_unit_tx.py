"""A unit on PostgreSQL opens its transaction only when it needs one (db/tx.py UnitTx
`deferred`, docs/architecture.md "A unit without BEGIN"): whatever the unit writes after
its principal commits together or not at all, a last statement commits on its own only
when nothing else was written, and the connection never goes back to the pool in
autocommit, wherever the unit fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from dossier.db.engine import make_engine
from dossier.db.tx import UnitTx

pytestmark = pytest.mark.postgres


class Boom(Exception):
    pass


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    made = make_engine(pg_url, pool_size=1, max_overflow=0)  # one connection, reused
    with made.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS scratch (unit int, n int)"))
    yield made
    made.dispose()


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
    with engine.connect() as conn:
        return bool(conn.connection.driver_connection.autocommit)  # type: ignore[union-attr]


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
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM scratch WHERE unit = :u"), {"u": unit})
    steps = 0

    def step() -> None:
        nonlocal steps
        if steps == fail_at:
            raise Boom
        steps += 1

    try:
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
    except Boom:
        pass
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
    with UnitTx(engine, deferred=True) as tx, tx.begin():
        tx.begin_on_next()
        tx.commit_alone()  # nothing written yet: the next statement commits on its own
        tx.execute(text("INSERT INTO scratch VALUES (1, 1)"))
        assert _rows(observer, 1) == [1]  # seen from another connection at once
    with UnitTx(engine, deferred=True) as tx, tx.begin():
        tx.begin_on_next()
        tx.execute(text("INSERT INTO scratch VALUES (2, 1)"))
        tx.commit_alone()  # a transaction is open: it stays, COMMIT at the end
        tx.execute(text("INSERT INTO scratch VALUES (2, 2)"))
        assert _rows(observer, 2) == []  # not yet committed
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

    with pytest.raises(Boom):
        unit()
    assert _rows(observer, 3) == []
