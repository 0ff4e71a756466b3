"""The hash chain over audit records, a second witness beside the Merkle tree.

Record ``i`` stores ``prev_hash`` (the chain hash of record ``i - 1``, or 32
zero bytes for record 0) and ``hash = chain_hash(prev_hash, leaf_bytes)``::

    chain_hash(prev, leaf) = SHA-256(0x02 || prev || SHA-256(0x00 || leaf))

The inner hash is the record's RFC 6962 leaf hash, so whoever builds the tree
hashes each record once. The chain is computed where the tree is (by the
sequencer), so requests never contend for a chain head.
"""

from __future__ import annotations

from collections.abc import Iterable

from audit.hashing import HASH_SIZE, chain_link, check_hash, leaf_hash

GENESIS = bytes(HASH_SIZE)
"""``prev_hash`` of record 0."""

ChainRecord = tuple[int, bytes, bytes, bytes]
"""``(index, leaf_bytes, prev_hash, hash)`` as stored."""


def chain_hash(prev_hash: bytes, leaf_bytes: bytes) -> bytes:
    """The chain hash of a record with ``leaf_bytes`` following ``prev_hash``."""
    return chain_link(check_hash(prev_hash, "prev_hash"), leaf_hash(leaf_bytes))


def chain_hash_from_leaf_hash(prev_hash: bytes, leaf_hash_: bytes) -> bytes:
    """``chain_hash`` for a caller that already holds the record's leaf hash."""
    return chain_link(check_hash(prev_hash, "prev_hash"), check_hash(leaf_hash_, "leaf hash"))


def verify_chain(records: Iterable[ChainRecord], signed_size: int | None = None) -> int | None:
    """The first log index at which the chain breaks, or None if it is intact.

    Records must come in log order starting at index 0. Position ``p`` is bad
    when its index is not ``p`` (a deleted or reordered record), its
    ``prev_hash`` is not the previous record's hash, or its ``hash`` does not
    match its leaf bytes. With ``signed_size`` (the size of a signed tree
    head), records missing below that size are reported at the first missing
    index; records beyond it are fine (appended after the head was signed).
    """
    expected_prev = GENESIS
    position = 0
    for index, leaf_bytes, prev_hash, stored in records:
        if index != position or prev_hash != expected_prev:
            return position
        if len(stored) != HASH_SIZE or stored != chain_link(prev_hash, leaf_hash(leaf_bytes)):
            return position
        expected_prev = stored
        position += 1
    if signed_size is not None and position < signed_size:
        return position
    return None
