"""``private_key_jwt`` client authentication (RFC 7523, SMART Backend Services).

The client signs a short-lived JWT with its private key; we check it against
the public JWKS it registered: iss = sub = client_id, aud = our token
endpoint, exp at most five minutes ahead, and a jti never seen before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import JoseError

from auth import _jose
from auth.errors import OAuthError, invalid_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "RS384", "ES256", "ES384", "EdDSA")
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 60


class SeenJti(Protocol):
    """Where jti values are remembered (the issuer's state: the database in the service)."""

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record ``jti``; ``False`` when it was already used and has not expired."""


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
                     token_endpoint: str, replay: SeenJti, now: datetime) -> None:
    """Raise ``OAuthError(invalid_client)`` unless the assertion authenticates ``client_id``."""
    claims = _signed_claims(assertion, jwks, lambda reason: invalid_client(
        f"client_assertion {reason}"))
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise invalid_client("client_assertion iss and sub must both be the client_id")
    _check_claims(claims, client_id=client_id, token_endpoint=token_endpoint,
                  replay=replay, now=now.timestamp(), fail=lambda reason: invalid_client(
                      f"client_assertion {reason}"))


def verify_subject_token(token: str, *, client_id: str, jwks: Mapping[str, Any],
                         token_endpoint: str, replay: SeenJti, now: datetime) -> str:
    """The ``sub`` of an RFC 8693 subject token the client signed for the user it relays.

    Same rules as a client assertion, except ``sub`` names the user; its jti is kept
    apart from the client's assertion jtis. Raises ``OAuthError(invalid_request)``
    (RFC 8693 §2.2.2)."""
    def fail(reason: str) -> OAuthError:
        return OAuthError("invalid_request", f"subject_token {reason}")

    claims = _signed_claims(token, jwks, fail)
    subject = claims.get("sub")
    if claims.get("iss") != client_id or not isinstance(subject, str) or not subject:
        raise fail("iss must be the client_id and sub the user it acts for")
    _check_claims(claims, client_id=f"{client_id} subject", token_endpoint=token_endpoint,
                  replay=replay, now=now.timestamp(), fail=fail)
    return subject


def _signed_claims(token: str, jwks: Mapping[str, Any],
                   fail: Callable[[str], OAuthError]) -> dict[str, Any]:
    """The claims of ``token`` once its signature is verified with a registered key."""
    parts = token.split(".")
    if len(parts) != 3:
        raise fail("is not a signed JWT")
    header = _jose.unverified_part(parts[0])
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in ASSERTION_ALGORITHMS:
        raise fail("alg not allowed")
    key = _jose.find_key(_jose.import_public_keys(jwks),
                         kid if isinstance(kid, str) else None, alg)
    if key is None:
        raise fail("signed by no registered key")
    try:
        claims = jwt.decode(token, key, algorithms=[alg], registry=_jose.registry([alg])).claims
    except (JoseError, ValueError, TypeError) as error:
        raise fail("signature invalid") from error
    return dict(claims)


def _check_claims(claims: Mapping[str, Any], *, client_id: str, token_endpoint: str,
                  replay: SeenJti, now: float, fail: Callable[[str], OAuthError]) -> None:
    aud = claims.get("aud")
    if token_endpoint not in ([aud] if isinstance(aud, str) else aud or []):
        raise fail("aud must be the token endpoint")
    exp = _number(claims.get("exp"))
    if exp is None or exp + LEEWAY <= now:
        raise fail("expired or without exp")
    if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise fail("exp more than five minutes ahead")
    nbf = _number(claims.get("nbf"))
    if nbf is not None and nbf > now + LEEWAY:
        raise fail("not yet valid")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise fail("without jti")
    if not replay.first_use(client_id, jti, exp + LEEWAY, now):
        raise fail("jti already used")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 <= value <= 253402300799:  # float() would overflow
        return None
    return float(value) if math.isfinite(value) else None
