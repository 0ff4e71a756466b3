"""The audit log on the database: append a record in the request's transaction; the
sequencer integrates records into the chain and the Merkle tree and signs a tree head;
proofs read O(log n) stored nodes; verify re-checks everything.

Design (Trillian-style): requests only INSERT into audit_records, so they never queue on
a shared chain head. The sequencer, one at a time (a PostgreSQL advisory lock, or SQLite's
write lock), gives new records the next leaf indexes, extends the hash chain, stores the
new perfect Merkle nodes and signs a checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Integer, and_, bindparam, delete, func, insert, literal, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from audit.authentication import MAC_SIZE, RecordAuthenticator
from audit.canonical import canonical_bytes
from audit.chain import GENESIS, chain_hash_from_leaf_hash
from audit.checkpoint import Checkpoint, Signer, TreeHeadJSON, tree_head_json
from audit.hashing import EMPTY_ROOT, leaf_hash
from audit.merkle import (
    BLOCK_LEVEL,
    BandedNodeStore,
    Block,
    CompactRange,
    NodeID,
    NodeRange,
    StreamingTree,
    consistency_proof,
    hash_block,
    inclusion_proof,
    is_stored_level,
    root,
)
from audit.proof import verify_consistency
from audit.tables import AuditTables
from audit.tx import Tx, among, insert_many

SEQUENCER_LOCK = 0x646F7373  # "doss": PostgreSQL advisory lock key
BATCH = 5000
VERIFY_BLOCK = 1 << BLOCK_LEVEL  # leaves checked per batch (aligned: StreamingTree blocks)
RECORD_FETCH = 8192
PG_FETCH = 16_384  # rows per FETCH of a server-side cursor
LOOKAHEAD = 20_000
PARALLEL_FROM = 262_144  # leaves: below this, verify runs in one process (workers start in
# about half a second)


class SqlRangeStore:
    """The stored levels on the database: level 0 is audit_leaves.leaf_hash, the levels
    above (multiples of ``audit.merkle.STRIDE``) are audit_nodes. All ranges of one call
    are read with one statement (a UNION ALL of primary-key range scans), built once per
    shape and cached, so a proof costs one round trip and no statement construction."""

    _statements: ClassVar[dict[tuple[Any, int, int], Any]] = {}

    def __init__(self, session: Tx, tables: AuditTables) -> None:
        self.session = session
        self.tables = tables

    def _statement(self, leaf_ranges: int, node_ranges: int) -> Any:
        key = (self.tables, leaf_ranges, node_ranges)
        stmt = self._statements.get(key)
        if stmt is None:
            L, N = self.tables.leaves.c, self.tables.nodes.c
            parts: list[Select[Any]] = []
            if leaf_ranges:
                parts.append(select(literal(0, Integer).label("level"), L.leaf_index,
                                    L.leaf_hash).where(or_(*(
                                        L.leaf_index.between(bindparam(f"la{k}"),
                                                             bindparam(f"lb{k}"))
                                        for k in range(leaf_ranges)))))
            if node_ranges:
                parts.append(select(N.level, N.node_index, N.hash).where(or_(*(
                    and_(N.level == bindparam(f"nl{k}"),
                         N.node_index.between(bindparam(f"na{k}"), bindparam(f"nb{k}")))
                    for k in range(node_ranges)))))
            stmt = parts[0] if len(parts) == 1 else parts[0].union_all(parts[1])
            self._statements[key] = stmt
        return stmt

    def get_ranges(self, ranges: Sequence[NodeRange]) -> Mapping[NodeID, bytes]:
        if not ranges:
            return {}
        params: dict[str, int] = {}
        leaf_ranges = node_ranges = 0
        for level, start, end in ranges:
            if level == 0:
                params[f"la{leaf_ranges}"], params[f"lb{leaf_ranges}"] = start, end - 1
                leaf_ranges += 1
            else:
                params[f"nl{node_ranges}"] = level
                params[f"na{node_ranges}"], params[f"nb{node_ranges}"] = start, end - 1
                node_ranges += 1
        rows = self.session.execute(self._statement(leaf_ranges, node_ranges), params)
        return {(int(level), int(index)): bytes(value) for level, index, value in rows}


class SqlNodeStore(BandedNodeStore):
    """NodeStore over the stored levels (audit_leaves and audit_nodes), one statement per
    call."""

    def __init__(self, session: Tx, tables: AuditTables) -> None:
        super().__init__(SqlRangeStore(session, tables))
        self.session = session
        self.t = tables.nodes


@dataclass(frozen=True)
class LogState:
    size: int
    last_chain: bytes


class AuditStore:
    def __init__(self, tables: AuditTables, origin: str,
                 authenticator: RecordAuthenticator | None = None) -> None:
        self.t = tables
        self._insert_records = insert(tables.records)  # built once: every request appends
        self._record_at: Any = None
        self._signed_size: Any = None
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

    def adopt_origin(self, session: Tx) -> str:
        """Keep the origin of the log's existing heads: a log keeps its name even when the
        service's public address changes (a new origin would break verification)."""
        row = self.latest_head_row(session)
        if row is not None:
            self.origin = Checkpoint.parse(row.checkpoint).origin
        return self.origin

    # ------------------------------------------------------------------ append
    def append(self, session: Tx, record: dict[str, Any], *, recorded_at: datetime,
               patient_id: str | None, agent: str | None) -> None:
        """Insert one record in the caller's transaction (the request's)."""
        session.execute(insert(self.t.records).values(
            self._row(record, patient_id, agent, recorded_at)))

    def append_many(self, session: Tx,
                    records: Sequence[tuple[dict[str, Any], str | None, str | None]], *,
                    recorded_at: datetime) -> None:
        """Insert (record, patient_id, agent) rows in one multi-row INSERT."""
        if records:
            self.insert_rows(session, self.rows(records, recorded_at=recorded_at))

    def insert_rows(self, session: Tx, rows: list[dict[str, Any]]) -> None:
        """Insert rows made by `rows` in one multi-row INSERT."""
        # Core on the transaction's connection (the ORM session adds only bookkeeping)
        session.connection().execute(self._insert_records, rows)

    def rows(self, records: Sequence[tuple[dict[str, Any], str | None, str | None]], *,
             recorded_at: datetime) -> list[dict[str, Any]]:
        """The table rows `append_many` inserts (leaf bytes and MAC computed here), for a
        caller that inserts them in a statement of its own."""
        return [self._row(record, patient_id, agent, recorded_at)
                for record, patient_id, agent in records]

    # ------------------------------------------------------------------ sequencer
    def state(self, session: Tx) -> LogState:
        """Size and last chain hash, from the newest leaf (one primary-key lookup)."""
        last = session.execute(select(self.t.leaves.c.leaf_index, self.t.leaves.c.chain_hash)
                               .order_by(self.t.leaves.c.leaf_index.desc()).limit(1)).first()
        if last is None:
            return LogState(0, GENESIS)
        return LogState(int(last.leaf_index) + 1, bytes(last.chain_hash))

    def integrate(self, session: Tx, signer: Signer, now: datetime) -> int:
        """Sequence pending records and sign a new head; returns the new tree size.
        Run inside a transaction; one sequencer at a time."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK})
        state = self.state(session)
        leaves = self.t.leaves
        waiting = self.t.pending
        R = self.t.records.c
        # the queue first, then its records by primary key: a join lets PostgreSQL's
        # planner, misled by a queue table that empties and refills, merge-join through
        # the whole log's index (1.5 s a tick at 1,000,000 records, measured)
        seqs = list(session.execute(select(waiting.c.seq).order_by(waiting.c.seq)
                                    .limit(BATCH)).scalars())
        pending = session.execute(select(R.seq, R.id, R.leaf).where(among(session, R.seq, seqs))
                                  .order_by(R.seq)).all() if seqs else []
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
            # level 0 is the leaf row itself; above it, only the stored levels
            node_rows += [{"level": lv, "node_index": ix, "hash": h}
                          for lv, ix, h in compact.append(lh) if lv and is_stored_level(lv)]
        if leaf_rows:
            insert_many(session, leaves, leaf_rows)
            session.execute(delete(waiting).where(
                among(session, waiting.c.seq, [r.seq for r in pending])))
        if node_rows:
            insert_many(session, self.t.nodes, node_rows)
        size = state.size + len(leaf_rows)
        new_root = compact.root() if size else EMPTY_ROOT
        self._sign(session, signer, size, new_root, now)
        return size

    def _sign(self, session: Tx, signer: Signer, size: int, root_hash: bytes,
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
    def latest_head_row(self, session: Tx) -> Any:
        return session.execute(select(self.t.tree_heads).order_by(
            self.t.tree_heads.c.tree_size.desc()).limit(1)).first()

    def tree_head(self, session: Tx) -> TreeHeadJSON | None:
        row = self.latest_head_row(session)
        return None if row is None else head_json(row)

    def index_of(self, session: Tx, record_ids: Sequence[str]) -> dict[str, int]:
        if not record_ids:
            return {}
        rows = session.execute(select(self.t.leaves.c.record_id, self.t.leaves.c.leaf_index)
                               .where(among(session, self.t.leaves.c.record_id, record_ids))).all()
        return {r.record_id: int(r.leaf_index) for r in rows}

    def record_at(self, session: Tx, index: int) -> Any:
        """(id, patient_id, leaf) of the record at leaf `index`, or None: what a proof
        needs of the record, in one statement built once."""
        if self._record_at is None:
            R, L = self.t.records.c, self.t.leaves.c
            self._record_at = select(R.id, R.patient_id, R.leaf).join(
                self.t.leaves, L.record_id == R.id).where(L.leaf_index == bindparam("i"))
        return session.execute(self._record_at, {"i": index}).first()

    def leaf_bytes(self, session: Tx, index: int) -> bytes | None:
        return self.leaf_of(session, self.record_at(session, index))

    def leaf_of(self, session: Tx, row: Any) -> bytes | None:
        """The leaf bytes of a `record_at` row."""
        if row is None:
            return None
        return bytes(row.leaf) if row.leaf is not None else self._legacy_leaf(session, row.id)

    def _legacy_leaf(self, session: Tx, record_id: str) -> bytes:
        """A record written before migration 0015: its leaf is its canonical JSON."""
        record = session.execute(select(self.t.records.c.record).where(
            self.t.records.c.id == record_id)).scalar_one()
        return canonical_bytes(record)

    def inclusion(self, session: Tx, index: int, size: int) -> list[bytes]:
        return inclusion_proof(SqlNodeStore(session, self.t), index, size)

    def consistency(self, session: Tx, first: int, second: int) -> list[bytes]:
        return consistency_proof(SqlNodeStore(session, self.t), first, second)

    def root_at(self, session: Tx, size: int) -> bytes:
        return root(SqlNodeStore(session, self.t), size)

    def signed_size(self, session: Tx) -> int:
        if self._signed_size is None:
            self._signed_size = select(func.max(self.t.tree_heads.c.tree_size))
        size = session.execute(self._signed_size).scalar()
        return 0 if size is None else int(size)

    # ------------------------------------------------------------------ verify
    def verify(self, session: Tx, public_jwk: Mapping[str, Any], *,
               trusted: Checkpoint | None = None, jobs: int = 1,
               parallel_from: int = PARALLEL_FROM) -> VerifyResult:
        """Re-check every record's MAC, the chain, the stored Merkle nodes and every signed
        head (signature, one origin, root), in one pass over the stored leaf bytes. With
        `trusted` (a head published earlier, e.g. by a witness) also check that this log
        extends it (RFC 9162 consistency proof): a truncated or forked log fails. Names
        the first bad index.

        Reads the driver's rows directly (server-side cursors on PostgreSQL), a block of
        4,096 leaves at a time; each block is checked with whole-list comparisons and
        hashed a Merkle level at a time, and only a block with a fault is walked record
        by record to name it. With `jobs` > 1 and at least `parallel_from` leaves, the
        log is cut into `jobs` ranges of whole blocks and all but the first are checked
        by worker processes, each on its own connection; their results are joined here
        (chain and replays across the cuts, Merkle blocks in order). Needs a database
        other processes can open (not SQLite in memory) and committed data."""
        H, L = self.t.tree_heads.c, self.t.leaves.c
        with _Rows(session, select(H.tree_size, H.root_hash, H.checkpoint, H.signature)
                   .order_by(H.tree_size), "audit_verify_heads") as rows:
            heads = [row for batch in iter(lambda: rows.fetch(10_000), []) for row in batch]
        wanted = sorted({int(h[0]) for h in heads}
                        | ({trusted.tree_size} if trusted is not None else set()))
        origin = _origin(heads[0][2]) if heads else None
        ranges: list[tuple[int, int | None]] = [(0, None)]
        url = session.connection().engine.url
        if jobs > 1 and url.database not in (None, "", ":memory:"):
            last = session.execute(select(func.max(L.leaf_index))).scalar()
            size = 0 if last is None else int(last) + 1
            if size >= max(parallel_from, 2 * VERIFY_BLOCK):
                step = -(-size // jobs // VERIFY_BLOCK) * VERIFY_BLOCK
                cuts = [*range(0, size, step), size]
                ranges = [(cuts[k], cuts[k + 1]) for k in range(len(cuts) - 1)]
        tree = StreamingTree()
        roots: dict[int, bytes] = {0: EMPTY_ROOT}
        with contextlib.ExitStack() as stack:
            futures = []
            if len(ranges) > 1:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                pool = stack.enter_context(ProcessPoolExecutor(
                    len(ranges) - 1, mp_context=multiprocessing.get_context("spawn")))
                target = url.render_as_string(hide_password=False)
                futures = [pool.submit(_verify_range, _RangeSpec(
                    target, start, int(stop or 0),
                    [w for w in wanted if start < w <= (stop or 0)], self.authenticator,
                    dict(public_jwk), origin)) for start, stop in ranges[1:]]
            walk = _Walk(self, session, wanted, stop=ranges[0][1],
                         sink=lambda block: roots.update(tree.add_block(block)))
            fault = walk.run()
            theirs: list[int | None] = []
            if fault is None:
                # the heads no worker checks: up to the first cut, and beyond the log
                mine = _first_bad_signature(public_jwk, (
                    h for h in heads if not any(start < h[0] <= (stop or 0)
                                                for start, stop in ranges[1:])), origin)
                for future in futures:
                    part = future.result()
                    theirs.append(part.bad_signature)
                    fault = self._join(walk, part, tree, roots)
                    if fault is not None:
                        break
            if fault is not None:
                for future in futures:
                    future.cancel()
        if fault is None:
            bad = _first_bad_node(session, self.t, tree)
            if bad is not None:
                return VerifyResult(False, bad, "stored Merkle node altered")
        else:
            bad = _first_bad_node(session, self.t, tree)  # stored nodes over earlier leaves
            if bad is not None and (fault.first_bad_index is None
                                    or bad < fault.first_bad_index):
                return VerifyResult(False, bad, "stored Merkle node altered")
            return fault
        t = self.t
        hidden = session.execute(select(  # one statement: one snapshot on both databases
            select(func.count()).select_from(t.records).scalar_subquery()
            - select(func.count()).select_from(t.leaves).scalar_subquery()
            - select(func.count()).select_from(t.pending).scalar_subquery())).scalar_one()
        if hidden:
            return VerifyResult(False, tree.size, f"{hidden} records neither in the log "
                                "nor waiting for the sequencer (hidden from it)")
        bad_signature = min((size for size in [mine, *theirs] if size is not None),
                            default=None)
        return self._check_heads(heads, bad_signature, origin, roots,
                                 SqlNodeStore(session, self.t), tree.size, trusted)

    @staticmethod
    def _join(walk: _Walk, part: _RangeResult, tree: StreamingTree,
              roots: dict[int, bytes]) -> VerifyResult | None:
        """Add a worker's range to the walk so far: what only the join can see (the chain
        and replays across the cut, a record older than 0015 after authenticated ones),
        then the range's own fault, then its Merkle blocks."""
        faults = []
        if part.prev_chain != walk.chain:
            faults.append(VerifyResult(False, part.start, "hash chain broken"))
        if walk.authenticated and part.legacy_at is not None:
            faults.append(VerifyResult(False, part.legacy_at, "record not written by the "
                                       "service (no authentication code)"))
        seen = walk.seen_macs
        for k in range(0, len(part.macs), MAC_SIZE):
            mac = part.macs[k:k + MAC_SIZE]
            if mac in seen:
                faults.append(VerifyResult(False, part.mac_index[k // MAC_SIZE],
                                           "record replayed (logged twice)"))
                break
            seen.add(mac)
        if part.fault is not None:
            faults.append(part.fault)
        for block in part.blocks:
            if faults and block.start + block.count > min(
                    f.first_bad_index or 0 for f in faults):
                break
            roots.update(tree.add_block(block))
        if faults:
            return min(faults, key=lambda f: f.first_bad_index or 0)
        walk.chain = part.last_chain
        walk.authenticated = walk.authenticated or part.authenticated
        walk.position = part.stop
        return None

    def _check_heads(self, heads: Sequence[Any], bad_signature: int | None,
                     origin: str | None, roots: Mapping[int, bytes], store: SqlNodeStore,
                     sequenced: int, trusted: Checkpoint | None) -> VerifyResult:
        """Every signed head, in order: within the log; its signature (checked per range
        by `_first_bad_signature`: `bad_signature` is the first size that failed); its
        root against the root recomputed from the leaves at its size. Heads whose roots
        are all recomputed from the same leaves are consistent with one another by
        construction (each is a prefix of the one log), so no consistency proof is needed
        between them. With `trusted`, that the log extends it."""
        latest: tuple[int, bytes] | None = None
        for tree_size, root_hash, _text, _signature in heads:
            size = int(tree_size)
            if size > sequenced:
                return VerifyResult(False, sequenced, "tree head larger than the log")
            if size == bad_signature:
                return VerifyResult(False, max(size - 1, 0), "tree head signature invalid")
            if bytes(root_hash) != roots.get(size):
                return VerifyResult(False, max(size - 1, 0), "tree head root mismatch")
            latest = (size, bytes(root_hash))
        if trusted is not None:
            problem = self._extends(store, trusted, origin, latest, sequenced, roots)
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


class _Rows:
    """A Core SELECT run on the driver's cursor, rows fetched as plain tuples in batches
    (no Row objects). SQLite: the transaction's own connection. PostgreSQL: a named
    server-side cursor with binary results, read ahead by a thread in batches of
    `PG_FETCH` rows, so that the server reads and sends the next batch while this process
    hashes the current one (the driver waits for the network without the GIL). Bound
    values must be integers (rendered as literals by the dialect)."""

    def __init__(self, session: Tx, stmt: Any, name: str) -> None:
        conn = session.connection()
        # integer bounds only: rendered by the dialect's own literal processors
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        driver = conn.connection.driver_connection
        assert driver is not None
        self._buf: list[tuple[Any, ...]] = []
        self._pos = 0
        self._done = False
        self._thread: threading.Thread | None = None
        if conn.dialect.name == "postgresql":
            self.cursor = driver.cursor(name=name, binary=True)
            self.cursor.execute(sql)
            self._queue: queue.Queue[list[tuple[Any, ...]] | BaseException] = queue.Queue(2)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._read_ahead, daemon=True,
                                            name=f"{name}-read-ahead")
            self._thread.start()
        else:
            self.cursor = driver.cursor()
            self.cursor.execute(sql)

    def _read_ahead(self) -> None:
        try:
            while not self._stop.is_set():
                rows = self.cursor.fetchmany(PG_FETCH)
                self._queue.put(rows)
                if not rows:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._queue.put(exc)

    def fetch(self, size: int) -> list[tuple[Any, ...]]:
        if self._thread is None:
            return self.cursor.fetchmany(size)  # type: ignore[no-any-return]
        while len(self._buf) - self._pos < size and not self._done:
            more = self._queue.get()
            if isinstance(more, BaseException):
                raise more
            if not more:
                self._done = True
            self._buf = self._buf[self._pos:] + more
            self._pos = 0
        rows = self._buf[self._pos:self._pos + size]
        self._pos += len(rows)
        return rows

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():  # let it finish its FETCH and leave
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.05)
            self._thread.join()
        self.cursor.close()

    def __enter__(self) -> _Rows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Records:
    """The records stream (id, leaf, mac by seq), matched to the leaves by id. Records
    are sequenced in insertion order, so in the common case the next rows are the ones
    the next leaves name; a record out of order (a late PostgreSQL commit, a record still
    waiting for the sequencer) waits in a look-ahead buffer, and one far out of order is
    looked up by id."""

    def __init__(self, rows: _Rows) -> None:
        self.rows = rows
        self.buf: list[tuple[Any, ...]] = []
        self.pos = 0
        self.done = False
        self.ahead: dict[str, tuple[Any, ...]] = {}

    def _fill(self, need: int) -> None:
        while len(self.buf) - self.pos < need and not self.done:
            more = self.rows.fetch(RECORD_FETCH)
            if not more:
                self.done = True
            self.buf = self.buf[self.pos:] + more
            self.pos = 0

    def in_order(self, ids: list[str]) -> list[tuple[Any, ...]] | None:
        """The next len(ids) records if they are exactly `ids`, in order; else None."""
        self._fill(len(ids))
        chunk = self.buf[self.pos:self.pos + len(ids)]
        if [row[0] for row in chunk] != ids:
            return None
        self.pos += len(ids)
        return chunk

    def find(self, record_id: str) -> tuple[Any, ...] | None:
        """The record with this id from the look-ahead or further down the stream; None
        when not within LOOKAHEAD records (the caller looks it up)."""
        found = self.ahead.pop(record_id, None)
        if found is not None:
            return found
        while len(self.ahead) <= LOOKAHEAD:
            self._fill(1)
            if self.pos >= len(self.buf):
                return None
            row = self.buf[self.pos]
            self.pos += 1
            if row[0] == record_id:
                return row
            self.ahead[row[0]] = row
        return None


