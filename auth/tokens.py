"""Access-token validation: JWT signature against the issuer's JWKS, then the claims.

Every problem raises the one opaque ``InvalidToken``; its ``reason`` says what
was wrong, for the audit record only.

A signature checked once is remembered (``Verified``): whether these exact bytes were
signed by this exact key cannot change, and checking it again was a fifth of a read's
work (an ECDSA verification and joserfc's parsing; docs/benchmarks.md). Everything that
can change is checked at every request: the header, the key still published for the
token's kid (the remembered signature counts only for that same key object, so a key
rotated out or reloaded verifies anew), expiry and the other time claims, issuer and
audience. Who the token names, their roles and the consents are resolved per request
in the unit's transaction, as before; nothing of an access decision is remembered.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError

from auth import _jose
from auth.errors import InvalidNiss, InvalidToken, IssuerUnavailable
from auth.scopes import Scope, parse_scopes
from schemas.rules import valid_ssin

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
MAX_LEEWAY = 60
MAX_TOKEN_LENGTH = 16_384
NISS_CLAIM = "egovNRN"  # the Belgian federal login's national-number claim (SPEC §8)
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*) *")


@dataclass(frozen=True)
class TokenClaims:
    """The claims of a validated access token that the service uses."""

    subject: str
    issuer: str
    client_id: str | None
    fhir_user: str | None
    roles: frozenset[str]
    scopes: tuple[Scope, ...]
    expires_at: datetime
    raw_scope: str
    act: dict[str, Any] | None = None  # RFC 8693 actor, when a party acts for the subject
    token_id: str | None = None  # jti, for the audit
    niss: str | None = None  # a citizen's national number (check digits verified)


def bearer_token(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header (RFC 6750 §2.1)."""
    if not authorization_header or not authorization_header.strip():
        raise InvalidToken("no access token", missing=True)
    match = _BEARER.fullmatch(authorization_header.strip())
    if match is None:
        raise InvalidToken("authorization header is not a bearer token")
    return match[1]


@runtime_checkable
class KeySource(Protocol):
    """Where a validator finds the public key for a token's ``kid`` and ``alg``."""

    def get_key(self, kid: str | None, alg: str) -> _jose.PublicKey: ...


class StaticKeys:
    """Keys from a JWKS dict, or from a loader called again when a kid is unknown."""

    def __init__(self, jwks: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
                 version: Callable[[], object] | None = None) -> None:
        self._loader = jwks if callable(jwks) else None
        # when given, asked at every use: a changed value (the key file's mtime) reloads, so
        # a key rotated out stops verifying at once, not at the next unknown kid
        self._version = version
        self._seen = version() if version else None
        self._keys = _jose.import_public_keys(jwks() if callable(jwks) else jwks)
        self._lock = threading.Lock()

    def get_key(self, kid: str | None, alg: str) -> _jose.PublicKey:
        if self._version is not None and self._loader is not None:
            now = self._version()
            if now != self._seen:
                with self._lock:
                    self._keys = _jose.import_public_keys(self._loader())
                    self._seen = now
        key = _jose.find_key(self._keys, kid, alg)
        if key is None and self._loader is not None:
            with self._lock:
                self._keys = _jose.import_public_keys(self._loader())
            key = _jose.find_key(self._keys, kid, alg)
        if key is None:
            raise InvalidToken("unknown kid")
        return key


