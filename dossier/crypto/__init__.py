"""Field-level envelope encryption (SPEC §7).

A random AES-256-GCM data key (DEK) per patient seals the declared top-level
elements of that patient's resources; a key-encryption key (KEK) held by a
``KeyProvider`` wraps each DEK. Identifiers are searched through a keyed blind
index. See docs/encryption.md.
"""

from __future__ import annotations

from dossier.crypto.blind_index import blind_index, normalise
from dossier.crypto.errors import CryptoError, DecryptionError, KeyDestroyed, KeyUnavailable
from dossier.crypto.fields import FieldCipher, associated_data
from dossier.crypto.hsm import Pkcs11KeyProvider
from dossier.crypto.interfaces import KeyProvider, WrappedKey
from dossier.crypto.local import LocalFileKeyProvider
from dossier.crypto.providers import provider_from_settings, register_provider
from dossier.crypto.rotation import rewrap_all

__all__ = [
    "CryptoError",
    "DecryptionError",
    "FieldCipher",
    "KeyDestroyed",
    "KeyProvider",
    "KeyUnavailable",
    "LocalFileKeyProvider",
    "Pkcs11KeyProvider",
    "WrappedKey",
    "associated_data",
    "blind_index",
    "normalise",
    "provider_from_settings",
    "register_provider",
    "rewrap_all",
]