class _Walk:
    """One pass of `verify` over the leaves [start, stop) and their records; each block,
    once checked, is hashed and given to `sink`."""

    def __init__(self, store: AuditStore, session: Tx, wanted: list[int], *,
                 sink: Callable[[Block], None], start: int = 0, stop: int | None = None,
                 chain: bytes = GENESIS, seq_from: int | None = None) -> None:
        self.store = store
        self.session = session
        self.wanted = wanted
        self.sink = sink
        self.auth = store.authenticator
        self.start = self.position = start
        self.stop = stop
        self.seq_from = seq_from
        self.chain = chain
        self.seen_macs: set[bytes] = set()
        self.macs: list[bytes] = []  # in log order, kept only in a worker (`keep_macs`)
        self.mac_index: list[int] = []
        self.keep_macs = False
        self.authenticated = False
        self.legacy_at: int | None = None  # the first record older than 0015 accepted

    def run(self) -> VerifyResult | None:
        """Walk the range; the first fault, or None (`position` is then the range's end:
        records never sequenced yet are fine)."""
        L, R = self.store.t.leaves.c, self.store.t.records.c
        leaves_q = select(L.leaf_index, L.leaf_hash, L.chain_hash, L.record_id).where(
            L.leaf_index >= self.start).order_by(L.leaf_index)
        if self.stop is not None:
            leaves_q = leaves_q.where(L.leaf_index < self.stop)
        records_q = select(R.id, R.leaf, R.mac).order_by(R.seq)
        if self.seq_from is not None:
            records_q = records_q.where(R.seq >= self.seq_from)
        with _Rows(self.session, leaves_q, "audit_verify_leaves") as leaves, \
                _Rows(self.session, records_q, "audit_verify_records") as stream:
            records = _Records(stream)
            wanted = iter(self.wanted)
            next_size = next(wanted, None)
            while True:
                rows = leaves.fetch(VERIFY_BLOCK)
                if not rows:
                    break
                fault, hashes = self._block(rows, records)
                if fault is not None:
                    return fault
                sizes = []
                end = self.position + len(rows)
                while next_size is not None and next_size <= end:
                    if next_size > self.position:
                        sizes.append(next_size)
                    next_size = next(wanted, None)
                self.sink(hash_block(hashes, self.position, sizes))
                self.position = end
                if len(rows) < VERIFY_BLOCK:
                    break
        if self.stop is not None and self.position != self.stop:
            return VerifyResult(False, self.position, "record missing or out of order")
        return None

    def _block(self, rows: list[tuple[Any, ...]],
               records: _Records) -> tuple[VerifyResult | None, list[bytes]]:
        """Check a block of leaves with their records; (fault or None, leaf hashes)."""
        position = self.position
        recs = records.in_order([row[3] for row in rows])
        if recs is not None and rows[0][0] == position \
                and rows[-1][0] == position + len(rows) - 1:
            leaves = [rec[1] for rec in recs]
            if None not in leaves:
                sha = hashlib.sha256
                hashes = [sha(b"\x00" + leaf).digest() for leaf in leaves]
                ok = hashes == [bytes(row[1]) for row in rows]
                macs = [rec[2] for rec in recs]
                if ok and self.auth is not None:
                    ok = (self.auth.macs_of_hashes(hashes) == macs
                          and len(set(macs)) == len(macs) and self.seen_macs.isdisjoint(macs))
                if ok:
                    chain, chained = self.chain, []
                    for value in hashes:
                        chain = sha(b"\x02" + chain + value).digest()
                        chained.append(chain)
                    if chained == [bytes(row[2]) for row in rows]:
                        self.chain = chain
                        if self.auth is not None:
                            self.seen_macs.update(macs)
                            self.authenticated = True
                            if self.keep_macs:
                                self.macs += macs
                                self.mac_index += range(position, position + len(macs))
                        return None, hashes
        # a fault, or records out of order or older than 0015: record by record
        if recs is None:
            return self._slow(rows, [self._find(records, row[3]) for row in rows])
        return self._slow(rows, recs)

    def _find(self, records: _Records, record_id: str) -> tuple[Any, ...] | None:
        found = records.find(record_id)
        if found is None:  # far out of order, or gone: look it up
            R = self.store.t.records.c
            row = self.session.execute(select(R.id, R.leaf, R.mac).where(
                R.id == record_id)).first()
            found = None if row is None else tuple(row)
        return found

    def _slow(self, rows: list[tuple[Any, ...]], recs: Sequence[tuple[Any, ...] | None]
              ) -> tuple[VerifyResult | None, list[bytes]]:
        auth = self.auth
        chain = self.chain
        position = self.position
        hashes: list[bytes] = []
        for (index, stored_leaf, stored_chain, rid), rec in zip(rows, recs, strict=True):
            if index != position or rec is None or rec[0] != rid:
                return VerifyResult(False, position, "record missing or out of order"), []
            _, leaf, mac = rec
            if leaf is None:  # written before records were authenticated (0015)
                if self.authenticated or mac is not None:
                    return VerifyResult(False, index, "record not written by the service "
                                        "(no authentication code)"), []
                if self.legacy_at is None:
                    self.legacy_at = index
                lh = leaf_hash(self.store._legacy_leaf(self.session, rid))
            else:
                lh = leaf_hash(bytes(leaf))
                if auth is not None:
                    if not auth.check_hash(lh, None if mac is None else bytes(mac)):
                        return VerifyResult(False, index, "record not written by the "
                                            "service (authentication code invalid)"), []
                    if mac in self.seen_macs:
                        return VerifyResult(False, index, "record replayed (logged twice)"), []
                    self.seen_macs.add(bytes(mac))
                    self.authenticated = True
                    if self.keep_macs:
                        self.macs.append(bytes(mac))
                        self.mac_index.append(index)
            if lh != bytes(stored_leaf):
                return VerifyResult(False, index, "record changed after it was logged"), []
            chain = chain_hash_from_leaf_hash(chain, lh)
            if chain != bytes(stored_chain):
                return VerifyResult(False, index, "hash chain broken"), []
            hashes.append(lh)
            position += 1
        self.chain = chain
        return None, hashes



