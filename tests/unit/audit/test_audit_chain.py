"""The hash chain: its definition, and the first bad index for each kind of tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from audit.chain import GENESIS, ChainRecord, chain_hash, chain_hash_from_leaf_hash, verify_chain
from audit.hashing import leaf_hash


def build(leaves: list[bytes]) -> list[ChainRecord]:
    records: list[ChainRecord] = []
    prev = GENESIS
    for i, leaf in enumerate(leaves):
        h = chain_hash(prev, leaf)
        records.append((i, leaf, prev, h))
        prev = h
    return records


leaf_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=60)


def test_chain_hash_definition() -> None:
    leaf = b'{"id":"a"}'
    expected = hashlib.sha256(
        b"\x02" + bytes(32) + hashlib.sha256(b"\x00" + leaf).digest()
    ).digest()
    assert bytes(32) == GENESIS
    assert chain_hash(GENESIS, leaf) == expected
    assert chain_hash_from_leaf_hash(GENESIS, leaf_hash(leaf)) == expected


def test_chain_hash_rejects_bad_prev() -> None:
    with pytest.raises(ValueError, match="prev_hash"):
        chain_hash(b"short", b"x")


@given(leaf_lists)
def test_intact_chain_verifies(leaves: list[bytes]) -> None:
    records = build(leaves)
    assert verify_chain(records) is None
    assert verify_chain(records, signed_size=len(records)) is None
    assert verify_chain(records, signed_size=len(records) - 1) is None  # newer records are fine


def test_empty_chain() -> None:
    assert verify_chain([]) is None
    assert verify_chain([], signed_size=0) is None
    assert verify_chain([], signed_size=3) == 0


@given(leaf_lists, st.data())
def test_modified_leaf_is_found(leaves: list[bytes], data: st.DataObject) -> None:
    records = build(leaves)
    k = data.draw(st.integers(0, len(records) - 1), label="k")
    new_leaf = data.draw(st.binary(max_size=24), label="new leaf")
    assume(new_leaf != leaves[k])
    index, _, prev, h = records[k]
    records[k] = (index, new_leaf, prev, h)
    assert verify_chain(records) == k


@given(leaf_lists, st.data())
def test_modified_leaf_with_recomputed_hash_breaks_the_next_link(
    leaves: list[bytes], data: st.DataObject
) -> None:
    records = build(leaves)
    assume(len(records) >= 2)
    k = data.draw(st.integers(0, len(records) - 2), label="k")
    index, leaf, prev, _ = records[k]
    records[k] = (index, leaf + b"!", prev, chain_hash(prev, leaf + b"!"))
    assert verify_chain(records) == k + 1


@given(leaf_lists, st.data())
def test_modified_stored_hashes_are_found(leaves: list[bytes], data: st.DataObject) -> None:
    records = build(leaves)
    k = data.draw(st.integers(0, len(records) - 1), label="k")
    index, leaf, prev, h = records[k]
    bad = bytes([h[0] ^ 1]) + h[1:]
    assert verify_chain([*records[:k], (index, leaf, prev, bad), *records[k + 1 :]]) == k
    bad_prev = bytes([prev[0] ^ 1]) + prev[1:]
    assert verify_chain([*records[:k], (index, leaf, bad_prev, h), *records[k + 1 :]]) == k


@given(leaf_lists, st.data())
def test_deleted_record_is_found(leaves: list[bytes], data: st.DataObject) -> None:
    records = build(leaves)
    assume(len(records) >= 2)
    k = data.draw(st.integers(0, len(records) - 2), label="k")
    del records[k]
    assert verify_chain(records) == k
    # renumbering the survivors does not hide it: the next prev_hash is wrong
    renumbered = [(i, leaf, prev, h) for i, (_, leaf, prev, h) in enumerate(records)]
    assert verify_chain(renumbered) == k


@given(leaf_lists)
def test_deleted_tail_is_found_against_the_signed_size(leaves: list[bytes]) -> None:
    records = build(leaves)
    assert verify_chain(records[:-1]) is None  # invisible to the chain alone
    assert verify_chain(records[:-1], signed_size=len(records)) == len(records) - 1


@given(leaf_lists, st.data())
def test_reordered_records_are_found(leaves: list[bytes], data: st.DataObject) -> None:
    records = build(leaves)
    assume(len(records) >= 2)
    i = data.draw(st.integers(0, len(records) - 2), label="i")
    j = data.draw(st.integers(i + 1, len(records) - 1), label="j")
    records[i], records[j] = records[j], records[i]
    assert verify_chain(records) == i
    # swapping the index fields too does not hide it
    relabelled = [(n, leaf, prev, h) for n, (_, leaf, prev, h) in enumerate(records)]
    assert verify_chain(relabelled) == i


@given(leaf_lists, st.data())
def test_wrong_index_field_is_found(leaves: list[bytes], data: st.DataObject) -> None:
    records = build(leaves)
    k = data.draw(st.integers(0, len(records) - 1), label="k")
    wrong = data.draw(st.integers(-5, 500).filter(lambda n: n != k), label="wrong index")
    _, leaf, prev, h = records[k]
    records[k] = (wrong, leaf, prev, h)
    assert verify_chain(records) == k
