"""Records authenticated with a key the database does not hold (issue 16).

The service computes an HMAC-SHA256 over each record's leaf hash with a key from its key
provider (the HSM in production) and stores it beside the record. Whoever can only write
to the database — an application role with INSERT, a superuser — cannot compute it, so
`verify` rejects any record the service did not write, however plausible its hashes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from audit.hashing import leaf_hash

MAC_SIZE = 32
_DOMAIN = b"dossier-audit-record-v1\x00"


class RecordAuthenticator:
    """HMAC-SHA256 over ``_DOMAIN || leaf_hash(leaf)`` with a key held in memory.

    The MAC covers the RFC 6962 leaf hash (SHA-256 of the leaf bytes), which `verify`
    computes anyway: one short HMAC per record keeps a million records within seconds."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < 32:
            raise ValueError("the record authentication key must be at least 32 bytes")
        # RFC 2104 with the key schedule done once: the inner hash state after
        # (K xor ipad) || domain, the outer one after (K xor opad). Copying two hashlib
        # states per record costs half of what hmac.HMAC.copy() does (verify does this
        # a million times).
        self._key = key  # for a verify worker process (pickled over its pipe)
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block,
                                                                                   b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded) + _DOMAIN)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def mac_of_hash(self, leaf_hash_: bytes) -> bytes:
        return self.macs_of_hashes([leaf_hash_])[0]

    def macs_of_hashes(self, leaf_hashes: Sequence[bytes]) -> list[bytes]:
        """``mac_of_hash`` of each leaf hash."""
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        macs = []
        for value in leaf_hashes:
            inner = inner_copy()
            inner.update(value)
            outer = outer_copy()
            outer.update(inner.digest())
            macs.append(outer.digest())
        return macs

    def mac(self, leaf: bytes) -> bytes:
        return self.mac_of_hash(leaf_hash(leaf))

    def check(self, leaf: bytes, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac(leaf), mac)

    def check_hash(self, leaf_hash_: bytes, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac_of_hash(leaf_hash_), mac)

    def __reduce__(self) -> tuple[type[RecordAuthenticator], tuple[bytes]]:
        return (RecordAuthenticator, (self._key,))

    def __repr__(self) -> str:
        return "RecordAuthenticator(<key>)"