def _first_bad_node(session: Tx, tables: AuditTables, tree: StreamingTree) -> int | None:
    """The first leaf under a stored node that is missing or differs from the one
    recomputed from the leaves: each stored level read once, in index order. Nodes over
    leaves beyond the log seen (a sequencer appending meanwhile) are not read."""
    N = tables.nodes.c
    bad: list[int] = []
    for level, computed in tree.nodes.items():
        stmt = select(N.node_index, N.hash).where(
            N.level == level, N.node_index < len(computed)).order_by(N.node_index)
        with _Rows(session, stmt, "audit_verify_nodes") as rows:
            stored = [row for batch in iter(lambda: rows.fetch(65_536), []) for row in batch]
        if [row[0] for row in stored] == list(range(len(computed))) \
                and [bytes(row[1]) for row in stored] == computed:
            continue
        have = {int(ix): bytes(value) for ix, value in stored}
        bad += [ix << level for ix, value in enumerate(computed) if have.get(ix) != value]
    return min(bad) if bad else None


def _origin(checkpoint_text: str) -> str | None:
    """The origin line of a stored checkpoint (checked with its signature later)."""
    from audit.errors import AuditError

    try:
        return Checkpoint.parse(checkpoint_text).origin
    except AuditError:
        return None


def _first_bad_signature(public_jwk: Mapping[str, Any], heads: Iterable[Sequence[Any]],
                         origin: str | None) -> int | None:
    """The smallest tree size among `heads` (tree_size, root_hash, checkpoint, signature
    rows) whose checkpoint is not signed by the log's key, disagrees with its row, or
    names another log than `origin` (the first head's): one Ed25519 check per head, the
    costly part of checking heads, so each range checks its own."""
    from audit.checkpoint import public_key_from_jwk, verify_checkpoint
    from audit.errors import AuditError

    key = public_key_from_jwk(public_jwk)
    bad: int | None = None
    for tree_size, root_hash, text_, signature in heads:
        size = int(tree_size)
        if bad is not None and size >= bad:
            continue
        try:
            checkpoint = verify_checkpoint(key, text_, bytes(signature))
        except AuditError:
            bad = size
            continue
        if (checkpoint.tree_size != size or checkpoint.root_hash != bytes(root_hash)
                or checkpoint.origin != origin):
            bad = size
    return bad


