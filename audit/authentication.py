"""Records authenticated with a key the database does not hold (issue 16).

The service computes an HMAC-SHA256 over each record's leaf bytes with a key from its key
provider (the HSM in production) and stores it beside the record. Whoever can only write
to the database — an application role with INSERT, a superuser — cannot compute it, so
`verify` rejects any record the service did not write, however plausible its hashes.
"""

from __future__ import annotations

import hashlib
import hmac

MAC_SIZE = 32
_DOMAIN = b"dossier-audit-record-v1\x00"


class RecordAuthenticator:
    """HMAC-SHA256 over ``_DOMAIN || leaf bytes`` with a 32-byte key held in memory."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < 32:
            raise ValueError("the record authentication key must be at least 32 bytes")
        self._key = key

    def mac(self, leaf: bytes) -> bytes:
        return hmac.digest(self._key, _DOMAIN + leaf, hashlib.sha256)

    def check(self, leaf: bytes, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac(leaf), mac)

    def __repr__(self) -> str:
        return "RecordAuthenticator(<key>)"
