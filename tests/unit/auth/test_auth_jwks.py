"""JWKSCache: OIDC discovery, caching, refresh on an unknown kid, and its rate limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from auth.errors import InvalidToken, IssuerUnavailable
from auth.tokens import JWKSCache, TokenValidator

ISSUER = "https://dossier.test/auth"
AUDIENCE = "https://dossier.test/fhir"
NOW = datetime(2027, 3, 5, 10, 0, tzinfo=UTC)
Claims = Callable[..., dict[str, Any]]


class FakeIssuer:
    """Serves discovery and a JWKS over httpx's MockTransport, counting requests."""

    def __init__(self) -> None:
        self.keys = [self.new_key("k1")]
        self.discovery: dict[str, Any] = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}
        self.requests: list[str] = []
        self.down = False

    @staticmethod
    def new_key(kid: str) -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.down:
            return httpx.Response(503)
        if request.url.path == "/auth/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if request.url.path == "/auth/jwks":
            return httpx.Response(200, json={"keys": [k.as_dict(private=False)
                                                      for k in self.keys]})
        return httpx.Response(404)

    def sign(self, key: RSAKey, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def http(issuer: FakeIssuer) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(issuer.handle)) as client:
        yield client


@pytest.fixture
def cache(http: httpx.Client, clock: Clock) -> JWKSCache:
    return JWKSCache(ISSUER, http=http, min_refresh_seconds=30, clock=clock)


def test_keys_are_found_by_discovery_and_cached(issuer: FakeIssuer, cache: JWKSCache,
                                               claims: Claims) -> None:
    validator = TokenValidator(ISSUER, AUDIENCE, cache)
    for _ in range(3):
        assert validator.validate(issuer.sign(issuer.keys[0], claims()), now=NOW).subject
    assert issuer.requests == ["/auth/.well-known/openid-configuration", "/auth/jwks"]


def test_rotation_unknown_kid_refreshes_then_accepts(issuer: FakeIssuer, cache: JWKSCache,
                                                     clock: Clock, claims: Claims) -> None:
    validator = TokenValidator(ISSUER, AUDIENCE, cache)
    old = issuer.keys[0]
    assert validator.validate(issuer.sign(old, claims()), now=NOW).subject
    issuer.keys = [issuer.new_key("k2")]
    clock.now += 31
    assert validator.validate(issuer.sign(issuer.keys[0], claims()), now=NOW).subject
    assert cache.refresh_count == 2
    with pytest.raises(InvalidToken) as caught:  # the retired key no longer verifies
        validator.validate(issuer.sign(old, claims()), now=NOW)
    assert caught.value.reason == "unknown kid"


def test_refreshes_are_rate_limited(issuer: FakeIssuer, cache: JWKSCache, clock: Clock,
                                    claims: Claims) -> None:
    validator = TokenValidator(ISSUER, AUDIENCE, cache)
    stranger = issuer.new_key("forged")
    for _ in range(5):
        with pytest.raises(InvalidToken):
            validator.validate(issuer.sign(stranger, claims()), now=NOW)
    assert cache.refresh_count == 1  # the first fetch only: no refresh within 30 s
    clock.now += 30
    with pytest.raises(InvalidToken):
        validator.validate(issuer.sign(stranger, claims()), now=NOW)
    assert cache.refresh_count == 2


def test_a_new_key_within_the_rate_limit_waits_for_the_next_window(
        issuer: FakeIssuer, cache: JWKSCache, clock: Clock, claims: Claims) -> None:
    validator = TokenValidator(ISSUER, AUDIENCE, cache)
    validator.validate(issuer.sign(issuer.keys[0], claims()), now=NOW)
    issuer.keys.append(issuer.new_key("k2"))
    token = issuer.sign(issuer.keys[1], claims())
    with pytest.raises(InvalidToken):
        validator.validate(token, now=NOW)
    clock.now += 30
    assert validator.validate(token, now=NOW).subject


def test_stale_keys_are_refetched_and_kept_when_the_issuer_is_down(
        issuer: FakeIssuer, http: httpx.Client, clock: Clock, claims: Claims) -> None:
    cache = JWKSCache(ISSUER, http=http, min_refresh_seconds=30, max_age_seconds=600,
                      clock=clock)
    validator = TokenValidator(ISSUER, AUDIENCE, cache)
    token = issuer.sign(issuer.keys[0], claims())
    validator.validate(token, now=NOW)
    issuer.down = True
    clock.now += 601
    assert validator.validate(token, now=NOW).subject  # old keys still serve
    assert issuer.requests[-1] == "/auth/.well-known/openid-configuration"
    issuer.down = False
    clock.now += 31
    validator.validate(token, now=NOW)
    assert cache.refresh_count == 2


def test_issuer_down_at_first_use_is_unavailable_not_invalid(
        issuer: FakeIssuer, cache: JWKSCache, claims: Claims) -> None:
    issuer.down = True
    with pytest.raises(IssuerUnavailable) as caught:
        TokenValidator(ISSUER, AUDIENCE, cache).validate(
            issuer.sign(issuer.keys[0], claims()), now=NOW)
    assert caught.value.status == 503


@pytest.mark.parametrize("discovery", [
    {"issuer": "https://evil.test/auth", "jwks_uri": f"{ISSUER}/jwks"},
    {"issuer": ISSUER},
    {"issuer": ISSUER, "jwks_uri": "http://dossier.test/auth/jwks"},
])
def test_bad_discovery_documents(issuer: FakeIssuer, cache: JWKSCache,
                                 discovery: dict[str, Any]) -> None:
    issuer.discovery = discovery
    with pytest.raises(IssuerUnavailable):
        cache.refresh()


@pytest.mark.parametrize("url", ["http://issuer.example/auth", "ftp://x/auth", "auth"])
def test_issuer_url_must_be_https_except_on_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        JWKSCache(url)


@pytest.mark.parametrize(("url", "allow_http"), [
    ("http://127.0.0.1:9000/auth", False), ("http://localhost:9000/auth", False),
    ("http://[::1]:9000/auth", False), ("http://keycloak:8080/realms/x", True),
])
def test_http_is_allowed_on_loopback_and_when_told(url: str, allow_http: bool) -> None:
    cache = JWKSCache(url, allow_http=allow_http)
    assert cache.discovery_url == url + "/.well-known/openid-configuration"
    cache.close()


def test_unusable_keys_in_the_jwks_are_skipped(issuer: FakeIssuer, claims: Claims) -> None:
    weak = {"kty": "RSA", "kid": "weak", "n": "AQAB" * 3, "e": "AQAB"}
    enc = {**issuer.keys[0].as_dict(private=False), "kid": "enc", "use": "enc"}
    hmac = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    good = issuer.keys[0]
    original = issuer.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/jwks":
            return httpx.Response(200, json={"keys": [weak, enc, hmac, "x",
                                                      good.as_dict(private=False)]})
        return original(request)

    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        cache = JWKSCache(ISSUER, http=http)
        validator = TokenValidator(ISSUER, AUDIENCE, cache)
        assert validator.validate(issuer.sign(good, claims()), now=NOW).subject
        for kid in ("weak", "enc", "hmac"):
            with pytest.raises(InvalidToken):
                cache.get_key(kid, "RS256")