@dataclass(frozen=True)
class _RangeSpec:
    """What a worker process needs to check leaves [start, stop)."""

    url: str
    start: int
    stop: int
    wanted: list[int]
    authenticator: RecordAuthenticator | None
    public_jwk: dict[str, Any]
    origin: str | None


@dataclass(frozen=True)
class _RangeResult:
    start: int
    stop: int
    fault: VerifyResult | None
    blocks: list[Block]
    prev_chain: bytes  # the stored chain hash the range started from
    last_chain: bytes
    macs: bytes  # the range's MACs, in log order, concatenated
    mac_index: list[int]
    authenticated: bool
    legacy_at: int | None
    bad_signature: int | None


def _verify_range(spec: _RangeSpec) -> _RangeResult:
    """A worker process: check leaves [start, stop) on its own connection."""
    from sqlalchemy import JSON, DateTime, LargeBinary, MetaData, create_engine

    from audit.tables import define_audit_tables

    tables = define_audit_tables(MetaData(), json_type=JSON, bytes_type=LargeBinary,
                                 datetime_type=DateTime)
    store = AuditStore(tables, "-", spec.authenticator)
    engine = create_engine(spec.url)
    blocks: list[Block] = []
    try:
        with Session(engine) as session:
            L, R = tables.leaves.c, tables.records.c
            prev = session.execute(select(L.chain_hash).where(
                L.leaf_index == spec.start - 1)).scalar()
            seq = session.execute(select(R.seq).join(tables.leaves, L.record_id == R.id)
                                  .where(L.leaf_index == spec.start)).scalar()
            walk = _Walk(store, session, spec.wanted, sink=blocks.append, start=spec.start,
                         stop=spec.stop, chain=GENESIS if prev is None else bytes(prev),
                         seq_from=seq)
            walk.keep_macs = True
            fault = walk.run()
            H = tables.tree_heads.c
            with _Rows(session, select(H.tree_size, H.root_hash, H.checkpoint, H.signature)
                       .where(H.tree_size > spec.start, H.tree_size <= spec.stop)
                       .order_by(H.tree_size), "audit_verify_heads") as rows:
                bad_signature = _first_bad_signature(spec.public_jwk, (
                    row for batch in iter(lambda: rows.fetch(10_000), []) for row in batch),
                    spec.origin)
    finally:
        engine.dispose()
    return _RangeResult(spec.start, spec.stop, fault, blocks,
                        GENESIS if prev is None else bytes(prev), walk.chain,
                        b"".join(walk.macs), walk.mac_index, walk.authenticated,
                        walk.legacy_at, bad_signature)
