"""The independent verifier: accepts every honest proof, rejects named tamper vectors."""

from __future__ import annotations

import ast
import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import audit.proof
from audit.errors import (
    LeafMismatchError,
    MalformedProofError,
    ProofError,
    ProofRangeError,
    RootMismatchError,
)
from audit.hashing import leaf_hash
from audit.proof import (
    consistency_proof_json,
    inclusion_proof_json,
    root_from_inclusion,
    verify_consistency,
    verify_consistency_json,
    verify_inclusion,
    verify_inclusion_json,
)
from tests.unit.audit.audit_vectors import CONSISTENCY, EMPTY_ROOT, INCLUSION, LEAVES, ROOTS
from tests.unit.audit.rfc6962_reference import mth, path, proof

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def flip(value: bytes, bit: int = 3) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def flipped_at(nodes: list[bytes], i: int) -> list[bytes]:
    return [flip(n) if j == i else n for j, n in enumerate(nodes)]


InclusionCase = tuple[bytes, int, int, list[bytes], bytes]


def inclusion_tampers(leaf: bytes, index: int, size: int, p: list[bytes], r: bytes) -> dict[
    str, InclusionCase
]:
    """Named corruptions of a valid inclusion proof (after transparency-dev/merkle)."""
    cases: dict[str, InclusionCase] = {
        "wrong leaf": (leaf_hash(b"WrongLeaf"), index, size, p, r),
        "flipped leaf": (flip(leaf), index, size, p, r),
        "empty-tree root": (leaf, index, size, p, EMPTY_ROOT),
        "random root": (leaf, index, size, p, SOME_HASH),
        "extended path: trailing hash": (leaf, index, size, [*p, SOME_HASH], r),
        "extended path: trailing root": (leaf, index, size, [*p, r], r),
        "extended path: preceding root": (leaf, index, size, [r, *p], r),
    }
    if index > 0:
        cases["index - 1"] = (leaf, index - 1, size, p, r)
    if index + 1 < size:
        cases["index + 1"] = (leaf, index + 1, size, p, r)
    if index ^ 2 < size:
        cases["index ^ 2"] = (leaf, index ^ 2, size, p, r)
    for i in range(len(p)):
        cases[f"flipped bit in path[{i}]"] = (leaf, index, size, flipped_at(p, i), r)
    if p:
        cases["truncated path"] = (leaf, index, size, p[:-1], r)
    if len(p) > 1:
        cases["inserted node"] = (leaf, index, size, [p[0], SOME_HASH, *p[1:]], r)
    return cases


ConsistencyCase = tuple[int, int, bytes, bytes, list[bytes]]


def consistency_tampers(m: int, n: int, r1: bytes, r2: bytes, p: list[bytes]) -> dict[
    str, ConsistencyCase
]:
    cases: dict[str, ConsistencyCase] = {
        "wrong first root": (m, n, SOME_HASH, r2, p),
        "wrong second root": (m, n, r1, SOME_HASH, p),
        "swapped roots": (m, n, r2, r1, p),
        "empty path": (m, n, r1, r2, []),
        "extended path: trailing hash": (m, n, r1, r2, [*p, SOME_HASH]),
        "extended path: trailing first root": (m, n, r1, r2, [*p, r1]),
        "extended path: trailing second root": (m, n, r1, r2, [*p, r2]),
        "extended path: preceding first root": (m, n, r1, r2, [r1, *p]),
        "extended path: preceding second root": (m, n, r1, r2, [r2, *p]),
        "extended path: preceding path[0]": (m, n, r1, r2, [p[0], *p]),
        "truncated path": (m, n, r1, r2, p[:-1]),
    }
    for i in range(len(p)):
        cases[f"flipped bit in path[{i}]"] = (m, n, r1, r2, flipped_at(p, i))
    return cases


def assert_all_rejected(verify: Callable[..., None], cases: dict[str, tuple[object, ...]]) -> None:
    accepted = []
    for name, args in cases.items():
        try:
            verify(*args)
        except ProofError:
            continue
        accepted.append(name)
    assert accepted == [], f"tampered proofs accepted: {accepted}"


# Known-answer vectors, with the transparency-dev corruptions -------------------------


