"""The dev issuer over HTTP: private_key_jwt client credentials, authorization code + PKCE."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from auth import _jose
from auth.accounts import Account, MemoryState
from auth.actor import resolve_principal
from auth.clientauth import ASSERTION_TYPE
from auth.devissuer import DevIssuer
from auth.tokens import TokenValidator

BASE = "https://dossier.test"
TOKEN_URL = f"{BASE}/auth/token"
REDIRECT = f"{BASE}/portal/callback"


class EmptyDirectory:
    def practitioner_active(self, reference: str) -> bool:
        return False

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        return []


PASSWORD = "correct horse battery"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    state = MemoryState()
    for username, fhir_user, role in [("martin", "Patient/martin", "citizen"),
                                      ("dr-dupont", "Practitioner/dr-dupont", "practitioner"),
                                      ("admin", "Person/admin", "admin")]:
        state.add(Account(username, fhir_user, (role,), username), PASSWORD)  # type: ignore[arg-type]
    return DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir", state=state)


@pytest.fixture
def client(issuer: DevIssuer) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(issuer.router(), prefix="/auth")
    with TestClient(app, base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def validator(issuer: DevIssuer) -> TokenValidator:
    return TokenValidator(issuer.issuer, issuer.audience, issuer.key_source())


@pytest.fixture(scope="module")
def hub_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "hub-key-1", "alg": "ES384"})


@pytest.fixture
def hub(issuer: DevIssuer, hub_key: ECKey) -> str:
    issuer.register_client("hub-abrumet", jwks={"keys": [hub_key.as_dict(private=False)]},
                           scope="system/*.rs system/Task.cru",
                           fhir_user="Organization/abrumet")
    return "hub-abrumet"


def assertion(key: Any, client_id: str = "hub-abrumet", alg: str = "ES384",
              **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240,
              "iat": now, "jti": secrets.token_hex(8), **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg],
                      registry=_jose.registry([alg]))


def credentials(client: TestClient, signed: str, scope: str | None = None) -> Any:
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed}
    if scope is not None:
        form["scope"] = scope
    return client.post("/auth/token", data=form)


def assert_oauth_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


# -- metadata ----------------------------------------------------------------------

def test_discovery_and_jwks_are_served(client: TestClient, issuer: DevIssuer) -> None:
    doc = client.get("/auth/.well-known/openid-configuration").json()
    assert doc["issuer"] == issuer.issuer
    assert client.get("/auth/jwks").json() == issuer.jwks()


# -- client credentials with private_key_jwt ---------------------------------------

def test_valid_client_assertion_gets_a_hub_token(client: TestClient, hub: str,
                                                 hub_key: ECKey,
                                                 validator: TokenValidator) -> None:
    response = credentials(client, assertion(hub_key), scope="system/Patient.rs")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Patient.rs"
    assert 0 < body["expires_in"] <= 300
    claims = validator.validate(body["access_token"])
    assert claims.subject == hub
    assert claims.client_id == hub
    assert claims.roles == frozenset({"hub"})
    principal = resolve_principal(claims, EmptyDirectory(), claims.expires_at)
    assert principal.organizations == frozenset({"Organization/abrumet"})


def test_no_scope_asked_gives_the_registered_scope(client: TestClient, hub: str,
                                                   hub_key: ECKey) -> None:
    body = credentials(client, assertion(hub_key)).json()
    assert body["scope"] == "system/*.rs system/Task.cru"


def test_rs384_assertion_from_a_jwks_uri_client(client: TestClient, issuer: DevIssuer,
                                                tmp_path: Path) -> None:
    import httpx
    key = RSAKey.generate_key(2048, parameters={"kid": "rsa-hub", "alg": "RS384"})
    public = {"keys": [key.as_dict(private=False)]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=public))
    with httpx.Client(transport=transport) as http:
        remote = DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir", http=http)
        remote.register_client("hub-2", jwks_uri="https://hub.test/jwks")
        app = FastAPI()
        app.include_router(remote.router(), prefix="/auth")
        with TestClient(app, base_url=BASE) as other:
            response = credentials(other, assertion(key, "hub-2", "RS384"))
    assert response.status_code == 200


@pytest.mark.parametrize("scope", ["system/Consent.c", "user/*.rs", "patient/*.rs",
                                   "system/*.cruds", "nonsense"])
def test_scope_beyond_the_registration_is_refused(client: TestClient, hub: str,
                                                  hub_key: ECKey, scope: str) -> None:
    assert_oauth_error(credentials(client, assertion(hub_key), scope=scope),
                       400, "invalid_scope")


def test_wrong_key(client: TestClient, hub: str) -> None:
    impostor = ECKey.generate_key("P-384", parameters={"kid": "hub-key-1"})
    assert_oauth_error(credentials(client, assertion(impostor)), 401, "invalid_client")


def test_replayed_jti(client: TestClient, hub: str, hub_key: ECKey) -> None:
    signed = assertion(hub_key, jti="once")
    assert credentials(client, signed).status_code == 200
    assert_oauth_error(credentials(client, signed), 401, "invalid_client")
    again = assertion(hub_key, jti="once")  # a fresh assertion reusing the jti
    assert_oauth_error(credentials(client, again), 401, "invalid_client")


# times are offsets from the moment the test runs (not from collection: a long suite
# would otherwise turn "not yet valid" into "valid")
@pytest.mark.parametrize("overrides", [
    {"exp": -120},  # expired
    {"exp": 3600},  # more than five minutes ahead
    {"exp": None},
    {"jti": None},
    {"aud": f"{BASE}/fhir"},
    {"aud": [f"{BASE}/auth"]},
    {"sub": "someone-else"},
    {"nbf": 600},
])
def test_bad_assertion_claims(client: TestClient, hub: str, hub_key: ECKey,
                              overrides: dict[str, Any]) -> None:
    now = int(time.time())
    claims = {k: (now + v if k in ("exp", "nbf") and isinstance(v, int) else v)
              for k, v in overrides.items()}
    assert_oauth_error(credentials(client, assertion(hub_key, **claims)),
                       401, "invalid_client")


def test_unregistered_client(client: TestClient, hub_key: ECKey) -> None:
    response = credentials(client, assertion(hub_key, client_id="stranger"))
    assert_oauth_error(response, 401, "invalid_client")
    assert "WWW-Authenticate" in response.headers


def test_hmac_assertion_is_refused(client: TestClient, hub: str, hub_key: ECKey) -> None:
    import hmac as hmac_lib
    header = _jose.b64url_encode(b'{"alg":"HS256","kid":"hub-key-1"}')
    now = int(time.time())
    payload = _jose.b64url_encode(
        f'{{"iss":"{hub}","sub":"{hub}","aud":"{TOKEN_URL}","exp":{now + 60},"jti":"h"}}'
        .encode())
    mac = hmac_lib.new(hub_key.as_pem(private=False), f"{header}.{payload}".encode(),
                       hashlib.sha256).digest()
    signed = f"{header}.{payload}.{_jose.b64url_encode(mac)}"
    assert_oauth_error(credentials(client, signed), 401, "invalid_client")


@pytest.mark.parametrize(("form", "status", "error"), [
    ({"grant_type": "client_credentials"}, 401, "invalid_client"),
    ({"grant_type": "client_credentials", "client_assertion_type": "x",
      "client_assertion": "a.b.c"}, 401, "invalid_client"),
    ({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
      "client_assertion": "garbage"}, 401, "invalid_client"),
    ({"grant_type": "password", "username": "u", "password": "p"}, 400,
     "unsupported_grant_type"),
    ({}, 400, "invalid_request"),
])
def test_malformed_token_requests(client: TestClient, form: dict[str, str], status: int,
                                  error: str) -> None:
    assert_oauth_error(client.post("/auth/token", data=form), status, error)


# -- authorization code + PKCE -------------------------------------------------------

@pytest.fixture
def portal(issuer: DevIssuer) -> str:
    issuer.register_client("portal", redirect_uris=[REDIRECT])
    return "portal"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "portal", "redirect_uri": REDIRECT,
              "scope": "openid fhirUser launch/patient patient/*.rs user/*.cruds",
              "state": "st-1", "nonce": "n-1", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v}


def redirect_query(response: Any) -> dict[str, str]:
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(client: TestClient, user: str, challenge: str, **overrides: str) -> dict[str, str]:
    form = {**authorize_params(challenge, **overrides), "username": user, "password": PASSWORD}
    return redirect_query(client.post("/auth/authorize", data=form))


def redeem(client: TestClient, code: str, verifier: str, **overrides: str) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "portal", "code_verifier": verifier, **overrides}
    return client.post("/auth/token", data=form)


def test_sign_in_page_asks_for_a_password(client: TestClient, portal: str) -> None:
    response = client.get("/auth/authorize", params=authorize_params(pkce()[1]))
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert 'name="username"' in response.text
    assert 'type="password"' in response.text
    assert 'value="admin"' not in response.text  # nobody is offered


@pytest.mark.parametrize("form", [{"user": "admin"}, {"username": "admin"},
                                  {"username": "admin", "password": ""},
                                  {"username": "admin", "password": "wrong password!"},
                                  {"username": "auditor", "password": PASSWORD},
                                  {"username": "dr-dupont", "password": PASSWORD + " "}])
def test_no_code_without_the_password(client: TestClient, portal: str,
                                      form: dict[str, str]) -> None:
    """Issue 16 defect 1: `user=admin` alone gave a code, and the code an admin token."""
    response = client.post("/auth/authorize", data={**authorize_params(pkce()[1]), **form})
    assert response.status_code == 401
    assert "location" not in response.headers
    assert "Wrong username or password" in response.text


def test_a_code_is_redeemed_once_also_by_another_issuer_on_the_same_state(
        tmp_path: Path, issuer: DevIssuer, client: TestClient, portal: str) -> None:
    other = DevIssuer(tmp_path, issuer.issuer, issuer.audience, state=issuer.state)
    app = FastAPI()
    app.include_router(other.router(), prefix="/auth")
    verifier, challenge = pkce()
    code = sign_in(client, "martin", challenge)["code"]
    with TestClient(app, base_url=BASE) as second:
        assert redeem(second, code, verifier).status_code == 200
    assert redeem(client, code, verifier).status_code == 400


def test_citizen_code_flow(client: TestClient, portal: str, issuer: DevIssuer,
                           validator: TokenValidator) -> None:
    verifier, challenge = pkce()
    query = sign_in(client, "martin", challenge)
    assert query["state"] == "st-1"
    assert query["iss"] == issuer.issuer
    response = redeem(client, query["code"], verifier)
    assert response.status_code == 200
    body = response.json()
    assert body["patient"] == "martin"
    assert body["scope"] == "openid fhirUser launch/patient patient/*.rs"
    claims = validator.validate(body["access_token"])
    assert claims.fhir_user == "Patient/martin"
    assert claims.roles == frozenset({"citizen"})
    assert claims.client_id == "portal"
    id_token = jwt.decode(body["id_token"], issuer.key_source().get_key(None, "ES256"),
                          algorithms=["ES256"]).claims
    assert id_token["aud"] == "portal"
    assert id_token["nonce"] == "n-1"


def test_practitioner_gets_user_scopes_only(client: TestClient, portal: str,
                                            validator: TokenValidator) -> None:
    verifier, challenge = pkce()
    body = redeem(client, sign_in(client, "dr-dupont", challenge)["code"], verifier).json()
    assert body["scope"] == "openid fhirUser user/*.cruds"
    assert "patient" not in body
    assert validator.validate(body["access_token"]).fhir_user == "Practitioner/dr-dupont"


def test_wrong_verifier_and_reuse_are_refused(client: TestClient, portal: str) -> None:
    verifier, challenge = pkce()
    code = sign_in(client, "martin", challenge)["code"]
    assert_oauth_error(redeem(client, code, pkce()[0]), 400, "invalid_grant")
    assert_oauth_error(redeem(client, code, verifier), 400, "invalid_grant")  # single use


def test_code_is_bound_to_client_and_redirect(client: TestClient, portal: str,
                                              issuer: DevIssuer) -> None:
    issuer.register_client("other", redirect_uris=[REDIRECT])
    verifier, challenge = pkce()
    code = sign_in(client, "martin", challenge)["code"]
    assert_oauth_error(redeem(client, code, verifier, client_id="other"), 400, "invalid_grant")
    code = sign_in(client, "martin", challenge)["code"]
    assert_oauth_error(redeem(client, code, verifier, redirect_uri=f"{BASE}/x"),
                       400, "invalid_grant")
    assert_oauth_error(redeem(client, "made-up", verifier), 400, "invalid_grant")
    assert_oauth_error(redeem(client, "x", verifier, client_id="ghost"), 401, "invalid_client")


@pytest.mark.parametrize(("overrides", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": ""}, "invalid_request"),
    ({"code_challenge": ""}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "patient/*.xyz"}, "invalid_scope"),
])
def test_bad_authorization_requests_redirect_with_an_error(
        client: TestClient, portal: str, overrides: dict[str, str], error: str) -> None:
    response = client.get("/auth/authorize", params=authorize_params(pkce()[1], **overrides))
    query = redirect_query(response)
    assert query["error"] == error
    assert query["state"] == "st-1"
    assert "code" not in query


@pytest.mark.parametrize("overrides", [{"redirect_uri": "https://evil.test/cb"},
                                       {"client_id": "ghost"}, {"client_id": ""}])
def test_unknown_client_or_redirect_never_redirects(client: TestClient, portal: str,
                                                    overrides: dict[str, str]) -> None:
    response = client.get("/auth/authorize", params=authorize_params(pkce()[1], **overrides))
    assert response.status_code == 400
    assert "location" not in response.headers
    response = client.post("/auth/authorize",
                           data={**authorize_params(pkce()[1], **overrides), "username": "martin",
                                 "password": PASSWORD})
    assert response.status_code == 400


def test_unknown_user_is_refused_like_a_wrong_password(client: TestClient,
                                                       portal: str) -> None:
    form = {**authorize_params(pkce()[1]), "username": "mallory", "password": PASSWORD}
    assert client.post("/auth/authorize", data=form).status_code == 401


def test_scope_outside_the_role_is_invalid_scope(client: TestClient, portal: str) -> None:
    query = sign_in(client, "admin", pkce()[1], scope="openid patient/*.rs")
    assert query["error"] == "invalid_scope"


def test_backend_client_cannot_use_the_code_flow(client: TestClient, hub: str) -> None:
    response = client.get("/auth/authorize",
                          params=authorize_params(pkce()[1], client_id=hub))
    assert response.status_code == 400


def test_sign_in_page_lets_its_form_redirect_to_an_app_on_another_origin(
        client: TestClient, issuer: DevIssuer) -> None:
    """Browsers apply form-action to the redirect that answers the sign-in form: a SMART
    app on another origin is only reached if its registered origin is allowed there."""
    issuer.register_client("spa", redirect_uris=["https://app.example.test:8443/cb"],
                           scope="openid fhirUser user/*.rs")
    page = client.get("/auth/authorize", params={
        "response_type": "code", "client_id": "spa",
        "redirect_uri": "https://app.example.test:8443/cb", "scope": "user/*.rs",
        "state": "s1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "form-action 'self' https://app.example.test:8443;" in csp
    assert "frame-ancestors 'none'" in csp
