"""Verifying Merkle proofs (RFC 9162 §2.1.3.2 and §2.1.4.2), apart from building them.

Needs only ``audit.hashing``: a citizen's or auditor's tool can carry this
module alone. Every failure raises a ``ProofError`` subclass; success returns
None. Also defines the JSON shape of proofs served by the proof endpoints.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from audit.canonical import b64decode, b64encode
from audit.errors import (
    LeafMismatchError,
    MalformedProofError,
    ProofRangeError,
    RootMismatchError,
)
from audit.hashing import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash


class InclusionProofJSON(TypedDict):
    """Body of ``GET /audit/proof/inclusion`` (SPEC §12)."""

    index: int
    tree_size: int
    leaf: str
    leaf_hash: str
    audit_path: list[str]


class ConsistencyProofJSON(TypedDict):
    """Body of ``GET /audit/proof/consistency``."""

    first: int
    second: int
    consistency_path: list[str]


def _check_hashes(values: Sequence[bytes], what: str) -> None:
    for value in values:
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise MalformedProofError(f"{what} must hold {HASH_SIZE}-byte hashes")


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _shift_to_odd(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift both until LSB(fn) is set or fn is 0."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion(leaf_hash_: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root that ``path`` proves ``leaf_hash_`` to be under (RFC 9162 §2.1.3.2 steps 1-4)."""
    _check_hashes([leaf_hash_], "leaf hash")
    _check_hashes(path, "audit path")
    if not 0 <= index < size:
        raise ProofRangeError("index must satisfy 0 <= index < tree_size")
    fn, sn = index, size - 1
    r = leaf_hash_
    for p in path:
        if sn == 0:
            raise MalformedProofError("audit path is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_to_odd(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProofError("audit path is too short")
    return r


def verify_inclusion(
    leaf_hash_: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` of the tree of ``size`` leaves with ``root`` has ``leaf_hash_``."""
    _check_hashes([root], "root")
    computed = root_from_inclusion(leaf_hash_, index, size, path)
    if not _same(computed, root):
        raise RootMismatchError("tree", root, computed)


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``second`` leaves extends the tree of ``first`` leaves.

    RFC 9162 §2.1.4.2, plus the trivial cases: equal sizes need equal roots and
    an empty proof; ``first == 0`` needs the empty-tree root and an empty proof.
    """
    _check_hashes([first_root, second_root], "root")
    _check_hashes(proof, "consistency path")
    if not 0 <= first <= second:
        raise ProofRangeError("sizes must satisfy 0 <= first <= second")
    if first in (0, second):
        if proof:
            raise MalformedProofError("consistency path must be empty")
        expected = EMPTY_ROOT if first == 0 else second_root
        if not _same(first_root, expected):
            raise RootMismatchError("first", expected, first_root)
        return
    if not proof:
        raise MalformedProofError("consistency path is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is a node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MalformedProofError("consistency path is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            fn, sn = _shift_to_odd(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProofError("consistency path is too short")
    if not _same(fr, first_root):
        raise RootMismatchError("first", first_root, fr)
    if not _same(sr, second_root):
        raise RootMismatchError("second", second_root, sr)


def inclusion_proof_json(
    index: int, tree_size: int, leaf: bytes, audit_path: Sequence[bytes]
) -> InclusionProofJSON:
    """The inclusion receipt for leaf bytes ``leaf`` (its canonical record JSON)."""
    return {
        "index": index,
        "tree_size": tree_size,
        "leaf": b64encode(leaf),
        "leaf_hash": b64encode(leaf_hash(leaf)),
        "audit_path": [b64encode(node) for node in audit_path],
    }


def consistency_proof_json(first: int, second: int, path: Sequence[bytes]) -> ConsistencyProofJSON:
    """The consistency proof between two tree sizes."""
    return {
        "first": first,
        "second": second,
        "consistency_path": [b64encode(node) for node in path],
    }


def _int_field(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedProofError(f"'{name}' must be an integer")
    return value


def _b64_field(value: Any, name: str) -> bytes:
    try:
        return b64decode(value)
    except ValueError as exc:
        raise MalformedProofError(f"'{name}' must be base64") from exc


def _b64_list(body: Mapping[str, Any], name: str) -> list[bytes]:
    values = body.get(name)
    if not isinstance(values, list):
        raise MalformedProofError(f"'{name}' must be a list")
    return [_b64_field(value, name) for value in values]


def verify_inclusion_json(body: Mapping[str, Any], tree_size: int, root: bytes) -> bytes:
    """Check an inclusion receipt against a (verified) tree head; return the leaf bytes.

    ``tree_size`` and ``root`` come from a tree head whose signature the caller
    checked (``audit.checkpoint.verify_tree_head``).
    """
    index = _int_field(body, "index")
    if _int_field(body, "tree_size") != tree_size:
        raise ProofRangeError("receipt is for another tree size")
    leaf = _b64_field(body.get("leaf"), "leaf")
    claimed = _b64_field(body.get("leaf_hash"), "leaf_hash")
    if not _same(claimed, leaf_hash(leaf)):
        raise LeafMismatchError("leaf_hash is not the hash of leaf")
    verify_inclusion(claimed, index, tree_size, _b64_list(body, "audit_path"), root)
    return leaf


def verify_consistency_json(body: Mapping[str, Any], first_root: bytes, second_root: bytes) -> None:
    """Check a consistency proof body against two (verified) roots."""
    verify_consistency(
        _int_field(body, "first"),
        _int_field(body, "second"),
        first_root,
        second_root,
        _b64_list(body, "consistency_path"),
    )