@pytest.mark.parametrize(("index", "size", "p"), INCLUSION)
def test_known_inclusion_proofs_verify_and_resist_tampering(
    index: int, size: int, p: list[bytes]
) -> None:
    leaf = leaf_hash(LEAVES[index])
    root = ROOTS[size - 1]
    verify_inclusion(leaf, index, size, p, root)
    assert root_from_inclusion(leaf, index, size, p) == root
    cases = inclusion_tampers(leaf, index, size, p, root)
    cases["wrong size: size * 2"] = (leaf, index, size * 2, p, root)
    if index < size // 2:
        cases["wrong size: size // 2"] = (leaf, index, size // 2, p, root)
    assert_all_rejected(verify_inclusion, cases)


@pytest.mark.parametrize(("m", "n", "p"), CONSISTENCY)
def test_known_consistency_proofs_verify_and_resist_tampering(
    m: int, n: int, p: list[bytes]
) -> None:
    verify_consistency(m, n, ROOTS[m - 1], ROOTS[n - 1], p)
    if not p:
        return
    cases = consistency_tampers(m, n, ROOTS[m - 1], ROOTS[n - 1], p)
    cases["wrong size: first - 1"] = (m - 1, n, ROOTS[m - 1], ROOTS[n - 1], p)
    cases["wrong size: first + 1"] = (m + 1, n, ROOTS[m - 1], ROOTS[n - 1], p)
    cases["wrong size: first ^ 2"] = (m ^ 2, n, ROOTS[m - 1], ROOTS[n - 1], p)
    cases["wrong size: second * 2"] = (m, n * 2, ROOTS[m - 1], ROOTS[n - 1], p)
    cases["wrong size: second // 2"] = (m, n // 2, ROOTS[m - 1], ROOTS[n - 1], p)
    assert_all_rejected(verify_consistency, cases)


def test_error_types_name_the_failure() -> None:
    index, size, p = INCLUSION[2]
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    with pytest.raises(RootMismatchError) as caught:
        verify_inclusion(leaf, index, size, flipped_at(p, 0), root)
    assert caught.value.expected == root
    with pytest.raises(MalformedProofError, match="too short"):
        verify_inclusion(leaf, index, size, p[:-1], root)
    with pytest.raises(MalformedProofError, match="too long"):
        verify_inclusion(leaf, index, size, [*p, root], root)
    with pytest.raises(MalformedProofError, match="32-byte"):
        verify_inclusion(leaf, index, size, [*p[:-1], b"short"], root)
    with pytest.raises(ProofRangeError):
        verify_inclusion(leaf, size, size, p, root)
    m, n, c = CONSISTENCY[2]
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    with pytest.raises(RootMismatchError) as caught_c:
        verify_consistency(m, n, r1, SOME_HASH, c)
    assert caught_c.value.which == "second"
    with pytest.raises(MalformedProofError, match="too long"):
        verify_consistency(m, n, r1, r2, [*c, r2])
    with pytest.raises(MalformedProofError, match="too short"):
        verify_consistency(m, n, r1, r2, c[:-1])
    with pytest.raises(MalformedProofError, match="empty"):
        verify_consistency(m, n, r1, r2, [])
    with pytest.raises(ProofRangeError):
        verify_consistency(n, m, r2, r1, c)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 4)])
def test_impossible_inclusion_positions_are_rejected(index: int, size: int) -> None:
    with pytest.raises(ProofRangeError):
        verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    with pytest.raises(RootMismatchError):
        verify_inclusion(leaf, 0, 1, [], SOME_HASH)
    with pytest.raises(MalformedProofError):
        verify_inclusion(leaf, 0, 1, [], b"")


ROOT1, ROOT2 = hashlib.sha256(b"don't care 1").digest(), hashlib.sha256(b"don't care 2").digest()


