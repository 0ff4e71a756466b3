"""The request path's hot statements run on the unit's cursor (dossier/db/prepared.py): the
same rows, the same writes and the same errors as SQLAlchemy's own execution of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, column, event, func, insert, select, table, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dossier.core.auditing import _records_and_notices
from dossier.core.repository import _CURRENT, _READ, _READ_ALONG, _WRITE_ALONG
from dossier.db import bulk
from dossier.db.engine import make_engine
from dossier.db.models import (
    audit_records,
    notification_outbox,
    patient_keys,
    resources,
    search_index,
)
from dossier.db.prepared import NotPreparable, Prepared
from dossier.db.tx import UnitTx

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    made = make_engine(pg_url)
    yield made
    made.dispose()


def texts(size: int) -> st.SearchStrategy[str]:
    """Text PostgreSQL stores (no NUL)."""
    return st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                   max_size=size)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | texts(12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(6), inner,
                                                                max_size=3),
    max_leaves=8)
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)),
                                                  timezone(timedelta(hours=-5))]))
rows = st.fixed_dictionaries({
    "version_id": st.integers(1, 1000),
    "last_updated": moments,
    "deleted": st.booleans(),
    "patient_id": st.none() | st.sampled_from(["p1", "p2"]),
    "categories": st.sampled_from(["", "social", "psy,social"]),
    "content": st.dictionaries(texts(8), json_values, max_size=4),
    "sealed": st.none() | st.dictionaries(texts(8), texts(20),
                                          max_size=3),
    "addressee": st.none() | st.just("Practitioner/x"),
})


def _both(engine: Engine, prepared: Prepared, params: dict[str, Any]) -> tuple[Any, Any]:
    """(direct rows, SQLAlchemy's rows) of one statement, in one transaction."""
    with engine.connect() as conn, conn.begin():
        # a session zone that is not UTC: the rows' times are converted as SQLAlchemy does
        conn.execute(text("SET LOCAL TIME ZONE 'Europe/Brussels'"))
        direct = prepared.rows(conn, params)
        plain = conn.execute(prepared.statement, params).all()
        conn.rollback()
    return direct, plain


def _same(direct: list[Any], plain: list[Any]) -> None:
    assert len(direct) == len(plain)
    for d, p in zip(direct, plain, strict=True):
        assert d._fields == p._fields
        assert tuple(d) == tuple(p)
        assert repr(tuple(d)) == repr(tuple(p))  # the same types, time zones included
        assert [type(v) for v in d] == [type(v) for v in p]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=rows, consents=st.lists(json_values, max_size=2), key=st.booleans(),
       practitioner=st.booleans(), wanted=st.sampled_from(["t1", "missing"]))
def test_a_row_read_gives_the_rows_sqlalchemy_gives(
        engine: Engine, row: dict[str, Any], consents: list[Any], key: bool,
        practitioner: bool, wanted: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM resources"))
        conn.execute(text("DELETE FROM patient_keys"))
        conn.execute(insert(resources).values(res_type="Task", res_id="t1", **row))
        for n, consent in enumerate(consents):
            conn.execute(insert(resources).values(
                res_type="Consent", res_id=f"c{n}", version_id=1, last_updated=row[
                    "last_updated"], patient_id=row["patient_id"], categories="",
                content={"c": consent}))
        if key and row["patient_id"]:
            conn.execute(insert(patient_keys).values(
                patient_id=row["patient_id"], kek_id="k1", wrapped=b"\x00\xffkey",
                created_at=row["last_updated"]))
        if practitioner:
            conn.execute(insert(resources).values(
                res_type="Practitioner", res_id="pr1", version_id=1,
                last_updated=row["last_updated"], content={"name": [{"text": "Dr"}]}))
    params = {"practitioner_id": "pr1", "practitioner": "Practitioner/pr1", "rtype": "Task",
              "rid": wanted}
    _same(*_both(engine, _READ_ALONG, params))
    _same(*_both(engine, _WRITE_ALONG, {**params, "now": row["last_updated"]}))
    _same(*_both(engine, _CURRENT, {"rtype": "Task", "rid": wanted}))  # other readers
    _same(*_both(engine, _READ["postgresql"], {"rtype": "Task", "rid": wanted}))


def _record_params(rid: str, now: datetime, record: Any) -> dict[str, Any]:
    return {"r0_id": rid, "r0_recorded_at": now, "r0_patient_id": "p1",
            "r0_agent": "Practitioner/x", "r0_action": "read", "r0_outcome": "success",
            "r0_record": record, "r0_leaf": b"\x00leaf\xff", "r0_mac": b"mac",
            "o0_id": f"o-{rid}", "o0_patient_id": "p1", "o0_record_id": rid,
            "o0_agent": "Practitioner/x", "o0_urgent": False, "o0_created_at": now,
            "o0_channel": "inbox", "o0_status": "pending", "o0_attempts": 0,
            "o0_next_attempt_at": now, "o0_digest": False}


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=st.dictionaries(texts(8), json_values, min_size=1, max_size=4),
       now=moments)
