"""Building the RFC 6962 / RFC 9162 Merkle tree over a store of perfect subtrees.

Data model (after transparency-dev/merkle and Trillian): the store keeps the
hash of every *complete* subtree, addressed ``(level, index)`` = the
``2**level`` leaves starting at leaf ``index * 2**level``. Level 0 holds the
leaf hashes. A node, once complete, never changes, so the store is append-only
and a node written for a tree of size N serves every later size too.

A tree of any size is the concatenation of at most ``log2(n) + 1`` perfect
subtrees (one per set bit of ``n``, largest first), so the ragged right edge
of ``root``, ``inclusion_proof`` and ``consistency_proof`` is recomputed from
O(log n) stored nodes: each function reads O(log n) nodes and nothing beyond
the requested size.

``append`` is the sequencer's step: given the current size and a batch of new
leaf hashes, it reads the O(log n) frontier nodes and returns the new perfect
nodes to persist and the new root. Requests commit their records without a
tree position; one sequencer at a time integrates them (the caller serialises
sequencers, e.g. with a unique key on ``(level, index)``).

Which levels are stored (``STRIDE``): the leaf hashes (level 0) and every ``STRIDE``-th
level above them. A node at another level is the perfect subtree over at most
``2**(STRIDE - 1)`` stored nodes of the stored level below it, so ``BandedNodeStore``
answers any ``(level, index)`` from a few contiguous ranges of stored rows: an inclusion
proof at 10,000,000 leaves reads 6 short ranges in one statement, and the store holds
about ``n / 15`` nodes beside the leaves instead of ``2n``.

``StreamingTree`` is the verifier's side: it hashes a log read in order a block of
``2**BLOCK_LEVEL`` leaves at a time, level by level, keeps every stored-level node it
computes (to compare with the stored ones) and gives the root at any size on the way.

Verification lives apart, in ``audit.proof``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from audit.errors import MissingNodeError
from audit.hashing import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX, check_hash, node_hash

NodeID = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""

NodeEntry = tuple[int, int, bytes]
"""``(level, index, hash)`` of a perfect subtree, as ``append`` returns it."""


class NodeStore(Protocol):
    """Read access to stored perfect-subtree hashes."""

    def get(self, level: int, index: int) -> bytes | None:
        """Hash of the complete subtree of ``2**level`` leaves from leaf ``index * 2**level``."""
        ...


@runtime_checkable
class BatchNodeStore(NodeStore, Protocol):
    """A store that can fetch many nodes in one round trip (used when present)."""

    def get_many(self, ids: Sequence[NodeID]) -> Mapping[NodeID, bytes]:
        """The stored hashes among ``ids``; absent ids are left out."""
        ...


STRIDE = 4
"""Stored levels are the multiples of STRIDE (level 0: the leaf hashes)."""

BLOCK_LEVEL = 12
"""StreamingTree hashes aligned blocks of 2**BLOCK_LEVEL leaves a level at a time."""

NodeRange = tuple[int, int, int]
"""``(level, start, end)``: the stored nodes ``start <= index < end`` of one stored level."""


def is_stored_level(level: int) -> bool:
    """Is a node at ``level`` stored (level 0 with the leaves, the rest as nodes)?"""
    return level % STRIDE == 0


class RangeStore(Protocol):
    """Read access to the stored levels by contiguous ranges of node indices."""

    def get_ranges(self, ranges: Sequence[NodeRange]) -> Mapping[NodeID, bytes]:
        """The stored hashes in each range (of a stored level); absent ones are left out."""
        ...


class MemoryNodeStore:
    """A dict-backed NodeStore (and RangeStore) for tests and tools. Counts reads."""

    def __init__(self) -> None:
        self._nodes: dict[NodeID, bytes] = {}
        self.reads = 0

    def get(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return self._nodes.get((level, index))

    def get_ranges(self, ranges: Sequence[NodeRange]) -> Mapping[NodeID, bytes]:
        found: dict[NodeID, bytes] = {}
        for level, start, end in ranges:
            for index in range(start, end):
                self.reads += 1
                value = self._nodes.get((level, index))
                if value is not None:
                    found[(level, index)] = value
        return found

    def put(self, entries: Iterable[NodeEntry]) -> None:
        """Store nodes; a node already stored with another hash is an error."""
        for level, index, value in entries:
            old = self._nodes.setdefault((level, index), value)
            if old != value:
                raise ValueError(f"node level={level} index={index} already stored differently")

    def __len__(self) -> int:
        return len(self._nodes)


def _perfect(hashes: Sequence[bytes]) -> bytes:
    """MTH of a perfect subtree from its ``2**k`` consecutive children at one level."""
    level = list(hashes)
    while len(level) > 1:
        pairs = iter(level)
        level = [node_hash(left, right) for left, right in zip(pairs, pairs, strict=True)]
    return level[0]


def _coalesce(ranges: Iterable[NodeRange]) -> list[NodeRange]:
    """Sorted ranges, merged when on one level and at most 2**STRIDE apart (reading a few
    rows more is cheaper than one more range in the statement)."""
    merged: list[NodeRange] = []
    for level, start, end in sorted(ranges):
        if merged and merged[-1][0] == level and start <= merged[-1][2] + (1 << STRIDE):
            last = merged[-1]
            merged[-1] = (level, last[1], max(last[2], end))
        else:
            merged.append((level, start, end))
    return merged


class BandedNodeStore:
    """A BatchNodeStore over a RangeStore holding only the stored levels (``STRIDE``).

    Node ``(level, index)`` is folded from the ``2**(level % STRIDE)`` nodes under it at
    the stored level ``level - level % STRIDE``; every node a call needs is read in one
    ``get_ranges`` (one statement on the database)."""

    def __init__(self, ranges: RangeStore) -> None:
        self.ranges = ranges

    @staticmethod
    def base_range(level: int, index: int) -> NodeRange:
        """The stored nodes node ``(level, index)`` is the perfect subtree of."""
        shift = level % STRIDE
        return level - shift, index << shift, (index + 1) << shift

    def get(self, level: int, index: int) -> bytes | None:
        return self.get_many([(level, index)]).get((level, index))

    def get_many(self, ids: Sequence[NodeID]) -> Mapping[NodeID, bytes]:
        wanted = {node: self.base_range(*node) for node in ids}
        found = self.ranges.get_ranges(_coalesce(wanted.values())) if wanted else {}
        nodes: dict[NodeID, bytes] = {}
        for node, (base, start, end) in wanted.items():
            children = [found[(base, i)] for i in range(start, end) if (base, i) in found]
            if len(children) == end - start:
                nodes[node] = _perfect(children)
        return nodes


def _split(n: int) -> int:
    """RFC 6962's k: the largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _cover(start: int, end: int) -> list[NodeID]:
    """The perfect nodes that make up leaves ``[start, end)``, largest first."""
    nodes: list[NodeID] = []
    size = end - start
    pos = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if pos & ((1 << level) - 1):
                raise ValueError("range is not aligned to its perfect subtrees")
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive perfect subtrees, largest first: right-to-left node hashing."""
    acc = hashes[-1]
    for value in reversed(hashes[:-1]):
        acc = node_hash(value, acc)
    return acc


def _read(store: NodeStore, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
    unique = list(dict.fromkeys(ids))
    found: Mapping[NodeID, bytes]
    get_many = getattr(store, "get_many", None)  # a BatchNodeStore (isinstance is slow)
    if get_many is not None:
        found = get_many(unique)
    else:
        found = {}
        for level, index in unique:
            value = store.get(level, index)
            if value is not None:
                found[(level, index)] = value
    nodes: dict[NodeID, bytes] = {}
    for node_id in unique:
        value = found.get(node_id)
        if value is None:
            raise MissingNodeError(*node_id)
        nodes[node_id] = check_hash(value, "stored node")
    return nodes


def _range_hashes(store: NodeStore, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each leaf range, with one batched read of all the nodes they need."""
    covers = [_cover(start, end) for start, end in ranges]
    nodes = _read(store, [node for cover in covers for node in cover])
    return [_fold([nodes[node] for node in cover]) for cover in covers]


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form RFC 6962 PATH(index, D[0:size]), leaf first."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form RFC 6962 PROOF(first, D[0:second]); 0 < first < second."""
    ranges: list[tuple[int, int]] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def root(store: NodeStore, size: int) -> bytes:
    """RFC 6962 MTH of the first ``size`` leaves (``SHA-256("")`` when empty)."""
    if size < 0:
        raise ValueError("size must not be negative")
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes(store, [(0, size)])[0]


