"""Tampering by someone who holds the database but not the service's keys (issue 16):
forged or replayed records, a truncated tail, a fork. `verify` must name each, with
hypothesis generating the forgeries. SQLite in memory, no triggers: a superuser."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import JSON, LargeBinary, MetaData, create_engine, delete, func, insert, select
from sqlalchemy.orm import Session

from audit.authentication import RecordAuthenticator
from audit.canonical import canonical_bytes
from audit.checkpoint import Checkpoint, Ed25519FileSigner, public_jwk
from audit.store import AuditStore
from dossier.db.types import UTCDateTime

NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
KEY = bytes(range(32))
SIGNER = Ed25519FileSigner(Ed25519PrivateKey.generate())
JWK = public_jwk(SIGNER.public_key())


def _log(n: int) -> tuple[Any, AuditStore]:
    meta = MetaData()
    from audit.tables import define_audit_tables

    tables = define_audit_tables(meta, json_type=JSON, bytes_type=LargeBinary,
                                 datetime_type=UTCDateTime())
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    store = AuditStore(tables, "dossier.test/audit", RecordAuthenticator(KEY))
    for i in range(n):
        with Session(engine) as s, s.begin():
            store.append(s, _record(i), recorded_at=NOW, patient_id="p1", agent="Practitioner/a")
            if i % 3 == 2:
                store.integrate(s, SIGNER, NOW)
    _integrate(engine, store)
    return engine, store


def _record(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.UUID(int=i + 1)), "recorded": "2027-03-01T09:30:00Z",
            "action": "read", "outcome": "success", "purpose": "TREAT",
            "patient": "Patient/p1", "agent": {"who": "Practitioner/a", "role": "practitioner"},
            "events": [{"action": "read", "type": "Patient", "id": "p1"}], **extra}


def _integrate(engine: Any, store: AuditStore) -> int:
    with Session(engine) as s, s.begin():
        return store.integrate(s, SIGNER, NOW)


def _verify(engine: Any, store: AuditStore, trusted: Checkpoint | None = None) -> Any:
    with Session(engine) as s:
        return store.verify(s, JWK, trusted=trusted)


def _head(engine: Any, store: AuditStore) -> Checkpoint:
    with Session(engine) as s:
        head = store.tree_head(s)
    assert head is not None
    return Checkpoint.parse(head["checkpoint"])


def test_an_intact_log_verifies() -> None:
    engine, store = _log(7)
    result = _verify(engine, store, _head(engine, store))
    assert result.ok, result.detail


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), mac=st.sampled_from(["none", "random", "copied", "legacy"]),
       outcome=st.sampled_from(["success", "denied"]), who=st.text(min_size=1, max_size=20))
def test_a_record_inserted_in_the_database_is_rejected(n: int, mac: str, outcome: str,
                                                        who: str) -> None:
    """A plausible record with a plausible hash: the sequencer logs it and signs a head
    over it, but its authentication code is not one the service computed."""
    engine, store = _log(n)
    forged = _record(1000, outcome=outcome, agent={"who": who, "role": "auditor"})
    leaf = canonical_bytes(forged)
    with Session(engine) as s, s.begin():
        genuine = s.execute(store.t.records.select().limit(1)).first()
        assert genuine is not None
        row = {"id": forged["id"], "recorded_at": NOW, "patient_id": "p1", "agent": who,
               "action": "read", "outcome": outcome, "record": forged,
               "leaf": None if mac == "legacy" else leaf,
               "mac": {"none": None, "random": os.urandom(32), "copied": genuine.mac,
                       "legacy": None}[mac]}
        s.execute(insert(store.t.records).values(row))
    assert _integrate(engine, store) == n + 1
    result = _verify(engine, store)
    assert not result.ok
    assert result.first_bad_index == n
    assert "not written by the service" in result.detail


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 9), pick=st.integers(0, 8))
def test_a_replayed_record_is_rejected(n: int, pick: int) -> None:
    engine, store = _log(n)
    with Session(engine) as s, s.begin():
        genuine = s.execute(store.t.records.select().where(
            store.t.records.c.seq == pick % n + 1)).one()
        s.execute(insert(store.t.records).values(
            id="replay", recorded_at=NOW, patient_id="p1", agent="x", action="read",
            outcome="success", record=genuine.record, leaf=genuine.leaf, mac=genuine.mac))
    _integrate(engine, store)
    result = _verify(engine, store)
    assert not result.ok and result.first_bad_index == n
    assert "replayed" in result.detail


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 12), cut=st.integers(1, 11))
def test_a_truncated_tail_is_caught_against_a_published_head(n: int, cut: int) -> None:
    """A superuser deletes the last records with their leaves, nodes and heads: the log
    left is self-consistent, but not an extension of the head a witness holds."""
    engine, store = _log(n)
    published = _head(engine, store)
    keep = n - 1 - cut % (n - 1)  # 1 .. n-1 records stay
    t = store.t
    with Session(engine) as s, s.begin():
        gone = [r.record_id for r in s.execute(t.leaves.select().where(
            t.leaves.c.leaf_index >= keep))]
        s.execute(delete(t.leaves).where(t.leaves.c.leaf_index >= keep))
        s.execute(delete(t.records).where(t.records.c.id.in_(gone)))
        s.execute(delete(t.tree_heads).where(t.tree_heads.c.tree_size > keep))
        for level in range(8):
            s.execute(delete(t.nodes).where(t.nodes.c.level == level,
                                            t.nodes.c.node_index >= keep >> level))
    _integrate(engine, store)  # signs a head at the truncated size
    assert _verify(engine, store).ok  # alone, a consistent shorter log looks fine
    result = _verify(engine, store, published)
    assert not result.ok and "truncated" in result.detail


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 10), cut=st.integers(1, 9), extra=st.integers(1, 5))
def test_a_fork_is_caught_against_a_published_head(n: int, cut: int, extra: int) -> None:
    """Even with the keys (a compromised service), a rewritten history does not extend
    the head the witness holds."""
    engine, store = _log(n)
    published = _head(engine, store)
    keep = n - 1 - cut % (n - 1)
    t = store.t
    with Session(engine) as s, s.begin():
        s.execute(delete(t.leaves).where(t.leaves.c.leaf_index >= keep))
        s.execute(delete(t.records).where(t.records.c.seq > keep))
        s.execute(delete(t.tree_heads).where(t.tree_heads.c.tree_size > keep))
        s.execute(delete(t.nodes).where(t.nodes.c.node_index >= 0, t.nodes.c.level >= 0,
                                        (t.nodes.c.node_index + 1) * (2 ** t.nodes.c.level)
                                        > keep))
        for i in range(n - keep + extra):
            store.append(s, _record(5000 + i), recorded_at=NOW, patient_id="p2", agent="b")
    _integrate(engine, store)
    assert _verify(engine, store).ok
    result = _verify(engine, store, published)
    assert not result.ok
    assert "fork" in result.detail or "truncated" in result.detail


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 6), waiting=st.integers(1, 4))
def test_a_record_hidden_from_the_sequencer_is_reported(n: int, waiting: int) -> None:
    """A superuser who removes a record's place in the queue keeps it out of the tree;
    verify counts records against leaves and the queue."""
    engine, store = _log(n)
    with Session(engine) as s, s.begin():
        for i in range(waiting):
            store.append(s, _record(3000 + i), recorded_at=NOW, patient_id="p1", agent="a")
    assert _verify(engine, store).ok  # waiting records are fine
    with Session(engine) as s, s.begin():
        s.execute(delete(store.t.pending).where(
            store.t.pending.c.seq == s.execute(select(func.max(store.t.pending.c.seq)))
            .scalar_one()))
    result = _verify(engine, store)
    assert not result.ok and "hidden" in result.detail