def test_an_audit_record_is_written_as_sqlalchemy_writes_it(
        engine: Engine, record: dict[str, Any], now: datetime) -> None:
    prepared = _records_and_notices(audit_records, 1, 1)
    ids = {"direct": f"d-{uuid.uuid4()}", "plain": f"p-{uuid.uuid4()}"}  # kept: append-only
    with engine.begin() as conn:
        prepared.run(conn, _record_params(ids["direct"], now, record))
        conn.execute(prepared.statement, _record_params(ids["plain"], now, record))
    with engine.connect() as conn:
        written = {r.id: r._asdict() for r in conn.execute(
            select(audit_records).where(audit_records.c.id.in_(ids.values()))).all()}
        notices = {r.record_id: r._asdict() for r in conn.execute(
            select(notification_outbox).where(
                notification_outbox.c.record_id.in_(ids.values()))).all()}
    direct, plain = written[ids["direct"]], written[ids["plain"]]
    ignore = ("id", "seq", "record_id")
    assert {k: v for k, v in direct.items() if k not in ignore} == \
        {k: v for k, v in plain.items() if k not in ignore}
    assert direct["record"] == record and direct["recorded_at"] == now
    assert {k: v for k, v in notices[ids["direct"]].items() if k not in ignore} == \
        {k: v for k, v in notices[ids["plain"]].items() if k not in ignore}


def test_a_create_s_rows_are_written_as_sqlalchemy_writes_them(engine: Engine) -> None:
    now = datetime(2026, 12, 7, 8, 0, tzinfo=timezone(timedelta(hours=1)))

    def batches(rid: str) -> list[Any]:
        return [(resources, [{"res_type": "Task", "res_id": rid, "version_id": 1,
                              "last_updated": now, "patient_id": "p1",
                              "content": {"status": "ready", "n": [1, None]}}]),
                (search_index, [{"res_type": "Task", "res_id": rid, "param": "status",
                                 "value": "ready"}])]
    with UnitTx(engine) as tx, tx.begin():
        bulk.insert_tables(tx, batches("direct"))
    shapes = tuple((t, tuple(bulk.complete(t, r)[0])) for t, r in batches("x"))
    with UnitTx(engine) as tx, tx.begin():  # SQLAlchemy's path: something listens
        seen: list[str] = []
        event.listen(tx.connection(), "before_cursor_execute", lambda *a: seen.append(a[2]))
        bulk.insert_tables(tx, batches("plain"))
        assert seen == [bulk.tables_insert(shapes).form(engine.dialect).sql]
    with engine.connect() as conn:
        got = {r.res_id: r._asdict() for r in conn.execute(select(resources)).all()}
        index = sorted(r.res_id for r in conn.execute(select(search_index)).all())
    assert got["direct"] | {"res_id": "plain"} == got["plain"]
    assert got["direct"]["last_updated"] == now
    assert index == ["direct", "plain"]


