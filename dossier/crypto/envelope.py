"""Envelope encryption of a small value kept in one row: a fresh AES-256-GCM data key per
value, wrapped by the key provider's KEK (rotation re-wraps it: dossier/crypto/rewrap.py).
Used for subscriptions' channel headers; export jobs keep only the wrapped key."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dossier.crypto.errors import DecryptionError
from dossier.crypto.interfaces import KeyProvider


@dataclass(frozen=True)
class Sealed:
    kek_id: str
    wrapped_key: bytes
    sealed: bytes  # nonce (12 bytes) + ciphertext and tag


def new_data_key(provider: KeyProvider) -> tuple[bytes, str, bytes]:
    """A fresh 32-byte key and its wrapped form: (key, kek_id, wrapped)."""
    key = os.urandom(32)
    kek_id, wrapped = provider.wrap(key)
    return key, kek_id, wrapped


def seal(provider: KeyProvider, plain: bytes, context: bytes) -> Sealed:
    key, kek_id, wrapped = new_data_key(provider)
    nonce = os.urandom(12)
    return Sealed(kek_id, wrapped, nonce + AESGCM(key).encrypt(nonce, plain, context))


def open_sealed(provider: KeyProvider, kek_id: str, wrapped_key: bytes, sealed: bytes,
                context: bytes) -> bytes:
    key = provider.unwrap(kek_id, wrapped_key)
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], context)
    except Exception:  # noqa: BLE001 - InvalidTag and malformed input alike
        raise DecryptionError() from None
