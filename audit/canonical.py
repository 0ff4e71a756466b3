"""Wire encodings: RFC 8785 canonical JSON for leaf bytes, RFC 4648 base64 for hashes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The record's RFC 8785 (JCS) canonical JSON: the audit leaf bytes.

    Raises ``rfc8785.CanonicalizationError`` (a ValueError) for values JCS
    cannot represent, e.g. NaN, infinite floats or integers beyond 2**53.
    """
    if not isinstance(record, Mapping):
        raise TypeError("an audit record is a JSON object")
    record = dict(record)
    try:
        plain = _plain(record)
    except RecursionError:  # nested deeper than a record ever is: JCS decides
        plain = False
    if plain:  # the same bytes, made in C (rfc8785's Python took ~27 µs a record)
        try:
            return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: JCS decides
            pass
    return rfc8785.dumps(record)


SAFE_INTEGER = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether orjson's sorted output is byte for byte the JCS of `value`: objects with
    ASCII keys (sorted alike by code point and by UTF-16 unit), strings (escaped alike,
    every code point checked: tests/unit/audit), booleans, null, integers JCS accepts.
    Floats and anything else, subclasses included (they may show other contents than
    they hold), go to rfc8785."""
    kind = type(value)
    if kind is str or value is None or value is True or value is False:
        return True
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return kind is int and -SAFE_INTEGER <= value <= SAFE_INTEGER


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as CT and C2SP checkpoints use."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict inverse of ``b64encode``: no other alphabet, bad padding or non-canonical form."""
    if not isinstance(text, str):
        raise ValueError("base64 value must be a string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("invalid base64") from exc
    if b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as JWKs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of ``b64url_encode``."""
    if not isinstance(text, str):
        raise ValueError("base64url value must be a string")
    try:
        data = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("invalid base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data