def check_issuer_url(url: str, *, allow_http: bool = False) -> None:
    """An issuer or JWKS URL must be https, or http on a loopback host (tests, dev)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and (allow_http or _loopback(parts.hostname)):
        return
    raise ValueError("issuer URLs must use https (http only on a loopback host)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JWKSCache:
    """The issuer's public keys, found by OIDC discovery and cached.

    Keys are fetched on first use, again when older than ``max_age_seconds``,
    and when a token names an unknown kid — but at most once every
    ``min_refresh_seconds``, so forged kids cannot make us hammer the issuer.
    """

    def __init__(self, issuer: str, *, http: httpx.Client | None = None,
                 min_refresh_seconds: float = 30, max_age_seconds: float = 3600,
                 allow_http: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_issuer_url(issuer, allow_http=allow_http)
        self.issuer = issuer
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=5.0, follow_redirects=False)
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._allow_http = allow_http
        self._clock = clock
        self._keys: list[_jose.PublicKey] = []
        self._discovery: dict[str, Any] | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()
        self.refresh_count = 0

    def close(self) -> None:
        """Close the HTTP client this cache created (not one it was given)."""
        if self._owns_http:
            self._http.close()

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def get_key(self, kid: str | None, alg: str) -> _jose.PublicKey:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._max_age:
                self._try_refresh(now, required=self._fetched_at is None)
            key = _jose.find_key(self._keys, kid, alg)
            if key is None and self._may_refresh(now):
                self._try_refresh(now, required=False)
                key = _jose.find_key(self._keys, kid, alg)
        if key is None:
            raise InvalidToken("unknown kid")
        return key

    def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document, as last fetched with the keys (fetched now
        when it never was; ``IssuerUnavailable`` when it cannot be)."""
        with self._lock:
            now = self._clock()
            if self._discovery is None or (
                    self._fetched_at is not None and now - self._fetched_at >= self._max_age):
                self._try_refresh(now, required=self._discovery is None)
            return dict(self._discovery or {})

    def refresh(self) -> None:
        """Fetch discovery and JWKS now, whatever the rate limit."""
        with self._lock:
            self._try_refresh(self._clock(), required=True)

    def _may_refresh(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def _try_refresh(self, now: float, *, required: bool) -> None:
        if not required and not self._may_refresh(now):
            return
        self._attempted_at = now
        try:
            self._keys = self._fetch()
        except IssuerUnavailable:
            if required or not self._keys:
                raise
            return  # keep the keys we have; try again after the rate limit
        self._fetched_at = now
        self.refresh_count += 1

    def _fetch(self) -> list[_jose.PublicKey]:
        discovery = self._get_json(self.discovery_url)
        if discovery.get("issuer") != self.issuer:
            raise IssuerUnavailable("discovery issuer does not match the configured issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerUnavailable("discovery has no jwks_uri")
        try:
            check_issuer_url(jwks_uri, allow_http=self._allow_http)
        except ValueError as error:
            raise IssuerUnavailable("jwks_uri is not https") from error
        keys = _jose.import_public_keys(self._get_json(jwks_uri))
        self._discovery = discovery
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            value = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise IssuerUnavailable("issuer metadata could not be fetched") from error
        if not isinstance(value, dict):
            raise IssuerUnavailable("issuer metadata is not a JSON object")
        return value


REGISTERED = ("iss", "aud", "exp", "nbf", "iat", "sub")  # checked again at every use


class Verified:
    """The tokens whose signature this process has verified: SHA-256 of the whole
    compact token (never the token itself, a bearer credential) → the key object that
    verified it, the registered claims checked at every use, and the TokenClaims made
    of the claims. Bounded: expired entries go first, then the oldest. Only tokens that
    passed every check are added, so nobody can fill it without valid tokens."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._found: dict[bytes, tuple[object, dict[str, Any], TokenClaims]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes,
            key: object) -> tuple[Mapping[str, Any], TokenClaims] | None:
        entry = self._found.get(digest)
        if entry is None or entry[0] is not key:  # another key now: verify anew
            return None
        return entry[1], entry[2]

    def add(self, digest: bytes, key: object, claims: Mapping[str, Any],
            token_claims: TokenClaims, now: float) -> None:
        registered = {k: claims[k] for k in REGISTERED if k in claims}
        with self._lock:
            self._found[digest] = (key, registered, token_claims)
            if len(self._found) > self.size:
                for old in [d for d, e in self._found.items()
                            if e[2].expires_at.timestamp() + MAX_LEEWAY < now]:
                    del self._found[old]
            while len(self._found) > self.size:
                del self._found[next(iter(self._found))]

    def forget(self, digest: bytes) -> None:
        with self._lock:
            self._found.pop(digest, None)

    def __len__(self) -> int:
        return len(self._found)


class TokenValidator:
    """Validates JWT access tokens of one issuer for one audience."""

    def __init__(self, issuer: str, audience: str,
                 keys: KeySource | Callable[[], Mapping[str, Any]], *,
                 leeway: int = MAX_LEEWAY,
                 algorithms: Collection[str] = DEFAULT_ALGORITHMS,
                 niss_claim: str = NISS_CLAIM) -> None:
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")
        unknown = set(algorithms) - set(_jose.ALG_KEYS)
        if unknown or not algorithms:
            raise ValueError("only asymmetric JWS algorithms may be allowed")
        self.issuer = issuer
        self.audience = audience
        self.keys: KeySource = keys if isinstance(keys, KeySource) else StaticKeys(keys)
        self.leeway = leeway
        self.algorithms = tuple(algorithms)
        self.niss_claim = niss_claim
        self.verified = Verified()

    def validate(self, token: str, now: datetime | None = None) -> TokenClaims:
        """Check signature and claims; return the claims or raise ``InvalidToken``."""
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("alg not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
            raise InvalidToken("typ is not an access token type")
        if "crit" in header:
            raise InvalidToken("crit header not supported")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("kid is not a string")
        key = self.keys.get_key(kid, alg)
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        moment = (now or datetime.now(UTC)).timestamp()
        digest = hashlib.sha256(token.encode()).digest()
        known = self.verified.get(digest, key)
        if known is not None:  # these bytes, this key: the signature holds; the rest is
            claims, token_claims = known  # checked again, now
            try:
                self._check_registered_claims(claims, moment)
            except InvalidToken:
                self.verified.forget(digest)  # expired: never valid again
                raise
            return token_claims
        try:
            claims = jwt.decode(token, key, algorithms=[alg],
                                registry=_jose.registry([alg])).claims
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidToken("signature or payload invalid") from error
        self._check_registered_claims(claims, moment)
        token_claims = self._token_claims(claims)
        self.verified.add(digest, key, claims, token_claims, moment)
        return token_claims

    def _check_registered_claims(self, claims: Mapping[str, Any], now: float) -> None:
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences:
            raise InvalidToken("wrong audience")
        exp = _number(claims, "exp", required=True)
        if exp is not None and now >= exp + self.leeway:
            raise InvalidToken("expired")
        nbf = _number(claims, "nbf", required=False)
        if nbf is not None and now + self.leeway < nbf:
            raise InvalidToken("not yet valid")
        iat = _number(claims, "iat", required=True)
        if iat is not None and iat > now + self.leeway:
            raise InvalidToken("issued in the future")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("no subject")

    def _token_claims(self, claims: Mapping[str, Any]) -> TokenClaims:
        raw_scope = _scope_string(claims)
        act = claims.get("act")
        if act is not None and not isinstance(act, dict):
            raise InvalidToken("act is not an object")
        jti = claims.get("jti")
        roles = _roles(claims)
        return TokenClaims(
            subject=str(claims["sub"]),
            issuer=self.issuer,
            client_id=_optional_str(claims, "client_id") or _optional_str(claims, "azp"),
            fhir_user=self._fhir_user(claims),
            roles=roles,
            scopes=parse_scopes(raw_scope),
            expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
            raw_scope=raw_scope,
            act=act,
            token_id=jti if isinstance(jti, str) else None,
            niss=self._niss(claims) if "citizen" in roles else None,
        )

    def _niss(self, claims: Mapping[str, Any]) -> str | None:
        """A citizen's national number; ignored for other roles (SPEC §8)."""
        value = claims.get(self.niss_claim)
        if value is None:
            return None
        if not isinstance(value, str) or not valid_ssin(value):
            raise InvalidNiss()
        return value

    def _fhir_user(self, claims: Mapping[str, Any]) -> str | None:
        """``fhirUser`` as a relative reference when it is an absolute URL on our FHIR base."""
        value = _optional_str(claims, "fhirUser")
        base = self.audience.rstrip("/") + "/"
        if value is not None and value.startswith(base):
            return value[len(base):]
        return value


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token missing or too long")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidToken("not a compact JWS")
    header = _jose.unverified_part(parts[0])
    if not header:
        raise InvalidToken("header is not a JSON object")
    return header


MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidToken(f"{name} missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} is not a number")
    # e.g. exp=1e308 or a 5,000-digit integer: no datetime holds it (compared before any
    # float conversion, which would overflow)
    if not 0 <= value <= MAX_TIMESTAMP:
        raise InvalidToken(f"{name} is out of range")
    if not math.isfinite(value):
        raise InvalidToken(f"{name} is not a number")
    return float(value)


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"{name} is not a string")
    return value


def _scope_string(claims: Mapping[str, Any]) -> str:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope
    scp = claims.get("scp")  # some issuers send a list instead
    if scope is None and isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return " ".join(scp)
    if scope is None and scp is None:
        return ""
    raise InvalidToken("scope is not a string")


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles = claims.get("roles")
    if roles is None:
        return frozenset()
    if isinstance(roles, str):
        return frozenset(roles.split())
    if isinstance(roles, list) and all(isinstance(r, str) for r in roles):
        return frozenset(roles)
    raise InvalidToken("roles is not a list of strings")

