"""Signed tree heads: C2SP-style checkpoint text signed with Ed25519 (SPEC §12).

The checkpoint is exactly three lines, each ending in a newline::

    <origin>\\n<tree size in decimal>\\n<base64 root hash>\\n

and the signature is Ed25519 over its UTF-8 bytes. The JSON tree head
repeats ``tree_size`` and ``root_hash`` for convenience and adds a
``timestamp`` (RFC 3339, UTC) that is *not* covered by the signature.
The public key is served as an OKP/Ed25519 JWK whose ``kid`` is its RFC 7638
thumbprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from audit.canonical import b64decode, b64encode, b64url_decode, b64url_encode
from audit.errors import (
    BadSignatureError,
    MalformedTreeHeadError,
    OriginMismatchError,
    SigningKeyError,
)
from audit.hashing import HASH_SIZE

_SIZE = re.compile(r"0|[1-9][0-9]*")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
_SIGNATURE_SIZE = 64


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the log commits to: its origin (name), a tree size and that tree's root."""

    origin: str
    tree_size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        origin = self.origin
        if not isinstance(origin, str) or not origin:
            raise MalformedTreeHeadError("checkpoint origin must be a non-empty string")
        if "+" in origin or any(ch.isspace() or not ch.isprintable() for ch in origin):
            raise MalformedTreeHeadError("checkpoint origin must hold no spaces, '+' or controls")
        size = self.tree_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedTreeHeadError("checkpoint tree size must be a non-negative integer")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedTreeHeadError(f"checkpoint root must be {HASH_SIZE} bytes")

    def text(self) -> str:
        """The signed checkpoint text."""
        return f"{self.origin}\n{self.tree_size}\n{b64encode(self.root_hash)}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint text strictly: three lines, each newline-terminated."""
        if not isinstance(text, str):
            raise MalformedTreeHeadError("checkpoint must be text")
        lines = text.split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise MalformedTreeHeadError("checkpoint must be three newline-terminated lines")
        origin, size, root_b64 = lines[:3]
        if not _SIZE.fullmatch(size):
            raise MalformedTreeHeadError("checkpoint size line must be a decimal number")
        try:
            root_hash = b64decode(root_b64)
        except ValueError as exc:
            raise MalformedTreeHeadError("checkpoint root line must be base64") from exc
        return cls(origin, int(size), root_hash)


class Signer(Protocol):
    """Signs tree heads. Backed by a key file now, by the key provider later."""

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over ``data``."""
        ...

    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies this signer's signatures."""
        ...


class Ed25519FileSigner:
    """An Ed25519 private key held in memory, loaded from (or created as) a PEM file."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Ed25519FileSigner:
        """Load the PKCS#8 PEM key at ``path``, creating it (mode 0600) if absent.

        Creation is atomic: the key is written to a private temporary file and
        hard-linked into place, so concurrent starters end up with one key.
        """
        path = Path(path)
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _create_private_file(path, pem)
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningKeyError(f"cannot load signing key from {path.name}") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise SigningKeyError(f"{path.name} does not hold an Ed25519 private key")
        return cls(loaded)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()


def _create_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 unless the file already exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: keep its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(x: str) -> str:
    """RFC 7638 thumbprint of an OKP/Ed25519 JWK with public value ``x`` (RFC 8037 §2)."""
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(members.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The Ed25519 public key as an OKP JWK (RFC 8037) with its thumbprint as ``kid``."""
    x = b64url_encode(_raw_public(public_key))
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "kid": jwk_thumbprint(x)}


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 public key of an OKP JWK; raise MalformedTreeHeadError otherwise."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise MalformedTreeHeadError("public key must be an OKP Ed25519 JWK")
    if "d" in jwk:
        raise MalformedTreeHeadError("public JWK must not hold a private key")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise MalformedTreeHeadError("public JWK 'x' must be a string")
    try:
        return Ed25519PublicKey.from_public_bytes(b64url_decode(x))
    except ValueError as exc:
        raise MalformedTreeHeadError("public JWK 'x' is not an Ed25519 public key") from exc


class TreeHeadJSON(TypedDict):
    """Body of ``GET /audit/tree-head`` (SPEC §12)."""

    tree_size: int
    root_hash: str
    timestamp: str
    checkpoint: str
    signature: str


def rfc3339_utc(moment: datetime) -> str:
    """``moment`` as RFC 3339 in UTC with a ``Z``, to the second."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tree_head_json(checkpoint: Checkpoint, signer: Signer, now: datetime) -> TreeHeadJSON:
    """Sign ``checkpoint`` and build the tree-head body; ``now`` is the injected clock."""
    text = checkpoint.text()
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": b64encode(checkpoint.root_hash),
        "timestamp": rfc3339_utc(now),
        "checkpoint": text,
        "signature": b64encode(signer.sign(text.encode("utf-8"))),
    }


def verify_checkpoint(public_key: Ed25519PublicKey, text: str, signature: bytes) -> Checkpoint:
    """Parse checkpoint text and check its Ed25519 signature (what a stored head holds).

    Raises MalformedTreeHeadError or BadSignatureError."""
    checkpoint = Checkpoint.parse(text)
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_SIZE:
        raise MalformedTreeHeadError("signature must be 64 bytes")
    try:
        public_key.verify(signature, text.encode("utf-8"))
    except InvalidSignature as exc:
        raise BadSignatureError("tree head signature does not verify") from exc
    return checkpoint


def verify_tree_head(
    head: Mapping[str, Any], jwk: Mapping[str, Any], origin: str | None = None
) -> Checkpoint:
    """Check a tree head's signature and fields; return its checkpoint.

    Raises BadSignatureError, MalformedTreeHeadError (also when ``tree_size``
    or ``root_hash`` disagree with the signed checkpoint) or
    OriginMismatchError when ``origin`` is given and differs.
    """
    public_key = public_key_from_jwk(jwk)
    text, signature_b64 = head.get("checkpoint"), head.get("signature")
    if not isinstance(text, str) or not isinstance(signature_b64, str):
        raise MalformedTreeHeadError("checkpoint and signature must be strings")
    try:
        signature = b64decode(signature_b64)
    except ValueError as exc:
        raise MalformedTreeHeadError("signature must be base64") from exc
    checkpoint = verify_checkpoint(public_key, text, signature)
    size = head.get("tree_size")
    if not isinstance(size, int) or isinstance(size, bool) or size != checkpoint.tree_size:
        raise MalformedTreeHeadError("tree_size differs from the signed checkpoint")
    if head.get("root_hash") != b64encode(checkpoint.root_hash):
        raise MalformedTreeHeadError("root_hash differs from the signed checkpoint")
    timestamp = head.get("timestamp")
    if not isinstance(timestamp, str) or not _TIMESTAMP.fullmatch(timestamp):
        raise MalformedTreeHeadError("timestamp must be RFC 3339 UTC ('Z')")
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatchError("checkpoint is from another log")
    return checkpoint
