"""The audit log on the database: append a record in the request's transaction; the
sequencer integrates records into the chain and the Merkle tree and signs a tree head;
proofs read O(log n) stored nodes; verify re-checks everything.

Design (Trillian-style): requests only INSERT into audit_records, so they never queue on
a shared chain head. The sequencer, one at a time (a PostgreSQL advisory lock, or SQLite's
write lock), gives new records the next leaf indexes, extends the hash chain, stores the
new perfect Merkle nodes and signs a checkpoint.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text
from sqlalchemy.orm import Session

from audit.authentication import RecordAuthenticator
from audit.canonical import canonical_bytes
from audit.chain import GENESIS, chain_hash_from_leaf_hash
from audit.checkpoint import Checkpoint, Signer, TreeHeadJSON, tree_head_json
from audit.hashing import EMPTY_ROOT, leaf_hash
from audit.merkle import CompactRange, NodeID, consistency_proof, inclusion_proof, root
from audit.proof import verify_consistency
from audit.tables import AuditTables

SEQUENCER_LOCK = 0x646F7373  # "doss": PostgreSQL advisory lock key
BATCH = 5000
VERIFY_BATCH = 5000
LOOKAHEAD = 20_000
NODE_CHECK_BATCH = 65536


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
        # (level = ? AND node_index = ?) OR …: a primary-key lookup per node on both
        # databases (SQLite scans the whole table for a row-value IN list)
        c = self.t.c
        rows = self.session.execute(select(c.level, c.node_index, c.hash).where(or_(
            *(and_(c.level == lv, c.node_index == ix) for lv, ix in set(ids))))).all()
        return {(r.level, r.node_index): bytes(r.hash) for r in rows}


@dataclass(frozen=True)
class LogState:
    size: int
    last_chain: bytes


class AuditStore:
    def __init__(self, tables: AuditTables, origin: str,
                 authenticator: RecordAuthenticator | None = None) -> None:
        self.t = tables
        self.origin = origin
        # None only for tools that read the log without the key (never the service)
        self.authenticator = authenticator

    def _row(self, record: dict[str, Any], patient_id: str | None, agent: str | None,
             recorded_at: datetime) -> dict[str, Any]:
        leaf = canonical_bytes(record)
        mac = self.authenticator.mac(leaf) if self.authenticator is not None else None
        return {"id": record["id"], "recorded_at": recorded_at, "patient_id": patient_id,
                "agent": agent, "action": record["action"], "outcome": record["outcome"],
                "record": record, "leaf": leaf, "mac": mac}

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
            self._row(record, patient_id, agent, recorded_at)))

    def append_many(self, session: Session,
                    records: Sequence[tuple[dict[str, Any], str | None, str | None]], *,
                    recorded_at: datetime) -> None:
        """Insert (record, patient_id, agent) rows in one multi-row INSERT."""
        if not records:
            return
        session.execute(insert(self.t.records), [
            self._row(record, patient_id, agent, recorded_at)
            for record, patient_id, agent in records])

    # ------------------------------------------------------------------ sequencer
    def state(self, session: Session) -> LogState:
        """Size and last chain hash, from the newest leaf (one primary-key lookup)."""
        last = session.execute(select(self.t.leaves.c.leaf_index, self.t.leaves.c.chain_hash)
                               .order_by(self.t.leaves.c.leaf_index.desc()).limit(1)).first()
        if last is None:
            return LogState(0, GENESIS)
        return LogState(int(last.leaf_index) + 1, bytes(last.chain_hash))

    def integrate(self, session: Session, signer: Signer, now: datetime) -> int:
        """Sequence pending records and sign a new head; returns the new tree size.
        Run inside a transaction; one sequencer at a time."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK})
        state = self.state(session)
        leaves = self.t.leaves
        queue = self.t.pending
        pending = session.execute(
            select(self.t.records.c.seq, self.t.records.c.id, self.t.records.c.leaf)
            .join(queue, queue.c.seq == self.t.records.c.seq)
            .order_by(queue.c.seq).limit(BATCH)).all()
        head = self.latest_head_row(session)
        if not pending and head is not None and head.tree_size == state.size:
            return state.size
        store = SqlNodeStore(session, self.t)
        compact = CompactRange.from_store(store, state.size)
        chain = state.last_chain
        leaf_rows, node_rows = [], []
        for offset, row in enumerate(pending):
            leaf = bytes(row.leaf) if row.leaf is not None else self._legacy_leaf(
                session, row.id)
            lh = leaf_hash(leaf)
            chain = chain_hash_from_leaf_hash(chain, lh)
            leaf_rows.append({"leaf_index": state.size + offset, "record_id": row.id,
                              "leaf_hash": lh, "chain_hash": chain})
            node_rows += [{"level": lv, "node_index": ix, "hash": h}
                          for lv, ix, h in compact.append(lh)]
        if leaf_rows:
            session.execute(insert(leaves), leaf_rows)
            session.execute(delete(queue).where(queue.c.seq.in_([r.seq for r in pending])))
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
        row = session.execute(select(self.t.records.c.id, self.t.records.c.leaf).join(
            self.t.leaves, self.t.leaves.c.record_id == self.t.records.c.id).where(
            self.t.leaves.c.leaf_index == index)).first()
        if row is None:
            return None
        return bytes(row.leaf) if row.leaf is not None else self._legacy_leaf(session, row.id)

    def _legacy_leaf(self, session: Session, record_id: str) -> bytes:
        """A record written before migration 0015: its leaf is its canonical JSON."""
        record = session.execute(select(self.t.records.c.record).where(
            self.t.records.c.id == record_id)).scalar_one()
        return canonical_bytes(record)

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
    def iter_leaves(self, session: Session) -> Generator[tuple[Any, ...], None, None]:
        """(leaf_index, leaf_hash, chain_hash, id, leaf, mac) in log order, streamed; `id`
        is None when the record is gone, `leaf` None for a record older than 0015.

        Two ordered streams merged in memory — leaves by index, records by insertion —
        instead of one index lookup per leaf: records are sequenced in insertion order,
        save a few late commits on PostgreSQL, which the look-ahead buffer absorbs."""
        L, R = self.t.leaves.c, self.t.records.c
        conn = session.connection().execution_options(yield_per=VERIFY_BATCH)
        leaves = conn.execute(select(L.leaf_index, L.leaf_hash, L.chain_hash, L.record_id)
                              .order_by(L.leaf_index))
        stream = conn.execute(select(R.id, R.leaf, R.mac).order_by(R.seq))
        try:
            yield from self._merge(session, leaves, iter(stream))
        finally:  # server-side cursors on PostgreSQL: close them even on an early stop
            stream.close()
            leaves.close()

    def _merge(self, session: Session, leaves: Any,
               records: Iterator[Any]) -> Iterator[tuple[Any, ...]]:
        R = self.t.records.c
        ahead: dict[str, tuple[Any, Any]] = {}
        for index, stored_leaf, stored_chain, rid in leaves:
            found = ahead.pop(rid, None)
            if found is None:
                for r_id, leaf, mac in records:
                    if r_id == rid:
                        found = (leaf, mac)
                        break
                    ahead[r_id] = (leaf, mac)
                    if len(ahead) > LOOKAHEAD:
                        break
            if found is None:  # far out of order, or gone: look it up
                row = session.execute(select(R.leaf, R.mac).where(R.id == rid)).first()
                if row is None:
                    yield index, stored_leaf, stored_chain, None, None, None
                    continue
                found = (row.leaf, row.mac)
            yield index, stored_leaf, stored_chain, rid, found[0], found[1]

    def verify(self, session: Session, public_jwk: Mapping[str, Any], *,
               trusted: Checkpoint | None = None) -> VerifyResult:
        """Re-check every record's MAC, the chain, the Merkle nodes, every signed head and
        their consistency, in one pass over the stored leaf bytes. With `trusted` (a head
        published earlier, e.g. by a witness) also check that this log extends it (RFC 9162
        consistency proof): a truncated or forked log fails. Names the first bad index."""
        heads = {int(r.tree_size): r for r in session.execute(select(self.t.tree_heads))}
        wanted = set(heads) | ({trusted.tree_size} if trusted is not None else set())
        roots: dict[int, bytes] = {0: EMPTY_ROOT}
        store = SqlNodeStore(session, self.t)
        with closing(self.iter_leaves(session)) as stream:
            result = self._walk(session, stream, wanted, roots, store)
        if isinstance(result, VerifyResult):
            return result
        t = self.t
        hidden = session.execute(select(  # one statement: one snapshot on both databases
            select(func.count()).select_from(t.records).scalar_subquery()
            - select(func.count()).select_from(t.leaves).scalar_subquery()
            - select(func.count()).select_from(t.pending).scalar_subquery())).scalar_one()
        if hidden:
            return VerifyResult(False, result, f"{hidden} records neither in the log nor "
                                "waiting for the sequencer (hidden from it)")
        return self._check_heads(public_jwk, heads, roots, store, result, trusted)

    def _walk(self, session: Session, stream: Iterator[tuple[Any, ...]], wanted: set[int],
              roots: dict[int, bytes], store: SqlNodeStore) -> VerifyResult | int:
        """Every record, leaf and node in one pass; the log's size, or the first fault."""
        auth = self.authenticator
        chain = GENESIS
        compact = CompactRange()
        expected: list[tuple[int, int, bytes]] = []
        seen_macs: set[bytes] = set()
        authenticated = False
        position = 0
        for index, stored_leaf, stored_chain, rid, leaf, mac in stream:
            if index != position or rid is None:
                return VerifyResult(False, position, "record missing or out of order")
            if leaf is None:  # written before records were authenticated (0015)
                if authenticated or mac is not None:
                    return VerifyResult(False, index, "record not written by the service "
                                        "(no authentication code)")
                lh = leaf_hash(self._legacy_leaf(session, rid))
            else:
                lh = leaf_hash(leaf)
                if auth is not None:
                    if not auth.check_hash(lh, mac):
                        return VerifyResult(False, index, "record not written by the "
                                            "service (authentication code invalid)")
                    if mac in seen_macs:
                        return VerifyResult(False, index, "record replayed (logged twice)")
                    seen_macs.add(mac)
                    authenticated = True
            if lh != stored_leaf:
                return VerifyResult(False, index, "record changed after it was logged")
            chain = chain_hash_from_leaf_hash(chain, lh)
            if chain != stored_chain:
                return VerifyResult(False, index, "hash chain broken")
            expected += compact.append(lh)
            position += 1
            if position in wanted:
                roots[position] = compact.root()
            if len(expected) >= NODE_CHECK_BATCH:
                bad = _first_bad_node(store, expected)
                if bad is not None:
                    return VerifyResult(False, bad, "stored Merkle node altered")
                expected = []
        bad = _first_bad_node(store, expected)
        if bad is not None:
            return VerifyResult(False, bad, "stored Merkle node altered")
        return position  # records never sequenced yet are fine; gaps are not

    def _check_heads(self, public_jwk: Mapping[str, Any], heads: Mapping[int, Any],
                     roots: dict[int, bytes], store: SqlNodeStore, sequenced: int,
                     trusted: Checkpoint | None) -> VerifyResult:
        """Every signed head: signature, one origin, root, consistency with the previous;
        then, with `trusted`, that the log extends it."""
        from audit.checkpoint import verify_tree_head
        from audit.errors import AuditError

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
        if trusted is not None:
            problem = self._extends(store, trusted, origin, previous, sequenced, roots)
            if problem is not None:
                return problem
        return VerifyResult(True, None, f"{sequenced} records intact" + (
            f", consistent with the published head of size {trusted.tree_size}"
            if trusted is not None else ""))

    @staticmethod
    def _extends(store: SqlNodeStore, trusted: Checkpoint, origin: str | None,
                 latest: tuple[int, bytes] | None, sequenced: int,
                 roots: Mapping[int, bytes]) -> VerifyResult | None:
        """Does the latest signed head extend a head published earlier?"""
        from audit.errors import AuditError

        if origin is not None and trusted.origin != origin:
            return VerifyResult(False, None, "the published head is of another log")
        size = latest[0] if latest is not None else 0
        if trusted.tree_size > min(sequenced, size):
            return VerifyResult(False, min(sequenced, size), (
                f"log truncated: a head of size {trusted.tree_size} was published, "
                f"the log now signs only {size} records"))
        assert latest is not None
        try:
            proof = consistency_proof(store, trusted.tree_size, size)
            verify_consistency(trusted.tree_size, size, trusted.root_hash, latest[1], proof)
        except AuditError:
            return VerifyResult(False, max(trusted.tree_size - 1, 0), (
                f"fork: the log does not extend the published head of size "
                f"{trusted.tree_size}"))
        if roots.get(trusted.tree_size) != trusted.root_hash:  # belt and braces
            return VerifyResult(False, max(trusted.tree_size - 1, 0), "fork: root differs "
                                "from the published head")
        return None


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
    """The first leaf covered by a stored node that differs from the recomputed one. Reads
    each level's run of nodes with one range scan of the primary key."""
    by_level: dict[int, dict[int, bytes]] = {}
    for lv, ix, h in expected:
        by_level.setdefault(lv, {})[ix] = h
    t = store.t
    bad: list[int] = []
    for lv, wanted in by_level.items():
        low, high = min(wanted), max(wanted)
        rows = store.session.execute(select(t.c.node_index, t.c.hash).where(
            t.c.level == lv, t.c.node_index >= low, t.c.node_index <= high))
        seen = 0
        for ix, h in rows:
            want = wanted.get(ix)
            if want is not None:
                seen += 1
                if bytes(h) != want:
                    bad.append(ix << lv)
        if seen != len(wanted):  # a node deleted: find which
            present = {int(r[0]) for r in store.session.execute(select(t.c.node_index).where(
                t.c.level == lv, t.c.node_index >= low, t.c.node_index <= high))}
            bad += [ix << lv for ix in wanted if ix not in present]
    return min(bad) if bad else None