def test_a_listener_on_the_engine_sees_every_statement(engine: Engine) -> None:
    """The statement-budget tests count there: with a listener the plain path is taken."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    with engine.connect() as conn, conn.begin():
        _READ_ALONG.rows(conn, {"practitioner_id": "a", "practitioner": "b", "rtype": "Task",
                                "rid": "c"})
    assert len(seen) == 1 and "json_agg" in seen[0]


def test_an_error_is_sqlalchemy_s_and_the_transaction_keeps_nothing(engine: Engine) -> None:
    prepared = _records_and_notices(audit_records, 1, 1)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        prepared.run(conn, _record_params("once", now, {"a": 1}))
    def twice() -> None:
        with engine.begin() as conn:
            conn.execute(insert(resources).values(res_type="Task", res_id="kept?",
                                                  version_id=1, last_updated=now, content={}))
            prepared.run(conn, _record_params("once", now, {"a": 1}))  # the same id again
    with pytest.raises(IntegrityError):
        twice()
    with engine.connect() as conn:
        assert conn.execute(select(resources.c.res_id)).all() == []
        assert conn.execute(select(audit_records.c.id).where(
            audit_records.c.id.like("once%"))).scalars().all() == ["once"]
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="required"):
            prepared.run(conn, {"r0_id": "x"})
        conn.rollback()


def test_a_lost_connection_is_invalidated_and_reported_as_lost(engine: Engine,
                                                              pg_url: str) -> None:
    with engine.connect() as conn:
        conn.begin()
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        killer = make_engine(pg_url)
        with killer.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        killer.dispose()
        with pytest.raises(DBAPIError) as caught:
            _READ_ALONG.rows(conn, {"practitioner_id": "a", "practitioner": "b",
                                    "rtype": "Task", "rid": "c"})
        assert caught.value.connection_invalidated
        conn.rollback()
    with engine.connect() as conn:  # the pool gives a live connection again
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_a_statement_needing_sqlalchemy_at_each_run_is_refused(engine: Engine) -> None:
    t = table("resources", column("res_id"))
    expanding = Prepared(select(t.c.res_id).where(t.c.res_id.in_(["a", "b"])))
    with engine.connect() as conn, conn.begin(), pytest.raises(NotPreparable):
        expanding.rows(conn, {})


def test_outside_a_transaction_or_on_sqlite_sqlalchemy_runs_it(engine: Engine,
                                                               tmp_path: Any) -> None:
    params = {"practitioner_id": "a", "practitioner": "b", "rtype": "Task", "rid": "c"}
    with engine.connect() as conn:  # no begin(): SQLAlchemy's autobegin
        assert [tuple(r) for r in _READ_ALONG.rows(conn, params)] == [(None,) * 16]
        conn.commit()
    lite = make_engine(f"sqlite:///{tmp_path}/x.db")
    with lite.connect() as conn, conn.begin():
        conn.execute(text("CREATE TABLE t (a INTEGER)"))
        Prepared(insert(table("t", column("a")))).run(conn, {"a": 1})
        assert conn.execute(text("SELECT a FROM t")).scalar() == 1
    lite.dispose()


def test_a_write_s_records_without_notice_are_written_as_sqlalchemy_writes_them(
        engine: Engine) -> None:
    prepared = _records_and_notices(audit_records, 2, 0)
    now = datetime(2026, 12, 7, 9, 30, tzinfo=timezone(timedelta(hours=1)))

    def params(tag: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(2):
            one = _record_params(f"{tag}-{i}-{uuid.uuid4()}", now, {"n": i, "t": tag})
            out.update({f"r{i}_{k[3:]}": v for k, v in one.items() if k.startswith("r0_")})
        return out

    direct, plain = params("direct"), params("plain")
    with engine.begin() as conn:
        prepared.run(conn, direct)
        conn.execute(prepared.statement, plain)
    with engine.connect() as conn:
        got = {r.id: r._asdict() for r in conn.execute(select(audit_records).where(
            audit_records.c.id.in_([direct["r0_id"], direct["r1_id"], plain["r0_id"],
                                    plain["r1_id"]]))).all()}
        notices = conn.execute(select(func.count()).select_from(notification_outbox).where(
            notification_outbox.c.record_id.in_(list(got)))).scalar_one()
    for i in range(2):
        d, p = got[direct[f"r{i}_id"]], got[plain[f"r{i}_id"]]
        assert d["recorded_at"] == now and d["record"] == {"n": i, "t": "direct"}
        assert {k: v for k, v in d.items() if k not in ("id", "seq", "record")} == \
            {k: v for k, v in p.items() if k not in ("id", "seq", "record")}
    assert notices == 0