def inclusion_proof(store: NodeStore, index: int, size: int) -> list[bytes]:
    """RFC 6962 audit path of leaf ``index`` in the tree of ``size`` leaves, leaf first."""
    if not 0 <= index < size:
        raise ValueError("index must satisfy 0 <= index < size")
    return _range_hashes(store, _inclusion_ranges(index, size))


def consistency_proof(store: NodeStore, first: int, second: int) -> list[bytes]:
    """RFC 6962 consistency proof between sizes ``first`` and ``second``.

    Empty when ``first`` is 0 or equals ``second`` (RFC 9162 §2.1.4).
    """
    if not 0 <= first <= second:
        raise ValueError("sizes must satisfy 0 <= first <= second")
    if first in (0, second):
        return []
    return _range_hashes(store, _consistency_ranges(first, second))


class CompactRange:
    """The right frontier of a tree: one perfect node per set bit of its size, largest first.

    Enough to append leaves and compute the root in O(log n) memory; the
    verifier streams millions of leaves through it.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("a compact range of size n holds popcount(n) hashes")
        self._size = size
        self._hashes = [check_hash(value, "frontier node") for value in hashes]

    @classmethod
    def from_store(cls, store: NodeStore, size: int) -> CompactRange:
        """The frontier of the stored tree of ``size`` leaves (popcount(size) reads)."""
        if size < 0:
            raise ValueError("size must not be negative")
        ids = _cover(0, size)
        nodes = _read(store, ids)
        return cls(size, [nodes[node] for node in ids])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier's perfect nodes, largest first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[NodeEntry]:
        """Add one leaf; return the perfect nodes it completes, the leaf itself first."""
        check_hash(leaf_hash, "leaf hash")
        index = self._size
        level = 0
        value = leaf_hash
        completed = [(0, index, value)]
        while index >> level & 1:
            level += 1
            value = node_hash(self._hashes.pop(), value)
            completed.append((level, index >> level, value))
        self._hashes.append(value)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Add leaves without reporting the completed nodes (the fast path)."""
        hashes = self._hashes
        size = self._size
        try:
            for value in leaf_hashes:
                if len(value) != HASH_SIZE:
                    raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
                bits = size
                while bits & 1:
                    value = node_hash(hashes.pop(), value)
                    bits >>= 1
                hashes.append(value)
                size += 1
        finally:
            self._size = size

    def root(self) -> bytes:
        """RFC 6962 MTH of the leaves so far."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT


def append(
    store: NodeStore, size: int, leaf_hashes: Iterable[bytes]
) -> tuple[list[NodeEntry], bytes]:
    """Integrate new leaves after the first ``size``: the new perfect nodes and the new root.

    Reads only the popcount(size) frontier nodes. The caller persists the
    returned ``(level, index, hash)`` entries (each exactly once).
    """
    frontier = CompactRange.from_store(store, size)
    entries: list[NodeEntry] = []
    for value in leaf_hashes:
        entries.extend(frontier.append(value))
    return entries, frontier.root()


@dataclass(frozen=True)
class Block:
    """One aligned block of leaves, hashed (``hash_block``): what ``StreamingTree`` needs
    of it. Plain data, so a block can be hashed in another process."""

    start: int
    count: int
    root: bytes | None  # the block's perfect subtree, when the block is whole
    nodes: dict[int, list[bytes]]  # stored levels inside the block, index order
    covers: dict[int, list[bytes]]  # for each size asked for: the block's cover of it
    tail: list[list[bytes]] | None  # a partial block's levels (the log's root needs them)


def hash_block(leaf_hashes: Sequence[bytes], start: int, sizes: Iterable[int] = (),
               block_level: int = BLOCK_LEVEL) -> Block:
    """Hash an aligned block (the log's last may be shorter) a level at a time: about one
    node hash per leaf and little else (list comprehensions)."""
    count = len(leaf_hashes)
    if start % (1 << block_level) or count > 1 << block_level:
        raise ValueError("leaves must come in whole aligned blocks, the last one shorter")
    for value in leaf_hashes:
        if len(value) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
    levels = [list(leaf_hashes)]
    sha, prefix = hashlib.sha256, NODE_PREFIX  # node_hash, inlined: the hot loop
    while len(levels[-1]) > 1:
        pairs = iter(levels[-1])
        levels.append([sha(prefix + a + b).digest()
                       for a, b in zip(pairs, pairs, strict=False)])
    covers = {}
    for size in sizes:
        if not start < size <= start + count:
            raise ValueError("size outside the block")
        covers[size] = [levels[level][index - (start >> level)]
                        for level, index in _cover(start, size)]
    whole = count == 1 << block_level
    return Block(start, count, levels[block_level][0] if whole else None,
                 {level: levels[level] for level in range(STRIDE, len(levels), STRIDE)},
                 covers, None if whole or not count else levels)


class StreamingTree:
    """RFC 6962 roots and stored-level nodes of a log read in order, for the verifier.

    Leaves come in aligned blocks of ``2**BLOCK_LEVEL`` (the last one may be shorter),
    each hashed by ``hash_block`` (here or in another process); the roots of whole blocks
    join a ``CompactRange``, and the root at any size inside a block is folded from that
    frontier and the block's cover of it, in O(log n). ``nodes[level]`` holds, in index
    order from 0, every complete node of each stored level above 0 (what the store must
    hold)."""

    def __init__(self, block_level: int = BLOCK_LEVEL) -> None:
        self.block_level = block_level
        self.size = 0
        self._blocks = CompactRange()
        self.nodes: dict[int, list[bytes]] = {}
        self._tail: Block | None = None

    def add(self, leaf_hashes: Sequence[bytes], sizes: Iterable[int] = ()) -> dict[int, bytes]:
        """Add the next leaves: a whole aligned block, or the log's last (partial) one.
        Returns the root at each of ``sizes`` (each in ``(size, size + len]``)."""
        return self.add_block(hash_block(leaf_hashes, self.size, sizes, self.block_level))

    def add_block(self, block: Block) -> dict[int, bytes]:
        """Add the next block, hashed; the roots at the sizes it was hashed for."""
        if block.start != self.size or self._tail is not None:
            raise ValueError("blocks must come in order, a partial one last")
        frontier = list(self._blocks.hashes)
        roots = {size: _fold(frontier + cover) for size, cover in block.covers.items()}
        for level, hashes in block.nodes.items():
            self.nodes.setdefault(level, []).extend(hashes)
        if block.root is not None:
            for level, _index, value in self._blocks.append(block.root):
                absolute = level + self.block_level
                if level and is_stored_level(absolute):
                    self.nodes.setdefault(absolute, []).append(value)
        elif block.count:
            self._tail = block
        self.size += block.count
        return roots

    def root(self) -> bytes:
        """The root of all the leaves added so far."""
        if self.size == 0:
            return EMPTY_ROOT
        if self._tail is None:
            return self._blocks.root()
        assert self._tail.tail is not None
        levels, start = self._tail.tail, self._tail.start
        return _fold(list(self._blocks.hashes) + [
            levels[level][index - (start >> level)] for level, index in
            _cover(start, self.size)])
