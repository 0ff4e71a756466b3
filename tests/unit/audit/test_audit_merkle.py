"""The tree builder against the RFC 6962 reference, known answers, and its read bounds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.errors import MissingNodeError
from audit.hashing import leaf_hash
from audit.merkle import (
    STRIDE,
    BandedNodeStore,
    BatchNodeStore,
    CompactRange,
    MemoryNodeStore,
    NodeID,
    StreamingTree,
    append,
    consistency_proof,
    inclusion_proof,
    is_stored_level,
    root,
)
from audit.proof import verify_consistency, verify_inclusion
from tests.unit.audit.audit_vectors import CONSISTENCY, EMPTY_ROOT, INCLUSION, LEAVES, ROOTS
from tests.unit.audit.rfc6962_reference import mth, path, proof

MAX = 300


def leaf_data(i: int) -> bytes:
    return b"record-%d" % i


DATA = [leaf_data(i) for i in range(MAX)]


@cache
def full_store() -> MemoryNodeStore:
    store = MemoryNodeStore()
    entries, _ = append(store, 0, [leaf_hash(d) for d in DATA])
    store.put(entries)
    return store


@cache
def ref_root(size: int) -> bytes:
    return mth(DATA[:size])


class BoundedStore:
    """Wraps a store; fails on any read of a node reaching beyond ``size`` leaves."""

    def __init__(self, inner: MemoryNodeStore, size: int) -> None:
        self.inner = inner
        self.size = size
        self.reads = 0

    def get(self, level: int, index: int) -> bytes | None:
        assert (index + 1) << level <= self.size, "read a node beyond the tree size"
        self.reads += 1
        return self.inner.get(level, index)


class SyntheticStore:
    """Answers every node with a made-up hash: lets us count reads on huge trees."""

    def __init__(self) -> None:
        self.reads = 0

    def get(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()


def store_of(leaves: Sequence[bytes]) -> MemoryNodeStore:
    store = MemoryNodeStore()
    entries, _ = append(store, 0, [leaf_hash(d) for d in leaves])
    store.put(entries)
    return store


# Known answers -----------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root(MemoryNodeStore(), 0) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_known_roots(size: int) -> None:
    assert root(store_of(LEAVES), size) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, expected: list[bytes]) -> None:
    assert inclusion_proof(store_of(LEAVES), index, size) == expected


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY)
def test_known_consistency_proofs(first: int, second: int, expected: list[bytes]) -> None:
    assert consistency_proof(store_of(LEAVES), first, second) == expected


# Against the reference, with hypothesis ---------------------------------------------


@settings(max_examples=250, deadline=None)
@given(
    size=st.integers(1, MAX),
    batches=st.lists(st.integers(1, 64), min_size=1, max_size=40),
    salt=st.binary(max_size=4),
)
def test_batched_appends_match_reference(size: int, batches: list[int], salt: bytes) -> None:
    data = [salt + leaf_data(i) for i in range(size)]
    store = MemoryNodeStore()
    done = 0
    cuts = iter(batches)
    while done < size:
        step = min(next(cuts, size), size - done)
        entries, new_root = append(store, done, [leaf_hash(d) for d in data[done : done + step]])
        store.put(entries)
        done += step
        assert new_root == mth(data[:done])
        assert root(store, done) == new_root
    # exactly the perfect subtrees were written, each once
    assert len(store) == sum(size >> level for level in range(size.bit_length()))


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_inclusion_proofs_match_reference(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    bounded = BoundedStore(full_store(), size)
    got = inclusion_proof(bounded, index, size)
    assert got == path(index, DATA[:size])
    assert bounded.reads <= 2 * size.bit_length()
    verify_inclusion(leaf_hash(DATA[index]), index, size, got, ref_root(size))


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_consistency_proofs_match_reference(data: st.DataObject) -> None:
    second = data.draw(st.integers(1, MAX), label="second")
    first = data.draw(st.integers(1, second), label="first")
    bounded = BoundedStore(full_store(), second)
    got = consistency_proof(bounded, first, second)
    assert got == proof(first, DATA[:second])
    assert bounded.reads <= 2 * second.bit_length() + 1
    verify_consistency(first, second, ref_root(first), ref_root(second), got)


@settings(max_examples=250, deadline=None)
@given(st.integers(1, MAX))
def test_root_reads_one_node_per_set_bit(size: int) -> None:
    bounded = BoundedStore(full_store(), size)
    assert root(bounded, size) == ref_root(size)
    assert bounded.reads == size.bit_count()


def test_consistency_from_zero_and_equal_sizes_is_empty() -> None:
    assert consistency_proof(full_store(), 0, 10) == []
    assert consistency_proof(full_store(), 10, 10) == []


# O(log n) reads on huge trees --------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_reads_are_logarithmic_on_huge_trees(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 2**48), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    first = data.draw(st.integers(1, size), label="first")
    bits = size.bit_length()

    store = SyntheticStore()
    root(store, size)
    assert store.reads == size.bit_count()

    store = SyntheticStore()
    assert len(inclusion_proof(store, index, size)) <= bits
    assert store.reads <= 2 * bits

    store = SyntheticStore()
    consistency_proof(store, first, size)
    assert store.reads <= 2 * bits + 1

    store = SyntheticStore()
    entries, _ = append(store, size, [bytes(32)] * 3)
    assert store.reads == size.bit_count()
    assert {(level, idx) for level, idx, _ in entries} >= {(0, size), (0, size + 1), (0, size + 2)}


# Stores and the compact range ---------------------------------------------------------


class CountingBatchStore:
    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def get(self, level: int, index: int) -> bytes | None:
        raise AssertionError("a batch store is read with get_many")

    def get_many(self, ids: Sequence[NodeID]) -> Mapping[NodeID, bytes]:
        self.batches.append(len(ids))
        return {i: h for i in ids if (h := self.inner.get(*i)) is not None}


def test_batch_store_gets_one_round_trip_per_call() -> None:
    store = CountingBatchStore(full_store())
    assert isinstance(store, BatchNodeStore)
    assert inclusion_proof(store, 17, 299) == path(17, DATA[:299])
    assert consistency_proof(store, 37, 299) == proof(37, DATA[:299])
    assert root(store, 299) == ref_root(299)
    assert len(store.batches) == 3


def test_missing_node_is_reported() -> None:
    store = MemoryNodeStore()
    entries, _ = append(store, 0, [leaf_hash(d) for d in DATA[:8]])
    store.put(e for e in entries if e[:2] != (3, 0))
    with pytest.raises(MissingNodeError) as caught:
        root(store, 8)
    assert (caught.value.level, caught.value.index) == (3, 0)
    with pytest.raises(MissingNodeError):
        append(store, 8, [leaf_hash(b"x")])


def test_stored_node_of_wrong_length_is_rejected() -> None:
    store = MemoryNodeStore()
    store.put([(0, 0, b"short")])
    with pytest.raises(ValueError, match="32 bytes"):
        root(store, 1)


def test_memory_store_refuses_to_rewrite_a_node() -> None:
    store = MemoryNodeStore()
    store.put([(0, 0, bytes(32))])
    store.put([(0, 0, bytes(32))])  # same value: idempotent
    with pytest.raises(ValueError, match="already stored"):
        store.put([(0, 0, b"\x01" * 32)])


@settings(max_examples=250, deadline=None)
@given(st.integers(0, MAX), st.integers(0, 50))
def test_compact_range_extend_equals_append(start: int, more: int) -> None:
    end = min(start + more, MAX)
    hashes = [leaf_hash(d) for d in DATA[start:end]]
    fast = CompactRange.from_store(full_store(), start)
    slow = CompactRange.from_store(full_store(), start)
    fast.extend(hashes)
    for h in hashes:
        slow.append(h)
    assert fast.size == slow.size == end
    assert fast.root() == slow.root() == ref_root(end)


def test_compact_range_validates_its_input() -> None:
    with pytest.raises(ValueError, match="popcount"):
        CompactRange(3, [bytes(32)])
    rng = CompactRange()
    assert rng.root() == EMPTY_ROOT
    with pytest.raises(ValueError, match="32 bytes"):
        rng.extend([leaf_hash(b"a"), b"short"])
    assert rng.size == 1  # the good leaf before the bad one stays counted
    with pytest.raises(ValueError, match="32 bytes"):
        rng.append(b"short")


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (root, (-1,)),
        (inclusion_proof, (0, 0)),
        (inclusion_proof, (5, 5)),
        (inclusion_proof, (-1, 5)),
        (consistency_proof, (6, 5)),
        (consistency_proof, (-1, 5)),
    ],
)
def test_impossible_arguments_raise_value_error(call: object, args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="size"):
        call(full_store(), *args)  # type: ignore[operator]


# Stored levels (STRIDE) and the verifier's streaming tree -----------------------------

@cache
def banded_store() -> MemoryNodeStore:
    """Only what the database keeps: level 0 and every STRIDE-th level."""
    store = MemoryNodeStore()
    entries, _ = append(store, 0, [leaf_hash(d) for d in DATA])
    store.put((lv, ix, h) for lv, ix, h in entries if is_stored_level(lv))
    return store


@settings(max_examples=200)
@given(data=st.data())
def test_proofs_from_the_stored_levels_match_reference(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX))
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(0, size))
    store = BandedNodeStore(banded_store())
    assert inclusion_proof(store, index, size) == path(index, DATA[:size])
    assert root(store, size) == ref_root(size)
    if 0 < first < size:
        assert consistency_proof(store, first, size) == proof(first, DATA[:size])


@settings(max_examples=100)
@given(data=st.data())
def test_a_proof_reads_a_few_short_ranges_on_huge_trees(data: st.DataObject) -> None:
    """O(log n) rows in O(log n / STRIDE) ranges, one get_ranges per proof."""
    size = data.draw(st.integers(2, 2**40))
    index = data.draw(st.integers(0, size - 1))
    calls: list[Sequence[tuple[int, int, int]]] = []

    class Synthetic:
        def get_ranges(self, ranges: Sequence[tuple[int, int, int]]) -> dict[NodeID, bytes]:
            calls.append(ranges)
            return {(lv, i): hashlib.sha256(b"%d/%d" % (lv, i)).digest()
                    for lv, start, end in ranges for i in range(start, end)}

    inclusion_proof(BandedNodeStore(Synthetic()), index, size)
    assert len(calls) == 1
    ranges = calls[0]
    assert all(is_stored_level(lv) for lv, _, _ in ranges)
    depth = (size - 1).bit_length()
    assert len(ranges) <= 2 * (depth // STRIDE + 1) + 2
    assert sum(end - start for _, start, end in ranges) <= (depth + 1) * 2 ** STRIDE


def test_a_missing_stored_node_is_reported() -> None:
    store = MemoryNodeStore()
    entries, _ = append(store, 0, [leaf_hash(d) for d in DATA[:40]])
    store.put((lv, ix, h) for lv, ix, h in entries if is_stored_level(lv) and (lv, ix) != (0, 3))
    with pytest.raises(MissingNodeError):
        inclusion_proof(BandedNodeStore(store), 9, 40)


@settings(max_examples=60)
@given(size=st.integers(0, 600), block_level=st.integers(1, 6), data=st.data())
def test_streaming_tree_matches_reference(size: int, block_level: int,
                                          data: st.DataObject) -> None:
    leaves = [leaf_data(i) for i in range(size)]
    sizes = sorted(set(data.draw(st.lists(st.integers(1, max(size, 1)), max_size=12))))
    sizes = [s for s in sizes if s <= size]
    tree = StreamingTree(block_level)
    roots: dict[int, bytes] = {}
    block = 1 << block_level
    for start in range(0, size, block):
        chunk = [leaf_hash(d) for d in leaves[start:start + block]]
        roots.update(tree.add(chunk, [s for s in sizes if start < s <= start + len(chunk)]))
    assert tree.root() == mth(leaves)
    assert roots == {s: mth(leaves[:s]) for s in sizes}
    full = store_of(leaves) if size else MemoryNodeStore()
    for level, hashes in tree.nodes.items():  # every complete stored node above level 0
        assert level > 0 and is_stored_level(level)
        assert hashes == [full.get(level, i) for i in range(len(hashes))]
        assert full.get(level, len(hashes)) is None
    assert set(tree.nodes) == {lv for lv in range(STRIDE, 64, STRIDE) if size >> lv}


def test_streaming_tree_takes_whole_blocks_in_order() -> None:
    tree = StreamingTree(2)
    tree.add([leaf_hash(b"a")] * 3)
    with pytest.raises(ValueError, match="blocks"):
        tree.add([leaf_hash(b"b")])  # after a partial block
    with pytest.raises(ValueError, match="blocks"):
        StreamingTree(2).add([leaf_hash(b"c")] * 5)  # more than a block
