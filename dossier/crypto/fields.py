"""Field-level encryption of top-level resource elements under a patient's data key.

Token (what the database stores per encrypted element), base64url without padding::

    0x01 (format version) | 12-byte random nonce | AES-256-GCM ciphertext + 16-byte tag

The plaintext is the element's compact JSON, padded with spaces to a multiple
of 32 bytes (JSON ignores trailing whitespace) so lengths leak less. The
associated data binds the token to where it belongs; see ``associated_data``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dossier.crypto.errors import DecryptionError, KeyDestroyed
from dossier.crypto.interfaces import KeyProvider, WrappedKey
from dossier.crypto.local import KEY_BYTES

FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
PAD_TO = 32
# Elements that route and version a resource: they stay in clear.
NEVER_SEALED = frozenset({"resourceType", "id", "meta"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# built once: json.dumps with arguments makes a new encoder per call (~8 µs)
_VALUE_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def associated_data(*, patient_id: str, resource_type: str, resource_id: str,
                    version: str | int, element: str) -> bytes:
    """The AAD of one element: a JSON array, so no two contexts encode the same.

    ``["dossier/fle/1", patient_id, resource_type, resource_id, version, element]``
    """
    return _aad(_aad_prefix(patient_id, resource_type, resource_id, version), element)


def _aad_prefix(patient_id: str, resource_type: str, resource_id: str,
                version: str | int) -> bytes:
    """The AAD up to the element name, shared by every element of one resource version."""
    context = [f"dossier/fle/{FORMAT_VERSION}", str(patient_id), str(resource_type),
               str(resource_id), str(version)]
    return ("[" + ",".join(map(_json_string, context)) + ",").encode("ascii")


def _aad(prefix: bytes, element: str) -> bytes:
    return prefix + _json_string(str(element)).encode("ascii") + b"]"


def _json_string(text: str) -> str:
    """A JSON string literal, ASCII only (what json.dumps writes for a str)."""
    return json.encoder.encode_basestring_ascii(text)


class FieldCipher:
    """Seals and opens elements for one request; unwrapped data keys live only in it.

    Call ``close()`` (or use ``with``) at the end of the request to drop them.
    """

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._deks: dict[str, bytes] = {}
        self._aeads: dict[bytes, AESGCM] = {}

    def __enter__(self) -> FieldCipher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Forget every data key held for this request."""
        self._deks.clear()
        self._aeads.clear()

    # -- data keys ---------------------------------------------------------------------
    def remember(self, patient_id: str, dek: bytes) -> None:
        """Hold a DEK just created for ``patient_id`` for the rest of the request."""
        self._deks[patient_id] = dek

    def cached(self, patient_id: str) -> bytes | None:
        """The DEK already unwrapped (or created) in this request, if any."""
        return self._deks.get(patient_id)

    def forget(self, patient_id: str) -> None:
        """Drop ``patient_id``'s DEK (after erasure)."""
        dek = self._deks.pop(patient_id, None)
        if dek is not None:
            self._aeads.pop(dek, None)

    def new_data_key(self) -> tuple[bytes, WrappedKey]:
        """A fresh random DEK and its wrapped form for ``patient_keys``."""
        dek = secrets.token_bytes(KEY_BYTES)
        kek_id, wrapped = self.provider.wrap(dek)
        return dek, WrappedKey(kek_id, wrapped)

    def data_key(self, patient_id: str, stored: WrappedKey | None) -> bytes:
        """The patient's DEK, unwrapped once per request.

        ``stored`` is the patient's ``patient_keys`` row; pass None when the row
        was erased and the lead expected one: that raises KeyDestroyed.
        """
        dek = self._deks.get(patient_id)
        if dek is None:
            if stored is None:
                raise KeyDestroyed()
            dek = self.provider.unwrap(stored.kek_id, stored.wrapped)
            self._deks[patient_id] = dek
        return dek

    # -- elements ----------------------------------------------------------------------
    def seal(self, resource: Mapping[str, Any], paths: Sequence[str], dek: bytes, *,
             patient_id: str, resource_type: str, resource_id: str,
             version: str | int) -> tuple[dict[str, Any], dict[str, str]]:
        """Split ``resource`` into (clear part, {element: token}) for the elements in ``paths``.

        Elements of ``paths`` absent from the resource are skipped.
        """
        _check_identity(resource, resource_type, resource_id)
        for path in paths:
            if not isinstance(path, str) or not path or "." in path or path in NEVER_SEALED:
                raise ValueError("encrypted paths are top-level element names other than "
                                 "resourceType, id and meta")
        aead = self._aead(dek)
        prefix = _aad_prefix(patient_id, resource_type, resource_id, version)
        clear = dict(resource)
        sealed: dict[str, str] = {}
        for element in dict.fromkeys(paths):
            if element not in clear:
                continue
            plaintext = _encode(clear.pop(element))
            nonce = secrets.token_bytes(NONCE_BYTES)
            ciphertext = aead.encrypt(nonce, plaintext, _aad(prefix, element))
            blob = bytes([FORMAT_VERSION]) + nonce + ciphertext
            sealed[element] = base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")
        return clear, sealed

    def open(self, clear: Mapping[str, Any], sealed: Mapping[str, str], dek: bytes, *,
             patient_id: str, resource_type: str, resource_id: str,
             version: str | int) -> dict[str, Any]:
        """The resource ``seal`` was given (equal as JSON), or DecryptionError."""
        aead = self._aead(dek)
        prefix = _aad_prefix(patient_id, resource_type, resource_id, version)
        resource = dict(clear)
        for element, token in sealed.items():
            if not isinstance(element, str) or element in resource:
                raise DecryptionError()
            nonce, ciphertext = _decode(token)
            try:
                plaintext = aead.decrypt(nonce, ciphertext, _aad(prefix, element))
            except InvalidTag:
                raise DecryptionError() from None
            resource[element] = _parse(plaintext)
        return resource

    def _aead(self, dek: bytes) -> AESGCM:
        aead = self._aeads.get(dek)
        if aead is None:
            if not isinstance(dek, bytes) or len(dek) != KEY_BYTES:
                raise ValueError("a data key is 32 bytes")
            aead = self._aeads[dek] = AESGCM(dek)
        return aead


def _check_identity(resource: Mapping[str, Any], resource_type: str, resource_id: str) -> None:
    if resource.get("resourceType", resource_type) != resource_type:
        raise ValueError("resourceType differs from the resource_type given")
    if resource.get("id", resource_id) != resource_id:
        raise ValueError("id differs from the resource_id given")


def _encode(value: Any) -> bytes:
    raw = _VALUE_JSON.encode(value).encode("utf-8", "surrogatepass")
    return raw + b" " * (-len(raw) % PAD_TO)


def _parse(plaintext: bytes) -> Any:
    try:
        return json.loads(plaintext.decode("utf-8", "surrogatepass"))
    except ValueError:  # authenticated yet not JSON: only a writer holding the key could do it
        raise DecryptionError() from None


def _decode(token: object) -> tuple[bytes, bytes]:
    """Split a token into (nonce, ciphertext); any malformation is a DecryptionError."""
    if not isinstance(token, str) or not _B64URL.fullmatch(token) or len(token) % 4 == 1:
        raise DecryptionError()
    # one byte string has one encoding: refuse a last character with unused bits set
    unused_bits = {0: 0, 2: 0x0F, 3: 0x03}[len(token) % 4]
    if _B64URL_ALPHABET.index(token[-1]) & unused_bits:
        raise DecryptionError()
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise DecryptionError() from None
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[0] != FORMAT_VERSION:
        raise DecryptionError()
    return blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
