"""A token's signature is checked once per process (auth/tokens.py `Verified`); everything
that can change is checked at every request. The property: a validator that remembers
signatures answers exactly as one that does not, whatever the sequence of tokens,
clocks and key rotations."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey

from auth import tokens
from auth.errors import InvalidToken
from auth.tokens import StaticKeys, TokenValidator, Verified

ISSUER = "https://dossier.test/auth"
AUDIENCE = "https://dossier.test/fhir"
NOW = datetime(2027, 3, 5, 10, 0, tzinfo=UTC)

Mint = Callable[..., str]


def outcome(validator: TokenValidator, token: str, now: datetime) -> object:
    try:
        return validator.validate(token, now=now)
    except InvalidToken as error:
        return error.reason


class Rotating:
    """A key set that can change (as the dev issuer's key file or an issuer's JWKS)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks, self.version = jwks, 0

    def keys(self) -> StaticKeys:
        return StaticKeys(lambda: self.jwks, version=lambda: self.version)

    def publish(self, jwks: dict[str, Any]) -> None:
        self.jwks, self.version = jwks, self.version + 1


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The signature checks made (each call of joserfc's decode)."""
    calls: list[str] = []
    decode = tokens.jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", spy)
    return calls


def test_a_token_seen_again_is_not_verified_again(validator: TokenValidator, mint: Mint,
                                                   counted: list[str]) -> None:
    token = mint()
    first = validator.validate(token, now=NOW)
    again = validator.validate(token, now=NOW + timedelta(seconds=30))
    assert again == first and len(counted) == 1
    assert token.encode() not in repr(validator.verified._found).encode()  # digests only


def test_expiry_is_checked_at_every_request(validator: TokenValidator, mint: Mint) -> None:
    token = mint()
    validator.validate(token, now=NOW)
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, now=NOW + timedelta(seconds=361))
    assert caught.value.reason == "expired"


def test_a_key_rotated_out_stops_a_remembered_token(jwks: dict[str, Any],
                                                    mint: Mint) -> None:
    published = Rotating(jwks)
    validator = TokenValidator(ISSUER, AUDIENCE, published.keys())
    token = mint("ES256")
    validator.validate(token, now=NOW)
    published.publish({"keys": [k for k in jwks["keys"] if k.get("kid") != "ec-1"]})
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, now=NOW)
    assert caught.value.reason == "unknown kid"


def test_keys_reloaded_verify_anew(jwks: dict[str, Any], mint: Mint,
                                   counted: list[str]) -> None:
    published = Rotating(jwks)
    validator = TokenValidator(ISSUER, AUDIENCE, published.keys())
    token = mint("ES256")
    validator.validate(token, now=NOW)
    published.publish(dict(jwks))  # the same keys, imported again: other key objects
    validator.validate(token, now=NOW)
    assert len(counted) == 2


def test_a_different_signature_on_remembered_claims_is_checked(validator: TokenValidator,
                                                               mint: Mint) -> None:
    token = mint("ES256")
    validator.validate(token, now=NOW)
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 1
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken) as caught:
        validator.validate(forged, now=NOW)
    assert caught.value.reason == "signature or payload invalid"


def test_only_tokens_that_passed_are_remembered(validator: TokenValidator,
                                                mint: Mint) -> None:
    for bad in (mint(aud="https://other.test/fhir"), mint(exp=int(NOW.timestamp()) - 90)):
        with pytest.raises(InvalidToken):
            validator.validate(bad, now=NOW)
    assert len(validator.verified) == 0


def test_the_memory_is_bounded_and_drops_the_expired_first(validator: TokenValidator,
                                                          mint: Mint) -> None:
    verified = Verified(size=2)
    claims = validator.validate(mint(), now=NOW)  # expires NOW + 300 s
    key = object()
    for n in range(5):
        verified.add(bytes([n]) * 32, key, {}, claims, NOW.timestamp())
    assert len(verified) == 2
    assert verified.get(bytes([4]) * 32, object()) is None  # another key object
    assert verified.get(bytes([4]) * 32, key) is not None
    later = (NOW + timedelta(seconds=400)).timestamp()
    fresh = validator.validate(mint(exp=int(NOW.timestamp()) + 3600), now=NOW)
    verified.add(b"x" * 32, key, {}, fresh, later)
    assert len(verified) == 1  # both expired entries went, not only the oldest


def test_only_the_registered_claims_are_kept(validator: TokenValidator, mint: Mint) -> None:
    validator.validate(mint(egovNRN="85073003328", act={"sub": "hub"}), now=NOW)
    (_, kept, _), = validator.verified._found.values()
    assert set(kept) <= {"iss", "aud", "exp", "nbf", "iat", "sub"}


def test_an_expired_token_is_forgotten(validator: TokenValidator, mint: Mint) -> None:
    token = mint()
    validator.validate(token, now=NOW)
    with pytest.raises(InvalidToken):
        validator.validate(token, now=NOW + timedelta(seconds=400))
    assert len(validator.verified) == 0


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(
    st.sampled_from(["good", "other-key", "expired", "wrong-aud", "tampered", "rotate",
                     "restore"]),
    st.integers(min_value=-120, max_value=600)), min_size=1, max_size=12))
def test_remembering_never_changes_an_answer(jwks: dict[str, Any], mint: Mint,
                                             steps: list[tuple[str, int]]) -> None:
    other = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    now0 = int(NOW.timestamp())
    good = mint("ES256")
    header, _, signature = good.split(".")
    made = {
        "good": good,
        "other-key": jwt.encode({"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"},
                                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now0,
                                 "exp": now0 + 300}, other, algorithms=["ES256"]),
        "expired": mint(exp=now0 + 30),
        "wrong-aud": mint(aud="https://other.test/fhir"),
        "tampered": f"{header}.{_b64({'sub': 'admin', 'iss': ISSUER})}.{signature}",
    }
    published = Rotating(jwks)
    remembering = TokenValidator(ISSUER, AUDIENCE, published.keys())
    for step, seconds in steps:
        if step == "rotate":  # the other key is now the one published under ec-1
            published.publish({"keys": [other.as_dict(private=False)]})
            continue
        if step == "restore":
            published.publish(jwks)
            continue
        now = NOW + timedelta(seconds=seconds)
        fresh = TokenValidator(ISSUER, AUDIENCE, published.keys())  # remembers nothing
        assert outcome(remembering, made[step], now) == outcome(fresh, made[step], now)
