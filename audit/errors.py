"""The audit package's errors: one small tree, no personal data in any message.

Messages name sizes, indices and which check failed; they never carry record
contents. Hashes are public (they are served by the proof endpoints).
"""

from __future__ import annotations


class AuditError(Exception):
    """Base of every error this package raises."""


class MissingNodeError(AuditError):
    """The node store lacks a perfect node the tree needs (the store is incomplete)."""

    def __init__(self, level: int, index: int) -> None:
        super().__init__(f"missing tree node level={level} index={index}")
        self.level = level
        self.index = index


class ProofError(AuditError):
    """A Merkle proof did not verify."""


class ProofRangeError(ProofError):
    """The index or sizes are impossible (index >= size, first > second, negative)."""


class MalformedProofError(ProofError):
    """The proof is badly formed: wrong number of hashes, wrong hash length, bad encoding."""


class RootMismatchError(ProofError):
    """The proof recomputes to a root other than the expected one."""

    def __init__(self, which: str, expected: bytes, computed: bytes) -> None:
        super().__init__(f"{which} root mismatch")
        self.which = which
        self.expected = expected
        self.computed = computed


class LeafMismatchError(ProofError):
    """A receipt's ``leaf_hash`` is not the RFC 6962 hash of its ``leaf`` bytes."""


class TreeHeadError(AuditError):
    """A signed tree head or checkpoint did not verify."""


class MalformedTreeHeadError(TreeHeadError):
    """The tree head JSON, checkpoint text or public JWK is not well formed."""


class BadSignatureError(TreeHeadError):
    """The Ed25519 signature does not verify under the given public key."""


class OriginMismatchError(TreeHeadError):
    """The checkpoint names another log than the one expected."""


class SigningKeyError(AuditError):
    """The signing key file is unreadable or holds no Ed25519 private key."""
