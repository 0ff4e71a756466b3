"""Issue 16, fuzzing the two parsers every anonymous request reaches: the strict JSON body
parser and the JWT access-token validator. Whatever the input, the answer is a value or
the parser's own refusal (BadRequest / AuthError) — never another exception (a 500)."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth import AuthError
from auth.devissuer import DevIssuer
from auth.tokens import TokenValidator
from dossier.errors import BadRequest
from dossier.fhir.wire import parse_json

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

JSON_ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_ATOMS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)
NASTY = [b"", b"{", b'{"a":1,"a":2}', b"[" * 5000 + b"]" * 5000, b'{"a":NaN}',
         b'{"a":Infinity}', b"1" * 6000, b'{"a":1e999}', b'{"a":"\\u0000"}', b"\xff\xfe",
         b'{"a":"\\ud800"}', b"\x00", b'{"\\u0000":1}', b"-" + b"9" * 5000]


def _parse(body: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_json(body)


@FUZZ
@given(st.binary(max_size=300))
def test_json_parser_on_bytes(body: bytes) -> None:
    _parse(body)


@FUZZ
@given(JSON_VALUES, st.sampled_from(NASTY))
def test_json_parser_on_json_and_nasty_splices(value: Any, nasty: bytes) -> None:
    text = json.dumps(value).encode()
    _parse(text)
    _parse(text[: len(text) // 2] + nasty + text[len(text) // 2:])


@pytest.mark.parametrize("body", NASTY)
def test_json_parser_nasty(body: bytes) -> None:
    _parse(body)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    path: Path = tmp_path_factory.mktemp("issuer")
    return DevIssuer(path, "https://dossier.test/auth", "https://dossier.test/fhir")


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


CLAIM_VALUES = st.one_of(JSON_ATOMS, st.sampled_from([1e308, -1e308, 2**64, 10**30, "1e308",
                                                      [], {}, [1, 2], "", "\x00"]))


def _validate(validator: TokenValidator, token: str) -> None:
    with contextlib.suppress(AuthError):
        validator.validate(token)


@FUZZ
@given(st.text(max_size=200))
def test_jwt_validator_on_text(issuer: DevIssuer, token: str) -> None:
    _validate(TokenValidator(issuer.issuer, issuer.audience, issuer.key_source()), token)


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x"]),
                              CLAIM_VALUES, max_size=4),
       claims=st.dictionaries(st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub",
                                               "scope", "roles", "fhirUser", "jti"]),
                              CLAIM_VALUES, max_size=8),
       signature=st.binary(max_size=80))
def test_jwt_validator_on_forged_structures(issuer: DevIssuer, header: dict[str, Any],
                                            claims: dict[str, Any], signature: bytes) -> None:
    validator = TokenValidator(issuer.issuer, issuer.audience, issuer.key_source())
    token = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                      _b64(signature)])
    _validate(validator, token)


@FUZZ
@given(claims=st.dictionaries(st.sampled_from(["exp", "nbf", "iat", "scope", "roles",
                                               "fhirUser", "aud", "iss", "sub"]),
                              CLAIM_VALUES, max_size=4))
def test_jwt_validator_on_signed_odd_claims(issuer: DevIssuer, claims: dict[str, Any]) -> None:
    """Validly signed by the issuer, with odd claim values: refused or accepted, no crash."""
    base = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "Practitioner/x",
            "exp": 4_000_000_000, "iat": 1_700_000_000, "scope": "user/*.rs",
            "roles": ["practitioner"], "fhirUser": "Practitioner/x", "jti": "j"}
    try:
        token = issuer.sign({**base, **claims})
    except (ValueError, TypeError, OverflowError):
        return  # the signer refuses to encode it: nothing to validate
    _validate(TokenValidator(issuer.issuer, issuer.audience, issuer.key_source()), token)
