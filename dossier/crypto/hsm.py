"""PKCS#11 key provider: KEKs are non-extractable AES keys on an HSM token.

Objects on the token (``key_label`` defaults to ``dossier-kek``)::

    <key_label>:1, :2, ...     AES-256, WRAP/UNWRAP, sensitive, non-extractable: KEK versions
    <key_label>:blind-index    generic secret, SIGN only, non-extractable: root of the
                               blind-index key (derived with CKM_SHA256_HMAC, never rotated)
    <key_label>:audit-signing  Ed25519 key pair (CKM_EDDSA), private half non-extractable:
                               signs the audit log's tree heads on the token

Data keys are wrapped on the token with CKM_AES_KEY_WRAP (RFC 3394): the KEK
never leaves the HSM. Tested against SoftHSM2. ``python-pkcs11`` is imported
only when this provider is built.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dossier.crypto.errors import DecryptionError, KeyUnavailable
from dossier.crypto.local import KEY_BYTES

if TYPE_CHECKING:
    import pkcs11

_INDEX_SUFFIX = "blind-index"
_SIGNING_SUFFIX = "audit-signing"
_ED25519_OID = "1.3.101.112"
_INDEX_INFO = b"dossier/blind-index-key/v1"


class Pkcs11KeyProvider:
    """KEKs on the PKCS#11 token labelled ``token_label``; one logged-in session, locked."""

    def __init__(self, lib_path: str, token_label: str, pin: str,
                 key_label: str = "dossier-kek") -> None:
        if not key_label or ":" in key_label:
            raise ValueError("key_label must be non-empty and free of ':'")
        import pkcs11  # optional dependency: only the PKCS#11 provider needs it

        self._p11 = pkcs11
        self._lib_path = lib_path
        self._token_label = token_label
        self._pin = pin
        self.key_label = key_label
        self._lock = threading.RLock()
        self._session: pkcs11.Session | None = None
        self._keys: dict[str, Any] = {}  # kek_id -> key object (typed loosely upstream)
        self._index_key: bytes | None = None
        with self._guard():
            if not self._versions():
                self._generate_kek(1)
            if self._find(f"{key_label}:{_INDEX_SUFFIX}") is None:
                self._generate_index_root()

    # -- KeyProvider -----------------------------------------------------------------
    def current_kek_id(self) -> str:
        with self._guard():
            versions = self._versions()
        if not versions:
            raise KeyUnavailable(f"no KEK labelled {self.key_label}:N on the token")
        return self._kek_id(versions[-1])

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        if not isinstance(dek, bytes | bytearray) or len(dek) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes")
        p11 = self._p11
        with self._guard():
            kek_id = self.current_kek_id()
            kek = self._kek(kek_id)
            # the DEK enters the token as a short-lived session object to be wrapped there
            obj = self._open().create_object({
                p11.Attribute.CLASS: p11.ObjectClass.SECRET_KEY,
                p11.Attribute.KEY_TYPE: p11.KeyType.AES,
                p11.Attribute.VALUE: bytes(dek),
                p11.Attribute.TOKEN: False,
                p11.Attribute.SENSITIVE: False,
                p11.Attribute.EXTRACTABLE: True,
            })
            try:
                wrapped = kek.wrap_key(obj, mechanism=p11.Mechanism.AES_KEY_WRAP)
            finally:
                obj.destroy()
        return kek_id, wrapped

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        p11 = self._p11
        if not isinstance(wrapped, bytes) or len(wrapped) != KEY_BYTES + 8:
            raise DecryptionError()
        with self._guard():
            kek = self._kek(kek_id)
            try:
                obj = kek.unwrap_key(
                    p11.ObjectClass.SECRET_KEY, p11.KeyType.AES, wrapped,
                    mechanism=p11.Mechanism.AES_KEY_WRAP, store=False,
                    template={p11.Attribute.SENSITIVE: False, p11.Attribute.EXTRACTABLE: True},
                )
            except p11.PKCS11Error as exc:
                if _is_outage(p11, exc):
                    raise
                raise DecryptionError() from None  # integrity check failed on the token
            try:
                dek = bytes(obj[p11.Attribute.VALUE])
            finally:
                obj.destroy()
        if len(dek) != KEY_BYTES:
            raise DecryptionError()
        return dek

    def rotate(self) -> str:
        with self._guard():
            versions = self._versions()
            version = (versions[-1] if versions else 0) + 1
            self._generate_kek(version)
        return self._kek_id(version)

    def kek_ids(self) -> list[str]:
        with self._guard():
            return [self._kek_id(v) for v in self._versions()]

    def retire(self, kek_id: str) -> None:
        with self._guard():
            if kek_id == self.current_kek_id():
                raise ValueError("the current KEK cannot be retired; rotate first")
            self._kek(kek_id).destroy()
            self._keys.pop(kek_id, None)

    def blind_index_key(self) -> bytes:
        if self._index_key is None:
            with self._guard():
                root = self._find(f"{self.key_label}:{_INDEX_SUFFIX}")
                if root is None:
                    raise KeyUnavailable("the blind-index key is missing from the token")
                self._index_key = bytes(
                    root.sign(_INDEX_INFO, mechanism=self._p11.Mechanism.SHA256_HMAC)
                )
        return self._index_key

    def audit_signer(self) -> Pkcs11Ed25519Signer:
        """An Ed25519 key pair on the token (``<key_label>:audit-signing``, CKM_EDDSA); the
        private key is sensitive and non-extractable: tree heads are signed on the HSM."""
        with self._guard():
            if self._find_pair_half(self._p11.ObjectClass.PRIVATE_KEY) is None:
                self._generate_signing_pair()
            point = bytes(self._find_pair_half(self._p11.ObjectClass.PUBLIC_KEY)[
                self._p11.Attribute.EC_POINT])
        raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
        try:
            public = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise KeyUnavailable("the audit signing key on the token is not Ed25519") from None
        return Pkcs11Ed25519Signer(self, public)

    def sign_audit(self, data: bytes) -> bytes:
        with self._guard():
            key = self._find_pair_half(self._p11.ObjectClass.PRIVATE_KEY)
            if key is None:
                raise KeyUnavailable("the audit signing key is missing from the token")
            return bytes(key.sign(data, mechanism=self._p11.Mechanism.EDDSA))

    def close(self) -> None:
        with self._lock:
            self._drop_session()

    def __enter__(self) -> Pkcs11KeyProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------
    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise use of the session; turn token failures into KeyUnavailable."""
        with self._lock:
            try:
                yield
            except self._p11.PKCS11Error as exc:
                self._drop_session()  # reconnect on next use (token restarted, session lost)
                raise KeyUnavailable(
                    f"PKCS#11 token {self._token_label!r}: {type(exc).__name__}"
                ) from None

    def _open(self) -> pkcs11.Session:
        if self._session is None:
            p11 = self._p11
            try:
                lib = p11.lib(self._lib_path)
            except (p11.PKCS11Error, OSError):
                raise KeyUnavailable(
                    f"cannot load the PKCS#11 library {self._lib_path!r}") from None
            try:
                token = lib.get_token(token_label=self._token_label)
            except (p11.NoSuchToken, p11.MultipleTokensReturned):
                raise KeyUnavailable(
                    f"no single PKCS#11 token labelled {self._token_label!r}") from None
            try:
                self._session = token.open(rw=True, user_pin=self._pin)
            except p11.UserAlreadyLoggedIn:
                # login is per application: another provider in this process already did it
                self._session = token.open(rw=True)
        return self._session

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None:
            with suppress(self._p11.PKCS11Error):  # the session may already be gone
                session.close()

    def _kek_id(self, version: int) -> str:
        return f"pkcs11:{self.key_label}:{version}"

    def _kek(self, kek_id: str) -> Any:
        key = self._keys.get(kek_id)
        if key is None:
            prefix = f"pkcs11:{self.key_label}:"
            version = kek_id[len(prefix):] if kek_id.startswith(prefix) else ""
            found = self._find(f"{self.key_label}:{version}") if version.isdigit() else None
            if found is None:
                raise KeyUnavailable(f"unknown KEK id {kek_id!r}")
            self._keys[kek_id] = key = found
        return key

    def _find(self, label: str) -> Any:
        p11 = self._p11
        try:
            return self._open().get_key(p11.ObjectClass.SECRET_KEY, label=label)
        except p11.NoSuchKey:
            return None

    def _versions(self) -> list[int]:
        p11 = self._p11
        prefix = f"{self.key_label}:"
        versions = []
        for obj in self._open().get_objects({p11.Attribute.CLASS: p11.ObjectClass.SECRET_KEY,
                                             p11.Attribute.KEY_TYPE: p11.KeyType.AES}):
            label = str(obj[p11.Attribute.LABEL])
            if label.startswith(prefix) and label[len(prefix):].isdigit():
                versions.append(int(label[len(prefix):]))
        return sorted(versions)

    def _secret_template(self) -> dict[Any, Any]:
        a = self._p11.Attribute
        return {a.TOKEN: True, a.PRIVATE: True, a.SENSITIVE: True, a.EXTRACTABLE: False,
                a.MODIFIABLE: False}

    def _generate_kek(self, version: int) -> None:
        p11 = self._p11
        self._open().generate_key(
            p11.KeyType.AES, 256, label=f"{self.key_label}:{version}",
            id=str(version).encode(), store=True,
            capabilities=p11.MechanismFlag.WRAP | p11.MechanismFlag.UNWRAP,
            template=self._secret_template(),
        )

    def _find_pair_half(self, object_class: Any) -> Any:
        p11 = self._p11
        try:
            return self._open().get_key(object_class, p11.KeyType.EC_EDWARDS,
                                        label=f"{self.key_label}:{_SIGNING_SUFFIX}")
        except p11.NoSuchKey:
            return None

    def _generate_signing_pair(self) -> None:
        from pkcs11.util.ec import encode_named_curve_parameters

        p11 = self._p11
        a = p11.Attribute
        params = self._open().create_domain_parameters(
            p11.KeyType.EC_EDWARDS, {a.EC_PARAMS: encode_named_curve_parameters(_ED25519_OID)},
            local=True)
        params.generate_keypair(
            store=True, label=f"{self.key_label}:{_SIGNING_SUFFIX}",
            public_template={a.TOKEN: True, a.VERIFY: True, a.MODIFIABLE: False},
            private_template={a.TOKEN: True, a.PRIVATE: True, a.SENSITIVE: True,
                              a.EXTRACTABLE: False, a.SIGN: True, a.MODIFIABLE: False})

    def _generate_index_root(self) -> None:
        p11 = self._p11
        self._open().generate_key(
            p11.KeyType.GENERIC_SECRET, 256, label=f"{self.key_label}:{_INDEX_SUFFIX}",
            store=True, capabilities=p11.MechanismFlag.SIGN, template=self._secret_template(),
        )


class Pkcs11Ed25519Signer:
    """Signs tree heads on the token; the public key is read once."""

    def __init__(self, provider: Pkcs11KeyProvider, public: Ed25519PublicKey) -> None:
        self._provider = provider
        self._public = public

    def sign(self, data: bytes) -> bytes:
        return self._provider.sign_audit(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._public


def _is_outage(p11: Any, exc: Exception) -> bool:
    """True for errors that mean the token is unreachable, not that the bytes are bad."""
    outages = (p11.DeviceError, p11.DeviceRemoved, p11.DeviceMemory, p11.SessionClosed,
               p11.SessionHandleInvalid, p11.TokenNotPresent, p11.UserNotLoggedIn,
               p11.KeyHandleInvalid, p11.ObjectHandleInvalid, p11.UnwrappingKeyHandleInvalid)
    return isinstance(exc, outages)
