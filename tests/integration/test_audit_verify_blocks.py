"""`verify` checks a log in blocks of 4,096 leaves with whole-list comparisons and walks
record by record only a block that fails: whatever is altered — a record's bytes, a leaf
or chain hash, a stored Merkle node, a signed head, the order or presence of records —
at whatever position (first block, across a boundary, the partial last one), it must
still be found and named at the first bad index. Hypothesis picks the alteration; each
is made inside a transaction that `verify` reads and that is then rolled back, so one
log of ~9,000 records serves every example, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from audit.authentication import RecordAuthenticator
from audit.checkpoint import Ed25519FileSigner, public_jwk
from audit.merkle import STRIDE
from audit.store import VERIFY_BLOCK, AuditStore
from dossier.db.engine import make_engine, upgrade
from dossier.db.models import audit_tables as t
from tests.conftest import PG_ADMIN_URL

NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
SIGNER = Ed25519FileSigner(Ed25519PrivateKey.generate())
JWK = public_jwk(SIGNER.public_key())
N = 2 * VERIFY_BLOCK + 700  # two whole blocks and a partial one


class Log:
    def __init__(self, engine: Any, backend: str) -> None:
        self.engine = engine
        self.backend = backend
        self.store = AuditStore(t, "dossier.test/audit", RecordAuthenticator(bytes(range(32))))
        for start in range(0, N, 500):
            records = [({"id": str(uuid.UUID(int=i + 1)), "recorded": "2027-03-01T09:30:00Z",
                         "action": "read", "outcome": "success", "purpose": "TREAT",
                         "patient": f"Patient/p{i % 7}", "agent": {
                             "who": "Practitioner/a", "role": "practitioner"},
                         "events": [{"action": "read", "type": "Task", "id": f"t{i}"}]},
                         f"p{i % 7}", "Practitioner/a") for i in range(start, min(N, start
                                                                                     + 500))]
            with Session(engine) as s, s.begin():
                self.store.append_many(s, records, recorded_at=NOW)
                if start % 1500 == 0:
                    self.store.integrate(s, SIGNER, NOW)
        with Session(engine) as s, s.begin():
            while self.store.integrate(s, SIGNER, NOW) < N:
                pass
        self.saved = self._snapshot()
        with Session(engine) as s:
            self.heads = [int(r[0]) for r in s.execute(select(t.tree_heads.c.tree_size))]
            self.nodes = [(int(lv), int(ix)) for lv, ix in s.execute(
                select(t.nodes.c.level, t.nodes.c.node_index))]

    def _snapshot(self) -> dict[str, list[Any]]:
        with self.engine.connect() as conn:
            return {"records": [tuple(r) for r in conn.execute(
                        select(t.records.c.id, t.records.c.leaf, t.records.c.mac)
                        .order_by(t.records.c.seq))],
                    "leaves": [tuple(r) for r in conn.execute(
                        select(t.leaves.c.leaf_index, t.leaves.c.chain_hash)
                        .order_by(t.leaves.c.leaf_index))],
                    "nodes": [tuple(r) for r in conn.execute(select(t.nodes).order_by(
                        t.nodes.c.level, t.nodes.c.node_index))],
                    "heads": [tuple(r) for r in conn.execute(select(
                        t.tree_heads.c.tree_size, t.tree_heads.c.signature).order_by(
                        t.tree_heads.c.tree_size))]}

    def restore(self) -> None:
        """Put back what a committed alteration changed (records' leaf and MAC, chain
        hashes, node hashes), with the append-only triggers as they were."""
        now = self._snapshot()
        with Session(self.engine) as s, s.begin():
            if self.backend == "postgres":
                s.execute(text("SET LOCAL session_replication_role = replica"))
            for (rid, leaf, mac), was in zip(now["records"], self.saved["records"],
                                             strict=True):
                if (rid, leaf, mac) != was:
                    s.execute(update(t.records).where(t.records.c.id == rid).values(
                        leaf=was[1], mac=was[2]))
            for (index, chain), was in zip(now["leaves"], self.saved["leaves"], strict=True):
                if chain != was[1]:
                    s.execute(update(t.leaves).where(t.leaves.c.leaf_index == index)
                              .values(chain_hash=was[1]))
            for (level, index, value), was in zip(now["nodes"], self.saved["nodes"],
                                                  strict=True):
                if value != was[2]:
                    s.execute(update(t.nodes).where(t.nodes.c.level == level,
                                                    t.nodes.c.node_index == index)
                              .values(hash=was[2]))
            for (size, signature), was in zip(now["heads"], self.saved["heads"], strict=True):
                if signature != was[1]:
                    s.execute(update(t.tree_heads).where(t.tree_heads.c.tree_size == size)
                              .values(signature=was[1]))
            if self.backend == "sqlite":
                for table in ("audit_records", "audit_leaves", "audit_nodes",
                              "audit_tree_heads"):
                    if not s.execute(text("SELECT 1 FROM sqlite_master WHERE name = :n"),
                                     {"n": f"{table}_no_update"}).first():
                        s.execute(text(
                            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"))
        assert self._snapshot() == self.saved

    def tampered(self, alter: Any) -> Any:
        """verify, in the transaction where `alter(session)` changed the log; rolled back."""
        with Session(self.engine) as s:
            s.begin()
            if self.backend == "postgres":  # a superuser: no append-only triggers
                s.execute(text("SET LOCAL session_replication_role = replica"))
            else:
                for table in ("audit_records", "audit_leaves", "audit_nodes",
                              "audit_tree_heads"):
                    s.execute(text(f"DROP TRIGGER {table}_no_update"))
                    s.execute(text(f"DROP TRIGGER {table}_no_delete"))
            alter(s)
            result = self.store.verify(s, JWK)
            s.rollback()
        return result


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgres", marks=pytest.mark.postgres)])
def log(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Log]:
    name = None
    if request.param == "postgres":
        template = request.getfixturevalue("pg_template")
        if template is None:
            pytest.skip("PostgreSQL not reachable (only allowed outside CI)")
        name = f"dossier_t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('blocks')) / 'db.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    yield Log(engine, request.param)
    engine.dispose()
    if name is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _record_id(s: Session, index: int) -> str:
    return str(s.execute(select(t.leaves.c.record_id).where(
        t.leaves.c.leaf_index == index)).scalar_one())


def _flip(value: bytes, at: int) -> bytes:
    return value[:at] + bytes([value[at] ^ 1]) + value[at + 1:]


def test_the_intact_log_verifies(log: Log) -> None:
    with Session(log.engine) as s:
        result = log.store.verify(s, JWK)
    assert result.ok, result.detail
    assert len({lv for lv, _ in log.nodes}) >= 2  # levels 4 and 8 at least


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["leaf", "leaf_hash", "chain_hash", "record_gone", "swap",
                             "mac"]),
       index=st.one_of(st.integers(0, N - 1), st.sampled_from(
           [0, VERIFY_BLOCK - 1, VERIFY_BLOCK, 2 * VERIFY_BLOCK, N - 1])),
       byte=st.integers(0, 31))
def test_an_altered_record_or_leaf_is_named(log: Log, kind: str, index: int,
                                            byte: int) -> None:
    def alter(s: Session) -> None:
        rid = _record_id(s, index)
        R, L = t.records.c, t.leaves.c
        if kind == "leaf":  # the record's bytes changed, its MAC kept
            leaf = bytes(s.execute(select(R.leaf).where(R.id == rid)).scalar_one())
            s.execute(update(t.records).where(R.id == rid).values(
                leaf=leaf.replace(b'"read"', b'"vread"', 1)))
        elif kind == "mac":
            mac = bytes(s.execute(select(R.mac).where(R.id == rid)).scalar_one())
            s.execute(update(t.records).where(R.id == rid).values(mac=_flip(mac, byte)))
        elif kind in ("leaf_hash", "chain_hash"):
            value = bytes(s.execute(select(L[kind]).where(L.leaf_index == index))
                          .scalar_one())
            s.execute(update(t.leaves).where(L.leaf_index == index).values(
                {kind: _flip(value, byte)}))
        elif kind == "record_gone":
            s.execute(delete(t.records).where(R.id == rid))
        else:  # two leaves name each other's records
            other_index = index + 1 if index + 1 < N else index - 1
            other = _record_id(s, other_index)
            s.execute(update(t.leaves).where(L.record_id == rid).values(record_id="swap"))
            s.execute(update(t.leaves).where(L.record_id == other).values(record_id=rid))
            s.execute(update(t.leaves).where(L.record_id == "swap").values(record_id=other))

    result = log.tampered(alter)
    assert not result.ok
    expected = min(index, index + 1 if index + 1 < N else index - 1) if kind == "swap" \
        else index
    assert result.first_bad_index == expected, result.detail


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10**6), byte=st.integers(0, 31), gone=st.booleans())
def test_an_altered_or_missing_stored_node_is_named(log: Log, pick: int, byte: int,
                                                     gone: bool) -> None:
    level, index = log.nodes[pick % len(log.nodes)]
    assert level % STRIDE == 0 and level > 0
    N_ = t.nodes.c

    def alter(s: Session) -> None:
        where = (N_.level == level, N_.node_index == index)
        if gone:
            s.execute(delete(t.nodes).where(*where))
        else:
            value = bytes(s.execute(select(N_.hash).where(*where)).scalar_one())
            s.execute(update(t.nodes).where(*where).values(hash=_flip(value, byte)))

    result = log.tampered(alter)
    assert not result.ok
    assert result.first_bad_index == index << level
    assert result.detail == "stored Merkle node altered"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10**6), byte=st.integers(0, 31),
       what=st.sampled_from(["signature", "root_hash"]))
def test_an_altered_head_is_named(log: Log, pick: int, byte: int, what: str) -> None:
    size = log.heads[pick % len(log.heads)]
    H = t.tree_heads.c

    def alter(s: Session) -> None:
        value = bytes(s.execute(select(H[what]).where(H.tree_size == size)).scalar_one())
        s.execute(update(t.tree_heads).where(H.tree_size == size).values(
            {what: _flip(value, byte)}))

    result = log.tampered(alter)
    assert not result.ok
    assert result.first_bad_index == size - 1
    assert "tree head" in result.detail


def test_a_head_signed_over_another_history_is_named(log: Log) -> None:
    """A head whose checkpoint is validly signed but whose root is not the log's."""
    from audit.checkpoint import Checkpoint, tree_head_json

    size = log.heads[len(log.heads) // 2]
    forged = tree_head_json(Checkpoint("dossier.test/audit", size, bytes(32)), SIGNER, NOW)
    H = t.tree_heads.c

    def alter(s: Session) -> None:
        from audit.canonical import b64decode

        s.execute(update(t.tree_heads).where(H.tree_size == size).values(
            root_hash=bytes(32), checkpoint=forged["checkpoint"],
            signature=b64decode(forged["signature"])))

    result = log.tampered(alter)
    assert not result.ok and result.first_bad_index == size - 1
    assert result.detail == "tree head root mismatch"


# Worker processes (verify jobs > 1) ---------------------------------------------------
# The log cut into ranges of whole blocks, [0, 4096) here, [4096, 8192) and [8192, N) in
# two workers: the answer must be the one process's, also for what only the join sees.

def _set_record(s: Session, index: int, **values: Any) -> None:
    s.execute(update(t.records).where(t.records.c.id == _record_id(s, index)).values(values))


def _copy_record(s: Session, index: int, source: int) -> None:
    R = t.records.c
    leaf, mac = s.execute(select(R.leaf, R.mac).where(R.id == _record_id(s, source))).one()
    _set_record(s, index, leaf=leaf, mac=mac)


def _flip_chain(s: Session, index: int) -> None:
    L = t.leaves.c
    value = bytes(s.execute(select(L.chain_hash).where(L.leaf_index == index)).scalar_one())
    s.execute(update(t.leaves).where(L.leaf_index == index).values(chain_hash=_flip(value, 3)))


def _flip_node(s: Session, level: int, index: int) -> None:
    N_ = t.nodes.c
    where = (N_.level == level, N_.node_index == index)
    value = bytes(s.execute(select(N_.hash).where(*where)).scalar_one())
    s.execute(update(t.nodes).where(*where).values(hash=_flip(value, 0)))


def _flip_signature(s: Session, above: int) -> None:
    """The signature of the first head of a size above `above`."""
    H = t.tree_heads.c
    size, value = s.execute(select(H.tree_size, H.signature).where(H.tree_size > above)
                            .order_by(H.tree_size).limit(1)).one()
    s.execute(update(t.tree_heads).where(H.tree_size == size).values(
        signature=_flip(bytes(value), 5)))


CASES: dict[str, Any] = {
    "intact": lambda s: None,
    "record in a worker's range": lambda s: _set_record(s, 5000, mac=bytes(32)),
    "chain at a cut, first of the worker": lambda s: _flip_chain(s, VERIFY_BLOCK),
    "chain at a cut, last of the first range": lambda s: _flip_chain(s, VERIFY_BLOCK - 1),
    "node in the last worker's range": lambda s: _flip_node(s, 4, 2 * VERIFY_BLOCK // 16 + 3),
    "replay across a cut": lambda s: _copy_record(s, 5000, 10),
    "head signature in a worker's range": lambda s: _flip_signature(s, VERIFY_BLOCK + 1),
    "record older than 0015 first in a worker's range":
        lambda s: _set_record(s, 2 * VERIFY_BLOCK, leaf=None, mac=None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_worker_processes_give_the_same_answer(log: Log, case: str) -> None:
    with Session(log.engine) as s, s.begin():
        if log.backend == "postgres":
            s.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for table in ("audit_records", "audit_leaves", "audit_nodes", "audit_tree_heads"):
                s.execute(text(f"DROP TRIGGER {table}_no_update"))
        CASES[case](s)
    try:
        with Session(log.engine) as s:
            one = log.store.verify(s, JWK)
        with Session(log.engine) as s:
            three = log.store.verify(s, JWK, jobs=3, parallel_from=0)
    finally:
        log.restore()
    assert three == one
    assert one.ok == (case == "intact"), one.detail
