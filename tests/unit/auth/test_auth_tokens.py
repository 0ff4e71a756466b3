"""Token validation: every bad input is the one opaque 401, good tokens give their claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from auth.errors import InvalidToken
from auth.scopes import Scope
from auth.tokens import StaticKeys, TokenValidator, bearer_token

ISSUER = "https://dossier.test/auth"
AUDIENCE = "https://dossier.test/fhir"
NOW = datetime(2027, 3, 5, 10, 0, tzinfo=UTC)
Mint = Callable[..., str]
Claims = Callable[..., dict[str, Any]]
Keys = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def reject(validator: TokenValidator, token: str, reason: str,
           now: datetime = NOW) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, now=now)
    error = caught.value
    assert error.status == 401
    assert error.code == "login"
    assert error.reason == reason
    assert str(error) == "A valid access token is required."  # opaque, same for all
    return error


# -- good tokens ------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_valid_token_for_each_allowed_algorithm(validator: TokenValidator, mint: Mint,
                                                alg: str) -> None:
    claims = validator.validate(mint(alg), now=NOW)
    assert claims.subject == "Practitioner/dr-dupont"
    assert claims.issuer == ISSUER
    assert claims.fhir_user == "Practitioner/dr-dupont"
    assert claims.roles == frozenset({"practitioner"})
    assert claims.client_id == "portal"
    assert claims.scopes == (Scope("user", "*", frozenset("rs")),)
    assert claims.raw_scope == "openid fhirUser user/*.rs"
    assert claims.expires_at == NOW + timedelta(seconds=300)
    assert claims.token_id == "j-1"
    assert claims.act is None


def test_audience_list_act_claim_and_absolute_fhir_user(validator: TokenValidator,
                                                        mint: Mint) -> None:
    token = mint(aud=["https://other.test", AUDIENCE], act={"sub": "hub-abrumet"},
                 fhirUser=f"{AUDIENCE}/Practitioner/dr-dupont", client_id=None,
                 azp="hub-abrumet", roles="hub practitioner")
    claims = validator.validate(token, now=NOW)
    assert claims.act == {"sub": "hub-abrumet"}
    assert claims.fhir_user == "Practitioner/dr-dupont"
    assert claims.client_id == "hub-abrumet"
    assert claims.roles == frozenset({"hub", "practitioner"})


def test_scp_list_is_read_as_scope(validator: TokenValidator, mint: Mint) -> None:
    claims = validator.validate(mint(scope=None, scp=["user/Task.cruds"]), now=NOW)
    assert claims.scopes == (Scope("user", "Task", frozenset("cruds")),)


def test_token_without_kid_uses_the_only_fitting_key(keys: Keys, mint: Mint) -> None:
    validator = TokenValidator(ISSUER, AUDIENCE,
                               StaticKeys({"keys": [keys["ES256"].as_dict(private=False)]}))
    assert validator.validate(mint("ES256", header={"kid": None}), now=NOW).subject


@pytest.mark.parametrize("skew", [-59, 0, 59])
def test_clock_skew_up_to_sixty_seconds_is_tolerated(validator: TokenValidator, mint: Mint,
                                                     skew: int) -> None:
    now = int(NOW.timestamp())
    token = mint(exp=now + skew, nbf=now - skew, iat=now - skew)
    assert validator.validate(token, now=NOW).subject


# -- bad input, each a 401 --------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_token(header: str | None) -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token(header)
    assert caught.value.missing
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="dossier"'}


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b",
                                    "Bearer ab<script>", "Token abc"])
def test_malformed_authorization_header(header: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token(header)
    assert not caught.value.missing
    assert 'error="invalid_token"' in caught.value.headers["WWW-Authenticate"]


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("Bearer  abc.def.ghi ") == "abc.def.ghi"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d.e", "..", "x" * 20000,
                                   b64(b"[1]") + ".e30.sig", b64(b"\xff\xfe") + ".e30.sig"])
def test_malformed_token(validator: TokenValidator, token: str) -> None:
    with pytest.raises(InvalidToken):
        validator.validate(token, now=NOW)


def test_alg_none(validator: TokenValidator, claims: Claims) -> None:
    token = f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."
    reject(validator, token, "alg not allowed")


def test_hs256_signed_with_the_public_key(validator: TokenValidator, keys: Keys,
                                          claims: Claims) -> None:
    signing_input = f"{b64json({'alg': 'HS256', 'kid': 'rsa-1'})}.{b64json(claims())}"
    for secret in (keys["RS256"].as_pem(private=False),
                   json.dumps(keys["RS256"].as_dict(private=False)).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        reject(validator, f"{signing_input}.{b64(mac)}", "alg not allowed")


def test_hs256_not_allowed_even_if_configured(jwks: Keys) -> None:
    for algorithms in [("HS256",), ("none",), ("RS256", "HS512"), ()]:
        with pytest.raises(ValueError, match="asymmetric"):
            TokenValidator(ISSUER, AUDIENCE, StaticKeys(jwks), algorithms=algorithms)


def test_leeway_above_sixty_seconds_is_refused(jwks: Keys) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenValidator(ISSUER, AUDIENCE, StaticKeys(jwks), leeway=61)


def test_unknown_kid(validator: TokenValidator, claims: Claims) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "stranger"})
    token = jwt.encode({"alg": "ES256", "kid": "stranger"}, claims(), stranger,
                       algorithms=["ES256"])
    reject(validator, token, "unknown kid")


def test_key_of_another_issuer_under_a_known_kid(validator: TokenValidator,
                                                  claims: Claims) -> None:
    impostor = ECKey.generate_key("P-256")
    token = jwt.encode({"alg": "ES256", "kid": "ec-1"}, claims(), impostor,
                       algorithms=["ES256"])
    reject(validator, token, "signature or payload invalid")


def test_kid_of_a_key_of_the_wrong_type(validator: TokenValidator, mint: Mint) -> None:
    reject(validator, mint("ES256", header={"kid": "rsa-1"}), "unknown kid")


def test_wrong_issuer(validator: TokenValidator, mint: Mint) -> None:
    reject(validator, mint(iss="https://evil.test/auth"), "wrong issuer")


@pytest.mark.parametrize("aud", ["https://other.test/fhir", ["https://x.test"], None, 7])
def test_wrong_audience(validator: TokenValidator, mint: Mint, aud: object) -> None:
    reject(validator, mint(aud=aud), "wrong audience")


def test_expired(validator: TokenValidator, mint: Mint) -> None:
    now = int(NOW.timestamp())
    reject(validator, mint(exp=now - 60), "expired")
    reject(validator, mint(), "expired", now=NOW + timedelta(seconds=360))


def test_not_yet_valid(validator: TokenValidator, mint: Mint) -> None:
    reject(validator, mint(nbf=int(NOW.timestamp()) + 61), "not yet valid")


def test_issued_in_the_future(validator: TokenValidator, mint: Mint) -> None:
    reject(validator, mint(iat=int(NOW.timestamp()) + 61, nbf=None), "issued in the future")


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("exp", None, "exp missing"), ("exp", "soon", "exp is not a number"),
    ("exp", True, "exp is not a number"), ("iat", None, "iat missing"),
    ("sub", None, "no subject"), ("sub", "", "no subject"),
    ("roles", {"admin": True}, "roles is not a list of strings"),
    ("act", "hub", "act is not an object"), ("fhirUser", 3, "fhirUser is not a string"),
    ("scope", ["user/*.rs"], "scope is not a string"),
])
def test_claims_of_the_wrong_shape(validator: TokenValidator, mint: Mint, claim: str,
                                   value: object, reason: str) -> None:
    reject(validator, mint(**{claim: value}), reason)


def test_tampered_payload(validator: TokenValidator, mint: Mint) -> None:
    header, payload, signature = mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]
    reject(validator, f"{header}.{b64json(claims)}.{signature}", "signature or payload invalid")


def test_tampered_signature(validator: TokenValidator, mint: Mint) -> None:
    header, payload, signature = mint("RS256").split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    reject(validator, f"{header}.{payload}.{flipped}", "signature or payload invalid")


@pytest.mark.parametrize("scope", ["user/*.rs DROP TABLE", "patient/Observation.xyz",
                                   "user/*.sr", "admin/*.rs", "user/observation.rs",
                                   "patient/*.", "user/*.rs\u00e9"])
def test_scope_string_garbage(validator: TokenValidator, mint: Mint, scope: str) -> None:
    with pytest.raises(InvalidToken):
        validator.validate(mint(scope=scope), now=NOW)


@pytest.mark.parametrize("typ", ["dpop+jwt", "logout+jwt", "JOSE"])
def test_wrong_token_type(validator: TokenValidator, mint: Mint, typ: str) -> None:
    reject(validator, mint(header={"typ": typ}), "typ is not an access token type")


def test_crit_header_is_refused(validator: TokenValidator, keys: Keys,
                                claims: Claims) -> None:
    registry = JWSRegistry(header_registry={"exp": HeaderParameter("expiry", "int")},
                           algorithms=["ES256"])
    token = jwt.encode({"alg": "ES256", "kid": "ec-1", "crit": ["exp"], "exp": 1}, claims(),
                       keys["ES256"], registry=registry)
    reject(validator, token, "crit header not supported")


def test_error_message_never_carries_token_content(validator: TokenValidator,
                                                   mint: Mint) -> None:
    token = mint(iss="https://evil.test/auth", sub="Patient/secret-person")
    error = reject(validator, token, "wrong issuer")
    assert "secret-person" not in str(error)
    assert "evil" not in str(error)
    assert "secret-person" not in error.reason


def test_now_defaults_to_the_current_time(jwks: Keys, mint: Mint) -> None:
    validator = TokenValidator(ISSUER, AUDIENCE, StaticKeys(jwks))
    current = int(datetime.now(UTC).timestamp())
    assert validator.validate(mint(iat=current, nbf=current, exp=current + 60)).subject
    token = mint(iat=current - 400, nbf=current - 400, exp=current - 100)
    reject(validator, token, "expired", now=datetime.now(UTC))


def test_callable_key_loader_is_called_again_for_an_unknown_kid(keys: Keys, jwks: Keys,
                                                                mint: Mint) -> None:
    served = {"keys": [keys["RS256"].as_dict(private=False)]}
    calls: list[int] = []

    def load() -> dict[str, Any]:
        calls.append(1)
        return served

    validator = TokenValidator(ISSUER, AUDIENCE, load)
    assert validator.validate(mint("RS256"), now=NOW).subject
    served = jwks  # the issuer added a key
    assert validator.validate(mint("EdDSA"), now=NOW).subject
    assert len(calls) == 2


def test_naive_now_is_a_programming_error(validator: TokenValidator, mint: Mint) -> None:
    with pytest.raises(ValueError, match="timezone"):
        validator.validate(mint(), now=datetime(2027, 3, 5, 10, 0))
