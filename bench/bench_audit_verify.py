"""Micro-benchmark of the audit log's pure core: what `dossier audit verify` recomputes.

Builds N synthetic audit records (~330-byte RFC 8785 canonical JSON, in memory),
then times leaf hashing, the hash chain, the Merkle root, the sequencer's
batched appends and proof generation, once each (no database; bench_verify_db.py
times the real log). Prints a markdown table.

    /work/venv/bin/python bench/bench_audit_verify.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from harness import Section, Table

from audit.canonical import canonical_bytes
from audit.chain import GENESIS, chain_hash_from_leaf_hash, verify_chain
from audit.hashing import chain_link, leaf_hash
from audit.merkle import CompactRange, MemoryNodeStore, append, consistency_proof, inclusion_proof


def record(i: int, rng: random.Random) -> dict[str, Any]:
    """A pseudonymous access record of roughly the shape of an AuditEvent leaf."""
    return {
        "action": rng.choice(["read", "search", "create", "update"]),
        "agent": {
            "org": f"Organization/org-{rng.randrange(2000)}",
            "role": rng.choice(["persnurse", "persphysician", "perssocialworker"]),
            "who": f"Practitioner/{uuid.UUID(int=rng.getrandbits(128))}",
        },
        "entity": {
            "patient": f"{rng.getrandbits(128):032x}",
            "type": rng.choice(["Task", "Observation", "CareTeam", "Patient"]),
        },
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "outcome": rng.choice(["0", "4", "8"]),
        "recorded": f"2027-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "seq": i,
    }


TEMPLATE = (
    '{"action":"%(action)s","agent":{"org":"%(org)s","role":"%(role)s","who":"%(who)s"},'
    '"entity":{"patient":"%(patient)s","type":"%(type)s"},"id":"%(id)s",'
    '"outcome":"%(outcome)s","recorded":"%(recorded)s","seq":%(seq)d}'
)


def fast_leaf(rec: dict[str, Any]) -> bytes:
    """The same bytes as canonical_bytes(rec) for this fixed, escape-free shape (checked)."""
    return (TEMPLATE % {**rec, **rec["agent"], **rec["entity"]}).encode("ascii")


Rows = list[tuple[str, int, float]]
T = TypeVar("T")


def timed(label: str, n: int, rows: Rows, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = fn()
    rows.append((label, n, time.perf_counter() - start))
    return result


TITLE = "Audit (issue 6)"


def measure(n: int, proofs: int) -> Section:
    rng = random.Random(6962)

    records = [record(i, rng) for i in range(n)]
    sample = records[: min(n, 20_000)]
    rows: Rows = []
    canonical = timed("RFC 8785 canonical_bytes (sample)", len(sample), rows,
                      lambda: [canonical_bytes(r) for r in sample])
    leaves = [fast_leaf(r) for r in records]
    assert leaves[: len(canonical)] == canonical
    del records
    mean_size = sum(map(len, leaves)) / n

    hashes = timed("leaf hashes", n, rows, lambda: list(map(leaf_hash, leaves)))

    def chain() -> list[bytes]:
        out, prev = [], GENESIS
        for h in hashes:
            prev = chain_hash_from_leaf_hash(prev, h)
            out.append(prev)
        return out

    chained = timed("hash chain from leaf hashes", n, rows, chain)

    def merkle_root() -> bytes:
        frontier = CompactRange()
        frontier.extend(hashes)
        return frontier.root()

    tree_root = timed("Merkle root from leaf hashes (CompactRange)", n, rows, merkle_root)

    def one_pass() -> tuple[bytes, bytes]:
        # what `audit verify` does per record: leaf hash, chain link, tree frontier
        frontier, prev = CompactRange(), GENESIS

        def leaf_hashes() -> Iterator[bytes]:
            nonlocal prev
            for leaf in leaves:
                h = leaf_hash(leaf)
                prev = chain_link(prev, h)
                yield h

        frontier.extend(leaf_hashes())
        return prev, frontier.root()

    head, again = timed("**chain + root from leaf bytes, one pass**", n, rows, one_pass)
    assert again == tree_root
    assert head == chained[-1]

    stored = [(i, leaves[i], chained[i - 1] if i else GENESIS, chained[i]) for i in range(n)]
    bad = timed("verify_chain over stored records", n, rows, lambda: verify_chain(stored, n))
    assert bad is None

    store = MemoryNodeStore()

    def sequencer(batch: int = 1000) -> bytes:
        size, new_root = 0, b""
        for at in range(0, n, batch):
            entries, new_root = append(store, size, hashes[at : at + batch])
            store.put(entries)
            size = min(at + batch, n)
        return new_root

    appended = timed("sequencer append, batches of 1000 (in-memory store)", n, rows, sequencer)
    assert appended == tree_root

    picks = [(rng.randrange(n), n) for _ in range(proofs)]
    timed(f"inclusion proofs at size {n:,}", proofs, rows,
          lambda: [inclusion_proof(store, i, size) for i, size in picks])
    pairs = [(rng.randrange(1, n), n) for _ in range(proofs)]
    timed(f"consistency proofs to size {n:,}", proofs, rows,
          lambda: [consistency_proof(store, m, size) for m, size in pairs])

    table = Table(["step (in memory, one run each)", "items", "seconds", "items/s"],
                  left=1, title=f"Log core without a database: {n:,} records, mean leaf "
                        f"{mean_size:.0f} bytes, {len(store):,} stored nodes")
    for label, count, seconds in rows:
        table.add(label, count, seconds, count / seconds)
    return Section(TITLE, "", [table])


def main(argv: list[str] | None = None) -> Section:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=10_000)
    args = parser.parse_args(argv)
    section = measure(args.records, args.proofs)
    print(section.markdown())
    return section


if __name__ == "__main__":
    main()
