"""What the audit log needs from the service's keys and settings, importable without the
web application (the `dossier audit` commands start fast)."""

from __future__ import annotations

import hashlib
import hmac

from audit.authentication import RecordAuthenticator
from dossier.crypto import KeyProvider, provider_from_settings
from dossier.settings import Settings


def key_provider(settings: Settings) -> KeyProvider:
    if settings.key_provider == "pkcs11":
        return provider_from_settings("pkcs11", settings.data_dir,
                                      lib_path=settings.pkcs11_library,
                                      token_label=settings.pkcs11_token_label,
                                      pin=settings.pkcs11_pin)
    return provider_from_settings("local", settings.data_dir)


def record_authenticator(keys: KeyProvider) -> RecordAuthenticator:
    """The HMAC key of audit records: derived from the key provider's blind-index key (on
    the HSM in production), never stored in the database."""
    return RecordAuthenticator(hmac.new(keys.blind_index_key(), b"audit-record-mac",
                                        hashlib.sha256).digest())


def audit_origin(settings: Settings) -> str:
    """The checkpoint origin line: the service's public host and path, no scheme."""
    return settings.public_base.split("://", 1)[1] + "/audit"