@pytest.mark.parametrize(
    ("m", "n", "r1", "r2", "p", "ok"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 5, EMPTY_ROOT, ROOT2, [], True),
        (1, 1, ROOT2, ROOT2, [], True),
        (0, 0, ROOT1, ROOT2, [], False),  # equal sizes, different roots
        (1, 1, ROOT1, ROOT2, [], False),
        (0, 5, ROOT1, ROOT2, [], False),  # size 0 has one root
        (1, 0, ROOT1, ROOT2, [], False),  # time travel
        (2, 1, ROOT1, ROOT2, [], False),
        (1, 2, ROOT1, ROOT2, [], False),  # empty proof
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),  # roots match, proof not empty
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_trivial_consistency_cases(
    m: int, n: int, r1: bytes, r2: bytes, p: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(m, n, r1, r2, p)
    else:
        with pytest.raises(ProofError):
            verify_consistency(m, n, r1, r2, p)


# Random trees, proofs from the reference (not from audit.merkle) ----------------------

sizes = st.integers(1, 200)


def tree(size: int, salt: bytes) -> list[bytes]:
    return [salt + b"leaf-%d" % i for i in range(size)]


@settings(max_examples=250, deadline=None)
@given(st.data(), sizes, st.binary(max_size=4))
def test_verifier_accepts_reference_inclusion_proofs_and_rejects_tampering(
    data: st.DataObject, size: int, salt: bytes
) -> None:
    leaves = tree(size, salt)
    index = data.draw(st.integers(0, size - 1), label="index")
    p, r, leaf = path(index, leaves), mth(leaves), leaf_hash(leaves[index])
    verify_inclusion(leaf, index, size, p, r)
    assert_all_rejected(verify_inclusion, inclusion_tampers(leaf, index, size, p, r))


@settings(max_examples=250, deadline=None)
@given(st.data(), sizes, st.binary(max_size=4))
def test_wrong_size_with_another_path_length_is_rejected(
    data: st.DataObject, size: int, salt: bytes
) -> None:
    leaves = tree(size, salt)
    index = data.draw(st.integers(0, size - 1), label="index")
    wrong = data.draw(st.integers(index + 1, 2 * size + 2), label="wrong size")
    p = path(index, leaves)
    assume(len(path(index, tree(wrong, salt))) != len(p))
    with pytest.raises(MalformedProofError):
        verify_inclusion(leaf_hash(leaves[index]), index, wrong, p, mth(leaves))


@settings(max_examples=250, deadline=None)
@given(st.data(), sizes, st.binary(max_size=4))
def test_verifier_accepts_reference_consistency_proofs_and_rejects_tampering(
    data: st.DataObject, n: int, salt: bytes
) -> None:
    leaves = tree(n, salt)
    m = data.draw(st.integers(1, n), label="first")
    p, r1, r2 = proof(m, leaves), mth(leaves[:m]), mth(leaves)
    verify_consistency(m, n, r1, r2, p)
    if m < n:
        assert_all_rejected(verify_consistency, consistency_tampers(m, n, r1, r2, p))


# JSON receipts ------------------------------------------------------------------------


def receipt(index: int = 5, size: int = 8) -> dict[str, object]:
    return dict(inclusion_proof_json(index, size, LEAVES[index], path(index, LEAVES[:size])))


def test_inclusion_receipt_round_trip() -> None:
    body = receipt()
    assert body["leaf"] == base64.b64encode(LEAVES[5]).decode()
    assert body["leaf_hash"] == base64.b64encode(hashlib.sha256(b"\x00@ABC").digest()).decode()
    assert body["tree_size"] == 8
    assert body["index"] == 5
    assert verify_inclusion_json(body, 8, ROOTS[7]) == LEAVES[5]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"leaf": "QEFCRA=="}, LeafMismatchError),  # other leaf, stale leaf_hash
        ({"tree_size": 7}, ProofRangeError),
        ({"index": 4}, RootMismatchError),
        ({"index": True}, MalformedProofError),
        ({"index": "5"}, MalformedProofError),
        ({"leaf": "not base64!"}, MalformedProofError),
        ({"leaf_hash": None}, MalformedProofError),
        ({"audit_path": "AAAA"}, MalformedProofError),
        ({"audit_path": ["AAAA"]}, MalformedProofError),
    ],
)
def test_tampered_receipts_are_rejected(change: dict[str, object], error: type[Exception]) -> None:
    body = receipt() | change
    with pytest.raises(error):
        verify_inclusion_json(body, 8, ROOTS[7])


def test_receipt_with_other_leaf_and_its_hash_fails_on_the_root() -> None:
    body = receipt() | inclusion_proof_json(5, 8, b"forged", [])
    body["audit_path"] = receipt()["audit_path"]
    with pytest.raises(RootMismatchError):
        verify_inclusion_json(body, 8, ROOTS[7])


def test_consistency_body_round_trip() -> None:
    m, n, p = CONSISTENCY[2]
    body = dict(consistency_proof_json(m, n, p))
    verify_consistency_json(body, ROOTS[m - 1], ROOTS[n - 1])
    with pytest.raises(RootMismatchError):
        verify_consistency_json(body, ROOTS[n - 1], ROOTS[m - 1])


def test_verifier_does_not_import_the_builder() -> None:
    source = Path(audit.proof.__file__).read_text(encoding="utf-8")
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "audit.merkle" not in imported
    assert "audit.chain" not in imported
