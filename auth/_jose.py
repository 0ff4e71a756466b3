"""Small helpers over joserfc shared by token validation and the dev issuer (private)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from typing import Any

from joserfc.jwa import EdDSAAlgorithm, JWSAlgModel
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

PublicKey = RSAKey | ECKey | OKPKey

# Which key each accepted algorithm needs: (kty, crv or None).
ALG_KEYS: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "Ed25519": ("OKP", frozenset({"Ed25519"})),
}
MIN_RSA_BITS = 2048


_EDDSA = EdDSAAlgorithm()


class _Registry(JWSRegistry):
    def get_alg(self, name: str) -> JWSAlgModel:
        # RFC 9864 deprecates the name "EdDSA" for "Ed25519"; issuers still publish
        # it, so it is served without joserfc's warning when explicitly allowed.
        if name == "EdDSA" and self.allowed and name in self.allowed:
            return _EDDSA
        return super().get_alg(name)


def registry(algorithms: Collection[str]) -> JWSRegistry:
    """A JWS registry that allows exactly ``algorithms`` and ignores unknown non-crit headers."""
    return _Registry(algorithms=list(algorithms), strict_check_header=False)


def b64url_decode(part: str) -> bytes:
    padded = part + "=" * (-len(part) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unverified_part(part: str) -> dict[str, Any]:
    """Decode one base64url JSON object of a compact JWS, without any trust in it."""
    try:
        value = json.loads(b64url_decode(part))
    except (ValueError, UnicodeError, binascii.Error):
        return {}
    return value if isinstance(value, dict) else {}


def _rsa_bits(n: str) -> int:
    return int.from_bytes(b64url_decode(n), "big").bit_length()


def import_public_key(jwk: Mapping[str, Any]) -> PublicKey | None:
    """Import the public part of a signing JWK; ``None`` for a key we do not verify with."""
    kty = jwk.get("kty")
    meta = {name: jwk[name] for name in ("kid", "alg", "use") if isinstance(jwk.get(name), str)}
    if meta.get("use", "sig") != "sig":
        return None
    try:
        if kty == "RSA":
            if _rsa_bits(str(jwk["n"])) < MIN_RSA_BITS:
                return None
            return RSAKey.import_key({"kty": "RSA", "n": jwk["n"], "e": jwk["e"], **meta})
        if kty == "EC":
            return ECKey.import_key(
                {"kty": "EC", "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"], **meta})
        if kty == "OKP" and jwk.get("crv") in ("Ed25519", "Ed448"):
            return OKPKey.import_key({"kty": "OKP", "crv": jwk["crv"], "x": jwk["x"], **meta})
    except (KeyError, ValueError, TypeError, binascii.Error):
        return None
    return None


def import_public_keys(jwks: Mapping[str, Any]) -> list[PublicKey]:
    """The usable public signing keys of a JWKS document; others are skipped."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return []
    imported = (import_public_key(k) for k in keys if isinstance(k, Mapping))
    return [key for key in imported if key is not None]


def key_fits(key: PublicKey, alg: str) -> bool:
    """Whether ``key`` can verify a signature made with ``alg``."""
    wanted = ALG_KEYS.get(alg)
    if wanted is None:
        return False
    kty, curves = wanted
    if key.key_type != kty:
        return False
    if curves is not None and getattr(key, "curve_name", None) not in curves:
        return False
    key_alg = key.alg
    return key_alg is None or key_alg == alg


def find_key(keys: Collection[PublicKey], kid: str | None, alg: str) -> PublicKey | None:
    """The key named ``kid`` that fits ``alg``; without a kid, the only key that fits."""
    if kid is not None:
        named = [key for key in keys if key.kid == kid]
        return named[0] if named and key_fits(named[0], alg) else None
    fitting = [key for key in keys if key_fits(key, alg)]
    return fitting[0] if len(fitting) == 1 else None
