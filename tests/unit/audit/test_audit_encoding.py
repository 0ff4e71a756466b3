"""Domain-separated hashes and wire encodings."""

from __future__ import annotations

import base64
import hashlib

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import b64decode, b64encode, b64url_decode, b64url_encode, canonical_bytes
from audit.hashing import EMPTY_ROOT, leaf_hash, node_hash
from tests.unit.audit.audit_vectors import LEAVES, ROOTS


def test_rfc6962_hashes() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == ROOTS[0]  # the 1-leaf tree's root is its leaf hash
    assert node_hash(leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])) == ROOTS[1]
    assert leaf_hash(b"ab") == hashlib.sha256(b"\x00ab").digest()
    left, right = b"a" * 32, b"b" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert leaf_hash(left + right) != node_hash(left, right)


def test_canonical_bytes_rfc8785_example() -> None:
    # RFC 8785 §3.2.2 / §3.2.3
    record = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    assert canonical_bytes(record) == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_canonical_bytes_sorts_keys_by_utf16_and_drops_whitespace() -> None:
    assert canonical_bytes({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == (
        b'{"a":{"c":"\xc3\xa9","d":[1,2]},"b":1}'
    )
    assert canonical_bytes({"\U0001f600": 1, "\ufb33": 2}) == canonical_bytes(
        {"\ufb33": 2, "\U0001f600": 1}
    )


def test_canonical_bytes_refuses_what_jcs_cannot_say() -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # rfc8785 raises several ValueError subclasses
        canonical_bytes({"x": float("nan")})
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_bytes({"x": 2**60})
    with pytest.raises(TypeError):
        canonical_bytes(["not", "an", "object"])  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_canonical_bytes_is_stable_under_key_order(record: dict[str, object]) -> None:
    reversed_record = dict(reversed(list(record.items())))
    assert canonical_bytes(record) == canonical_bytes(reversed_record)


@given(st.binary(max_size=80))
def test_base64_round_trips(data: bytes) -> None:
    assert b64decode(b64encode(data)) == data
    assert b64encode(data) == base64.b64encode(data).decode()
    assert b64url_decode(b64url_encode(data)) == data
    assert "=" not in b64url_encode(data)


@pytest.mark.parametrize("text", ["AB==", "AA=", "AA", " AA==", "AA==\n", "_-8=", "é", "AA==AA=="])
def test_strict_base64_rejects_non_canonical_text(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        b64decode(text)


@pytest.mark.parametrize("text", ["AB", "AA=", "+/8", "A", "é"])
def test_strict_base64url_rejects_non_canonical_text(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


# canonical_bytes makes plain records with orjson (C); the bytes must be JCS's, always.
json_values = st.recursive(
    st.none() | st.booleans() | st.text() |
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) |
    st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


# keys from the ranges where code point order and UTF-16 order part (U+E000-U+FFFF against
# the astral planes), and plain ASCII
keys = st.text(st.sampled_from("ab\ufb33\uffff\ue000\U0001f600\U00010000"), max_size=3) | \
    st.text(max_size=8)


@settings(max_examples=400)
@given(st.dictionaries(keys, json_values, max_size=6))
def test_canonical_bytes_are_rfc8785s_for_any_record(record: dict) -> None:
    try:
        expected = rfc8785.dumps(record)
    except (ValueError, UnicodeError):
        with pytest.raises((ValueError, UnicodeError)):
            canonical_bytes(record)
        return
    assert canonical_bytes(record) == expected


def test_keys_are_ordered_by_utf16_units_as_jcs_orders_them() -> None:
    record = {"\U0001f600": 1, "\ufb33": 2, "a": {"\uffff": 3, "\U00010000": 4}}
    assert canonical_bytes(record) == rfc8785.dumps(record)
    assert canonical_bytes(record).index("\U0001f600".encode()) < \
        canonical_bytes(record).index("\ufb33".encode())


def test_every_code_point_is_escaped_as_jcs_escapes_it() -> None:
    for cp in (*range(0xD800), *range(0xE000, 0x110000, 7), 0x10FFFF):
        value = {"k": chr(cp) + "x"}
        assert canonical_bytes(value) == rfc8785.dumps(value), hex(cp)
