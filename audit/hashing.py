"""Domain-separated SHA-256 hashing: the only place that knows the prefixes.

RFC 6962 §2.1 / RFC 9162 §2.1.1: a leaf is hashed as ``SHA-256(0x00 || data)``
and an interior node as ``SHA-256(0x01 || left || right)``; the root of the
empty tree is ``SHA-256("")``. The hash chain (``audit.chain``) uses a third
prefix, 0x02, so that no chain link can be read as a leaf or a node.
"""

from __future__ import annotations

import hashlib

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
CHAIN_PREFIX = b"\x02"

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash of a record's leaf bytes."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash of two child hashes."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def chain_link(prev_hash: bytes, leaf_hash_: bytes) -> bytes:
    """One hash-chain step: ``SHA-256(0x02 || prev_hash || leaf_hash)``."""
    return hashlib.sha256(CHAIN_PREFIX + prev_hash + leaf_hash_).digest()


def check_hash(value: bytes, what: str = "hash") -> bytes:
    """Return ``value`` if it is a 32-byte ``bytes``; raise ValueError otherwise."""
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")
    return value
