"""Records authenticated with a key the database does not hold (issue 16).

The service computes an HMAC-SHA256 over each record's leaf hash with a key from its key
provider (the HSM in production) and stores it beside the record. Whoever can only write
to the database — an application role with INSERT, a superuser — cannot compute it, so
`verify` rejects any record the service did not write, however plausible its hashes.
"""

from __future__ import annotations

import hashlib
import hmac

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
        self._base = hmac.new(key, _DOMAIN, hashlib.sha256)  # key schedule done once

    def mac_of_hash(self, leaf_hash_: bytes) -> bytes:
        h = self._base.copy()
        h.update(leaf_hash_)
        return h.digest()

    def mac(self, leaf: bytes) -> bytes:
        return self.mac_of_hash(leaf_hash(leaf))

    def check(self, leaf: bytes, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac(leaf), mac)

    def check_hash(self, leaf_hash_: bytes, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac_of_hash(leaf_hash_), mac)

    def __repr__(self) -> str:
        return "RecordAuthenticator(<key>)"
