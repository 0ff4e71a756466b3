"""The audit log on the database: append a record in the request's transaction; the
sequencer integrates records into the chain and the Merkle tree and signs a tree head;
proofs read O(log n) stored nodes; verify re-checks everything.

Design (Trillian-style): requests only INSERT into audit_records, so they never queue on
a shared chain head. The sequencer, one at a time (a PostgreSQL advisory lock, or SQLite's
write lock), gives new records the next leaf indexes, extends the hash chain, stores the
new perfect Merkle nodes and signs a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_
from sqlalchemy.orm import Session

from audit.canonical import canonical_bytes
from audit.chain import GENESIS, chain_hash_from_leaf_hash
from audit.checkpoint import Checkpoint, Signer, TreeHeadJSON, tree_head_json
from audit.hashing import EMPTY_ROOT, leaf_hash
from audit.merkle import CompactRange, NodeID, consistency_proof, inclusion_proof, root
from audit.proof import verify_consistency
from audit.tables import AuditTables

SEQUENCER_LOCK = 0x646F7373  # "doss": PostgreSQL advisory lock key
BATCH = 5000


class SqlNodeStore:
    """NodeStore over audit_nodes, batching reads in one round trip."""

    def __init__(self, session: Session, tables: AuditTables) -> None:
        self.session = session
        self.t = tables.nodes

    def get(self, level: int, index: int) -> bytes | None:
        return self.session.execute(select(self.t.c.hash).where(
            self.t.c.level == level, self.t.c.node_index == index)).scalar_one_or_none()

    def get_many(self, ids: Sequence[NodeID]) -> Mapping[NodeID, bytes]:
        if not ids:
            return {}
        rows = self.session.execute(select(self.t.c.level, self.t.c.node_index, self.t.c.hash)
                                    .where(tuple_(self.t.c.level, self.t.c.node_index)
                                           .in_(list(ids)))).all()
        return {(r.level, r.node_index): bytes(r.hash) for r in rows}


@dataclass(frozen=True)
class LogState:
    size: int
    last_chain: bytes


class AuditStore:
    def __init__(self, tables: AuditTables, origin: str) -> None:
        self.t = tables
        self.origin = origin

    def adopt_origin(self, session: Session) -> str:
        """Keep the origin of the log's existing heads: a log keeps its name even when the
        service's public address changes (a new origin would break verification)."""
        row = self.latest_head_row(session)
        if row is not None:
            self.origin = Checkpoint.parse(row.checkpoint).origin
        return self.origin

    # ------------------------------------------------------------------ append
    def append(self, session: Session, record: dict[str, Any], *, recorded_at: datetime,
               patient_id: str | None, agent: str | None) -> None:
        """Insert one record in the caller's transaction (the request's)."""
        session.execute(insert(self.t.records).values(
            id=record["id"], recorded_at=recorded_at, patient_id=patient_id, agent=agent,
            action=record["action"], outcome=record["outcome"], record=record))

    def append_many(self, session: Session,
                    records: Sequence[tuple[dict[str, Any], str | None, str | None]], *,
                    recorded_at: datetime) -> None:
        """Insert (record, patient_id, agent) rows in one multi-row INSERT."""
        if not records:
            return
        session.execute(insert(self.t.records), [{
            "id": record["id"], "recorded_at": recorded_at, "patient_id": patient_id,
            "agent": agent, "action": record["action"], "outcome": record["outcome"],
            "record": record} for record, patient_id, agent in records])

    # ------------------------------------------------------------------ sequencer
    def state(self, session: Session) -> LogState:
        size = session.execute(select(func.count()).select_from(self.t.leaves)).scalar_one()
        if size == 0:
            return LogState(0, GENESIS)
        last = session.execute(select(self.t.leaves.c.chain_hash).where(
            self.t.leaves.c.leaf_index == size - 1)).scalar_one()
        return LogState(int(size), bytes(last))

    def integrate(self, session: Session, signer: Signer, now: datetime) -> int:
        """Sequence pending records and sign a new head; returns the new tree size.
        Run inside a transaction; one sequencer at a time."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK})
        state = self.state(session)
        leaves = self.t.leaves
        pending = session.execute(
            select(self.t.records.c.id, self.t.records.c.record)
            .where(~self.t.records.c.id.in_(select(leaves.c.record_id)))
            .order_by(self.t.records.c.seq).limit(BATCH)).all()
        head = self.latest_head_row(session)
        if not pending and head is not None and head.tree_size == state.size:
            return state.size
        store = SqlNodeStore(session, self.t)
        compact = CompactRange.from_store(store, state.size)
        chain = state.last_chain
        leaf_rows, node_rows = [], []
        for offset, row in enumerate(pending):
            lh = leaf_hash(canonical_bytes(row.record))
            chain = chain_hash_from_leaf_hash(chain, lh)
            leaf_rows.append({"leaf_index": state.size + offset, "record_id": row.id,
                              "leaf_hash": lh, "chain_hash": chain})
            node_rows += [{"level": lv, "node_index": ix, "hash": h}
                          for lv, ix, h in compact.append(lh)]
        if leaf_rows:
            session.execute(insert(leaves), leaf_rows)
        if node_rows:
            session.execute(insert(self.t.nodes), node_rows)
        size = state.size + len(leaf_rows)
        new_root = compact.root() if size else EMPTY_ROOT
        self._sign(session, signer, size, new_root, now)
        return size

    def _sign(self, session: Session, signer: Signer, size: int, root_hash: bytes,
              now: datetime) -> None:
        exists = session.execute(select(self.t.tree_heads.c.tree_size).where(
            self.t.tree_heads.c.tree_size == size)).first()
        if exists:
            return
        head = tree_head_json(Checkpoint(self.origin, size, root_hash), signer, now)
        from audit.canonical import b64decode

        session.execute(insert(self.t.tree_heads).values(
            tree_size=size, root_hash=root_hash, signed_at=now,
            checkpoint=head["checkpoint"], signature=b64decode(head["signature"])))

    # ------------------------------------------------------------------ reads
    def latest_head_row(self, session: Session) -> Any:
        return session.execute(select(self.t.tree_heads).order_by(
            self.t.tree_heads.c.tree_size.desc()).limit(1)).first()

    def tree_head(self, session: Session) -> TreeHeadJSON | None:
        row = self.latest_head_row(session)
        return None if row is None else head_json(row)

    def index_of(self, session: Session, record_ids: Sequence[str]) -> dict[str, int]:
        if not record_ids:
            return {}
        rows = session.execute(select(self.t.leaves.c.record_id, self.t.leaves.c.leaf_index)
                               .where(self.t.leaves.c.record_id.in_(list(record_ids)))).all()
        return {r.record_id: int(r.leaf_index) for r in rows}

    def record_at(self, session: Session, index: int) -> Any:
        """(id, patient_id) of the record at leaf `index`, or None."""
        return session.execute(
            select(self.t.records.c.id, self.t.records.c.patient_id)
            .join(self.t.leaves, self.t.leaves.c.record_id == self.t.records.c.id)
            .where(self.t.leaves.c.leaf_index == index)).first()

    def leaf_bytes(self, session: Session, index: int) -> bytes | None:
        row = session.execute(select(self.t.records.c.record).join(
            self.t.leaves, self.t.leaves.c.record_id == self.t.records.c.id).where(
            self.t.leaves.c.leaf_index == index)).first()
        return None if row is None else canonical_bytes(row.record)

    def inclusion(self, session: Session, index: int, size: int) -> list[bytes]:
        return inclusion_proof(SqlNodeStore(session, self.t), index, size)

    def consistency(self, session: Session, first: int, second: int) -> list[bytes]:
        return consistency_proof(SqlNodeStore(session, self.t), first, second)

    def root_at(self, session: Session, size: int) -> bytes:
        return root(SqlNodeStore(session, self.t), size)

    def signed_size(self, session: Session) -> int:
        row = self.latest_head_row(session)
        return 0 if row is None else int(row.tree_size)

    # ------------------------------------------------------------------ verify
    def iter_leaves(self, session: Session) -> Iterator[tuple[int, dict[str, Any], bytes,
                                                               bytes]]:
        """(index, record, stored leaf hash, stored chain hash) in log order, streamed."""
        stmt = (select(self.t.leaves.c.leaf_index, self.t.records.c.record,
                       self.t.leaves.c.leaf_hash, self.t.leaves.c.chain_hash)
                .join(self.t.records, self.t.records.c.id == self.t.leaves.c.record_id,
                      isouter=True)
                .order_by(self.t.leaves.c.leaf_index)
                .execution_options(yield_per=2000))
        for row in session.execute(stmt):
            yield (int(row.leaf_index), row.record, bytes(row.leaf_hash),
                   bytes(row.chain_hash))

    def verify(self, session: Session, public_jwk: Mapping[str, Any]) -> VerifyResult:
        """Re-check chain, leaves, Merkle nodes, every signed head and their consistency.
        Names the first bad leaf index, or the bad tree head."""
        from audit.checkpoint import verify_tree_head
        from audit.errors import AuditError

        chain = GENESIS
        compact = CompactRange()
        roots: dict[int, bytes] = {0: EMPTY_ROOT}
        heads = {int(r.tree_size): r for r in session.execute(select(self.t.tree_heads))}
        store = SqlNodeStore(session, self.t)
        expected: list[tuple[int, int, bytes]] = []
        position = 0
        for index, record, stored_leaf, stored_chain in self.iter_leaves(session):
            if index != position or record is None:
                return VerifyResult(False, position, "record missing or out of order")
            lh = leaf_hash(canonical_bytes(record))
            if lh != stored_leaf:
                return VerifyResult(False, index, "record changed after it was logged")
            chain = chain_hash_from_leaf_hash(chain, lh)
            if chain != stored_chain:
                return VerifyResult(False, index, "hash chain broken")
            expected += compact.append(lh)
            position += 1
            if position in heads:
                roots[position] = compact.root()
            if len(expected) >= 4000:
                bad = _first_bad_node(store, expected)
                if bad is not None:
                    return VerifyResult(False, bad, "stored Merkle node altered")
                expected = []
        bad = _first_bad_node(store, expected)
        if bad is not None:
            return VerifyResult(False, bad, "stored Merkle node altered")
        sequenced = position  # records never sequenced yet are fine; gaps are not
        previous: tuple[int, bytes] | None = None
        origin: str | None = None
        for size in sorted(heads):
            row = heads[size]
            if size > sequenced:
                return VerifyResult(False, sequenced, "tree head larger than the log")
            try:
                checkpoint = verify_tree_head(head_json(row), public_jwk, origin=origin)
            except AuditError:
                return VerifyResult(False, max(size - 1, 0), "tree head signature invalid")
            origin = checkpoint.origin  # every head must name the same log
            if bytes(row.root_hash) != roots.get(size):
                return VerifyResult(False, max(size - 1, 0), "tree head root mismatch")
            if previous is not None and previous[0] > 0:
                proof = consistency_proof(store, previous[0], size)
                try:
                    verify_consistency(previous[0], size, previous[1], roots[size], proof)
                except AuditError:
                    return VerifyResult(False, previous[0], "tree heads inconsistent")
            previous = (size, roots[size])
        return VerifyResult(True, None, f"{sequenced} records intact")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_index: int | None
    detail: str


def head_json(row: Any) -> TreeHeadJSON:
    from audit.canonical import b64encode
    from audit.checkpoint import rfc3339_utc

    return {"tree_size": int(row.tree_size), "root_hash": b64encode(bytes(row.root_hash)),
            "timestamp": rfc3339_utc(row.signed_at), "checkpoint": row.checkpoint,
            "signature": b64encode(bytes(row.signature))}


def _first_bad_node(store: SqlNodeStore, expected: list[tuple[int, int, bytes]]) -> int | None:
    """The first leaf covered by a stored node that differs from the recomputed one."""
    stored = store.get_many([(lv, ix) for lv, ix, _ in expected])
    bad = [ix << lv for lv, ix, h in expected if stored.get((lv, ix)) != h]
    return min(bad) if bad else None
