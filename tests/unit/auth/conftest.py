"""Fixtures for the auth tests: test keys, valid claims and a token factory that signs them.

Tests use ISSUER, AUDIENCE and NOW below (repeated as constants in the test
modules, which cannot import this file under ``--import-mode=importlib``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from auth import _jose
from auth.tokens import StaticKeys, TokenValidator

ISSUER = "https://dossier.test/auth"
AUDIENCE = "https://dossier.test/fhir"
NOW = datetime(2027, 3, 5, 10, 0, tzinfo=UTC)

Key = RSAKey | ECKey | OKPKey


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    """One signing key per allowed algorithm, with kids rsa-1, ec-1, ed-1."""
    return {
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"}),
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"}),
        "EdDSA": OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1", "use": "sig"}),
    }


@pytest.fixture(scope="session")
def jwks(keys: dict[str, Key]) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys.values()]}


@pytest.fixture
def claims() -> Callable[..., dict[str, Any]]:
    """Valid access-token claims at NOW plus overrides; a ``None`` override removes a claim."""
    def make(**overrides: Any) -> dict[str, Any]:
        now = int(NOW.timestamp())
        values: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "Practitioner/dr-dupont",
            "iat": now, "nbf": now, "exp": now + 300, "jti": "j-1", "client_id": "portal",
            "scope": "openid fhirUser user/*.rs", "fhirUser": "Practitioner/dr-dupont",
            "roles": ["practitioner"],
        }
        values.update(overrides)
        return {k: v for k, v in values.items() if v is not None}
    return make


@pytest.fixture
def mint(keys: dict[str, Key], claims: Callable[..., dict[str, Any]]) -> Callable[..., str]:
    """Sign ``claims(**overrides)`` with the test key of ``alg``."""
    def make(alg: str = "ES256", header: dict[str, Any] | None = None, **overrides: Any) -> str:
        key = keys[alg]
        head = {"alg": alg, "kid": key.kid, "typ": "at+jwt", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, claims(**overrides), key, algorithms=[alg],
                          registry=_jose.registry([alg]))
    return make


@pytest.fixture
def validator(jwks: dict[str, Any]) -> TokenValidator:
    return TokenValidator(ISSUER, AUDIENCE, StaticKeys(jwks))
