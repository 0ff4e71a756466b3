"""RFC 8693 token exchange at the dev issuer: a hub relays a practitioner it authenticated.

The hub signs a subject token (sub = Practitioner/x) with its registered key; the access
token then names the practitioner as fhirUser and the hub in ``act``. The issuer only
lets a hub act for an active practitioner of the Organization it is registered for."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from auth import _jose
from auth.actor import resolve_principal
from auth.clientauth import ASSERTION_TYPE
from auth.devissuer import TOKEN_EXCHANGE, DevIssuer
from auth.tokens import TokenValidator

BASE = "https://dossier.test"
TOKEN_URL = f"{BASE}/auth/token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
HUB_ORG = "Organization/hub-org"


class Directory:
    """Practitioner reference → (active, [(organization, profession)])."""

    def __init__(self) -> None:
        self.people: dict[str, tuple[bool, list[tuple[str, str]]]] = {
            "Practitioner/member": (True, [(HUB_ORG, "persphysician")]),
            "Practitioner/outsider": (True, [("Organization/other", "persnurse")]),
            "Practitioner/retired": (False, [(HUB_ORG, "persphysician")]),
        }

    def practitioner_active(self, reference: str) -> bool:
        return reference in self.people and self.people[reference][0]

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        return [(org, code) for org, code in self.people.get(practitioner_ref, (False, []))[1]]


@pytest.fixture(scope="module")
def hub_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "hub-1", "alg": "ES256"})


@pytest.fixture
def issuer(tmp_path: Path, hub_key: ECKey) -> DevIssuer:
    made = DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir", directory=Directory())
    made.register_client("hub", jwks={"keys": [hub_key.as_dict(private=False)]},
                         scope="system/*.rs", fhir_user=HUB_ORG)
    return made


@pytest.fixture
def client(issuer: DevIssuer) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(issuer.router(), prefix="/auth")
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def signed(key: ECKey, **claims: Any) -> str:
    now = int(time.time())
    values = {"iss": "hub", "sub": "hub", "aud": TOKEN_URL, "iat": now, "exp": now + 240,
              "jti": secrets.token_hex(8), **claims}
    values = {k: v for k, v in values.items() if v is not None}
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"}, values, key,
                      algorithms=["ES256"], registry=_jose.registry(["ES256"]))


def exchange(client: TestClient, key: ECKey, subject: str | None = "Practitioner/member",
             *, subject_key: ECKey | None = None, subject_token: str | None = None,
             **extra: str) -> Any:
    form = {"grant_type": TOKEN_EXCHANGE, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed(key), "subject_token_type": JWT_TYPE,
            "subject_token": subject_token or signed(subject_key or key, sub=subject),
            "scope": "system/*.rs", **extra}
    return client.post("/auth/token", data=form)


def oauth_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_hub_gets_a_token_acting_for_its_practitioner(client: TestClient, issuer: DevIssuer,
                                                      hub_key: ECKey) -> None:
    response = exchange(client, hub_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["scope"] == "system/*.rs"
    validator = TokenValidator(issuer.issuer, issuer.audience, issuer.key_source())
    claims = validator.validate(body["access_token"])
    assert claims.fhir_user == "Practitioner/member"
    assert claims.subject == "Practitioner/member"
    assert claims.client_id == "hub"
    assert claims.act == {"sub": "hub"}
    assert claims.roles == frozenset({"hub"})
    principal = resolve_principal(claims, Directory(), claims.expires_at)
    assert principal.practitioner == principal.on_behalf_of == "Practitioner/member"
    assert principal.organizations == frozenset({HUB_ORG})
    assert principal.professions == frozenset({"persphysician"})


def test_subject_by_absolute_url(client: TestClient, hub_key: ECKey) -> None:
    response = exchange(client, hub_key, f"{BASE}/fhir/Practitioner/member")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("subject", ["Practitioner/outsider", "Practitioner/retired",
                                     "Practitioner/nobody", "Patient/member", HUB_ORG])
def test_hub_may_not_act_for_someone_outside_its_organisation(
        client: TestClient, hub_key: ECKey, subject: str) -> None:
    oauth_error(exchange(client, hub_key, subject), 400, "invalid_request")


def test_subject_token_signed_by_another_key(client: TestClient, hub_key: ECKey) -> None:
    other = ECKey.generate_key("P-256", parameters={"kid": "hub-1"})
    oauth_error(exchange(client, hub_key, subject_key=other), 400, "invalid_request")


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 300},
    {"exp": int(time.time()) + 3600},
    {"jti": None},
    {"aud": f"{BASE}/fhir"},
    {"iss": "someone-else"},
    {"sub": None},
])
def test_bad_subject_token_claims(client: TestClient, hub_key: ECKey,
                                  claims: dict[str, Any]) -> None:
    token = signed(hub_key, **{"sub": "Practitioner/member", **claims})
    oauth_error(exchange(client, hub_key, subject_token=token), 400, "invalid_request")


def test_replayed_subject_token(client: TestClient, hub_key: ECKey) -> None:
    token = signed(hub_key, sub="Practitioner/member", jti="once")
    assert exchange(client, hub_key, subject_token=token).status_code == 200
    oauth_error(exchange(client, hub_key, subject_token=token), 400, "invalid_request")


def test_subject_and_assertion_jtis_do_not_collide(client: TestClient,
                                                   hub_key: ECKey) -> None:
    form = {"grant_type": TOKEN_EXCHANGE, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed(hub_key, jti="same"), "subject_token_type": JWT_TYPE,
            "subject_token": signed(hub_key, sub="Practitioner/member", jti="same")}
    assert client.post("/auth/token", data=form).status_code == 200


@pytest.mark.parametrize("extra", [
    {"subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
    {"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"},
    {"actor_token": "x"},
    {"audience": "https://elsewhere.test"},
])
def test_unsupported_exchange_parameters(client: TestClient, hub_key: ECKey,
                                         extra: dict[str, str]) -> None:
    oauth_error(exchange(client, hub_key, **extra), 400, "invalid_request")


def test_scope_beyond_registration(client: TestClient, hub_key: ECKey) -> None:
    oauth_error(exchange(client, hub_key, scope="system/*.cruds"), 400, "invalid_scope")


def test_client_must_authenticate(client: TestClient, hub_key: ECKey) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "hub-1"})
    oauth_error(exchange(client, stranger, subject_key=hub_key), 401, "invalid_client")


def test_client_without_organisation_is_unauthorized(client: TestClient, issuer: DevIssuer,
                                                     hub_key: ECKey) -> None:
    issuer.register_client("hub", jwks={"keys": [hub_key.as_dict(private=False)]},
                           scope="system/*.rs")
    oauth_error(exchange(client, hub_key), 400, "unauthorized_client")


def test_issuer_without_directory_lets_nobody_act(tmp_path: Path, hub_key: ECKey) -> None:
    bare = DevIssuer(tmp_path / "bare", f"{BASE}/auth", f"{BASE}/fhir")
    bare.register_client("hub", jwks={"keys": [hub_key.as_dict(private=False)]},
                         fhir_user=HUB_ORG)
    app = FastAPI()
    app.include_router(bare.router(), prefix="/auth")
    with TestClient(app, base_url=BASE) as other:
        oauth_error(exchange(other, hub_key), 400, "unauthorized_client")


def test_discovery_lists_token_exchange(client: TestClient) -> None:
    doc = client.get("/auth/.well-known/openid-configuration").json()
    assert TOKEN_EXCHANGE in doc["grant_types_supported"]


def test_jwks_uri_must_be_https_or_loopback(issuer: DevIssuer) -> None:
    with pytest.raises(ValueError, match="https"):
        issuer.register_client("h2", jwks_uri="http://hub.example/jwks")
    issuer.register_client("h3", jwks_uri="http://127.0.0.1:9/jwks")
