"""Keyed blind index: exact search on identifiers without storing them in clear.

``blind_index(key, system, value)`` = hex HMAC-SHA256 under the blind-index key
(never a DEK or KEK) of a domain-separated, length-prefixed message::

    b"dossier/blind-index/v1\\x00" | len(system) as 4 bytes big-endian | system | value

Both parts are NFC-normalised and stripped of surrounding whitespace. Pass
``system=""`` for the "any system" index that answers ``identifier=value``.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

_DOMAIN = b"dossier/blind-index/v1\x00"
MIN_KEY_BYTES = 32


def normalise(text: str) -> str:
    """The form both writer and searcher hash: NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", text).strip()


def blind_index(key: bytes, system: str, value: str) -> str:
    """64 hex characters; equal inputs (after ``normalise``) give equal indexes."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError("the blind-index key must be at least 32 bytes")
    system_bytes = normalise(system).encode("utf-8", "surrogatepass")
    value_bytes = normalise(value).encode("utf-8", "surrogatepass")
    if not value_bytes:
        raise ValueError("an identifier value is needed")
    message = _DOMAIN + len(system_bytes).to_bytes(4, "big") + system_bytes + value_bytes
    return hmac.new(key, message, hashlib.sha256).hexdigest()
