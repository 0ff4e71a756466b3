"""The key-provider interface and what the lead stores per patient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from audit.checkpoint import Signer


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A patient's data key wrapped under a KEK (one row of ``patient_keys``)."""

    kek_id: str
    wrapped: bytes

    def __repr__(self) -> str:  # the wrapped bytes are not secret, but keep logs short
        return f"WrappedKey(kek_id={self.kek_id!r}, wrapped=<{len(self.wrapped)} bytes>)"


@runtime_checkable
class KeyProvider(Protocol):
    """Holds key-encryption keys (KEKs) and never exposes them.

    ``wrap`` uses the current KEK; ``unwrap`` accepts any KEK version the
    provider still holds, so data keys wrapped before a rotation stay readable.
    """

    def current_kek_id(self) -> str:
        """The id of the KEK that ``wrap`` uses now."""
        ...

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        """Wrap a data key under the current KEK: ``(kek_id, wrapped)``."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        """Unwrap; raise KeyUnavailable (unknown/unreachable KEK) or DecryptionError (bad bytes)."""
        ...

    def rotate(self) -> str:
        """Create a new KEK, make it current and return its id; older KEKs keep unwrapping."""
        ...

    def kek_ids(self) -> list[str]:
        """Every KEK version held, oldest first; the last one is current."""
        ...

    def retire(self, kek_id: str) -> None:
        """Destroy an old KEK version for good (refuses the current one)."""
        ...

    def blind_index_key(self) -> bytes:
        """The 32-byte key of the identifier blind index.

        Kept apart from the KEKs: rotating a KEK must not change any blind index.
        """
        ...

    def audit_signer(self) -> Signer:
        """The Ed25519 key that signs the audit log's tree heads (created on first use).

        Never rotated with KEKs: every head the log ever signed verifies with it.
        """
        ...

    def close(self) -> None:
        """Release sessions or handles; the provider is not used afterwards."""
        ...
