"""Errors of field encryption: few, opaque, and free of personal data.

A failed decryption says only that it failed (like Fernet's single
``InvalidToken``): which check failed, and on what, stays unknown to callers.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error this package raises."""


class DecryptionError(CryptoError):
    """A ciphertext or wrapped key did not authenticate. One opaque error, whatever the cause."""

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class KeyDestroyed(DecryptionError):
    """The patient's data key was erased (crypto-shredding); the lead maps it to 410 Gone."""

    def __init__(self) -> None:
        super().__init__("the data key was destroyed")


class KeyUnavailable(CryptoError):
    """A key provider cannot reach a key (unknown KEK id, store unreadable, HSM down).

    Operational, not a sign of tampering: the lead maps it to 503. The message
    names files or labels, never data.
    """
