"""``private_key_jwt`` client authentication (RFC 7523, SMART Backend Services).

The client signs a short-lived JWT with its private key; we check it against
the public JWKS it registered: iss = sub = client_id, aud = our token
endpoint, exp at most five minutes ahead, and a jti never seen before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from auth import _jose
from auth.errors import invalid_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "RS384", "ES256", "ES384", "EdDSA")
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 60


class JtiCache:
    """jti values seen, kept until their assertion has expired (thread-safe, in memory)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record ``jti``; ``False`` when it was already used and has not expired."""
        with self._lock:
            self._seen = {k: exp for k, exp in self._seen.items() if exp >= now}
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = expires_at
            return True


def assertion_client_id(assertion: str) -> str:
    """The client an assertion claims to come from (unverified: only to find its keys)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise invalid_client("client_assertion is not a signed JWT")
    claims = _jose.unverified_part(parts[1])
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss or iss != sub:
        raise invalid_client("client_assertion iss and sub must both be the client_id")
    return iss


def verify_assertion(assertion: str, *, client_id: str, jwks: Mapping[str, Any],
                     token_endpoint: str, replay: JtiCache, now: datetime) -> None:
    """Raise ``OAuthError(invalid_client)`` unless the assertion authenticates ``client_id``."""
    header = _jose.unverified_part(assertion.split(".")[0])
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in ASSERTION_ALGORITHMS:
        raise invalid_client("client_assertion alg not allowed")
    key = _jose.find_key(_jose.import_public_keys(jwks),
                         kid if isinstance(kid, str) else None, alg)
    if key is None:
        raise invalid_client("no registered key matches the client_assertion")
    try:
        claims = jwt.decode(assertion, key, algorithms=[alg],
                            registry=_jose.registry([alg])).claims
    except (JoseError, ValueError, TypeError) as error:
        raise invalid_client("client_assertion signature invalid") from error
    _check_claims(claims, client_id=client_id, token_endpoint=token_endpoint,
                  replay=replay, now=now.timestamp())


def _check_claims(claims: Mapping[str, Any], *, client_id: str, token_endpoint: str,
                  replay: JtiCache, now: float) -> None:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise invalid_client("client_assertion iss and sub must both be the client_id")
    aud = claims.get("aud")
    if token_endpoint not in ([aud] if isinstance(aud, str) else aud or []):
        raise invalid_client("client_assertion aud must be the token endpoint")
    exp = _number(claims.get("exp"))
    if exp is None or exp + LEEWAY <= now:
        raise invalid_client("client_assertion expired or without exp")
    if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise invalid_client("client_assertion exp more than five minutes ahead")
    nbf = _number(claims.get("nbf"))
    if nbf is not None and nbf > now + LEEWAY:
        raise invalid_client("client_assertion not yet valid")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise invalid_client("client_assertion without jti")
    if not replay.first_use(client_id, jti, exp + LEEWAY, now):
        raise invalid_client("client_assertion jti already used")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
