"""The Merkle tree on the database keeps only its stored levels (migration 0021): proofs
and roots folded from them equal those of the full tree, a proof is one statement, and
the migration's downgrade and upgrade move a log between the two layouts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from audit.authentication import RecordAuthenticator
from audit.checkpoint import Ed25519FileSigner, public_jwk
from audit.hashing import leaf_hash
from audit.merkle import STRIDE, MemoryNodeStore, append, consistency_proof, inclusion_proof
from audit.store import AuditStore
from dossier.db.engine import make_engine, upgrade
from dossier.db.models import audit_tables

NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
SIGNER = Ed25519FileSigner(Ed25519PrivateKey.generate())
N = 150


def _engine(database_url: str | None, data_dir: Path) -> Any:
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{data_dir / 'db.sqlite3'}"
    engine = make_engine(database_url)
    upgrade(engine)
    return engine


def _log(engine: Any) -> tuple[AuditStore, list[bytes]]:
    store = AuditStore(audit_tables, "dossier.test/audit", RecordAuthenticator(bytes(32)))
    leaves = []
    for i in range(N):
        record = {"id": str(uuid.UUID(int=i + 1)), "recorded": "2027-03-01T09:30:00Z",
                  "action": "read", "outcome": "success", "purpose": "TREAT",
                  "patient": "Patient/p1", "agent": {"who": "Practitioner/a",
                                                     "role": "practitioner"}, "events": []}
        with Session(engine) as s, s.begin():
            store.append(s, record, recorded_at=NOW, patient_id="p1", agent="a")
            if i % 37 == 5:
                store.integrate(s, SIGNER, NOW)
    with Session(engine) as s, s.begin():
        assert store.integrate(s, SIGNER, NOW) == N
        leaves = [bytes(r.leaf) for r in s.execute(select(audit_tables.records.c.leaf)
                                                   .order_by(audit_tables.records.c.seq))]
    return store, leaves


def _levels(engine: Any) -> set[int]:
    with engine.connect() as conn:
        return {int(r[0]) for r in conn.execute(select(audit_tables.nodes.c.level).distinct())}


def test_proofs_from_the_stored_levels_equal_the_full_tree(
        database_url: str | None, data_dir: Path) -> None:
    engine = _engine(database_url, data_dir)
    try:
        store, leaves = _log(engine)
        assert _levels(engine) == {4}  # 150 leaves: levels 4 only (level 8 needs 256)
        full = MemoryNodeStore()
        entries, _ = append(full, 0, [leaf_hash(leaf) for leaf in leaves])
        full.put(entries)
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute",  # SELECTs (not SQLite's BEGIN)
                     lambda *a: statements.append(a[2]) if a[2].startswith("SELECT") else None)
        with Session(engine) as s:
            for size in (1, 2, 15, 16, 17, 31, 64, 100, N):
                for index in {0, size // 3, size - 1}:
                    statements.clear()
                    assert store.inclusion(s, index, size) == inclusion_proof(full, index,
                                                                              size)
                    assert len(statements) <= 1  # one statement per proof (none: size 1)
                for first in (1, 5, 16, size):
                    if first <= size:
                        assert store.consistency(s, first, size) == consistency_proof(
                            full, first, size)
        with Session(engine) as s:
            assert store.verify(s, public_jwk(SIGNER.public_key())).ok
    finally:
        engine.dispose()


def test_migration_0021_moves_a_log_between_layouts(database_url: str | None,
                                                     data_dir: Path) -> None:
    from alembic import command

    from dossier.db.engine import alembic_config

    engine = _engine(database_url, data_dir)
    try:
        store, leaves = _log(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0020")
        # the layout before 0021: every level, the leaf hashes too
        full = MemoryNodeStore()
        entries, _ = append(full, 0, [leaf_hash(leaf) for leaf in leaves])
        with engine.connect() as conn:
            stored = {(int(lv), int(ix)): bytes(h) for lv, ix, h in conn.execute(
                select(audit_tables.nodes))}
        assert stored == {(lv, ix): h for lv, ix, h in entries}
        upgrade(engine)
        assert _levels(engine) == {lv for lv, _, _ in entries if lv and lv % STRIDE == 0}
        with Session(engine) as s:
            assert store.verify(s, public_jwk(SIGNER.public_key())).ok
            full.put(entries)
            assert store.inclusion(s, 77, N) == inclusion_proof(full, 77, N)
    finally:
        engine.dispose()
