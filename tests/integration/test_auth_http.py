"""Identity over HTTP: every bad token is a 401, the role × scope × interaction matrix,
a hub's SMART Backend Services flow end to end, and the dev-token CLI."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from tests import factories as f
from tests.integration.conftest import Api, World


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _claims(payload: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _is_401(r: Any) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


def test_metadata_is_public_and_the_rest_is_not(world: World) -> None:
    assert world.anonymous.get("/fhir/metadata").status_code == 200
    for path in ("/fhir/Patient", "/fhir/Organization", "/fhir/Task/x", "/fhir/_history"):
        _is_401(world.anonymous.get(path))


def test_bad_tokens_are_401(world: World) -> None:
    good = world.token("practitioner", world.gp_ref)
    header, payload, signature = good.split(".")
    other = ECKey.generate_key("P-256", parameters={"kid": "stranger"})
    public = world.issuer.jwks()["keys"][0]
    cases = {
        "garbage": "not-a-token",
        "two parts": f"{header}.{payload}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{payload}.",
        "tampered": f"{header}.{payload[:-4]}AAAA.{signature}",
        "wrong key": jwt.encode({"alg": "ES256", "kid": public["kid"]},
                                {"iss": world.issuer.issuer, "aud": world.issuer.audience,
                                 "sub": "x", "exp": int(time.time()) + 60}, other),
        "hs256 with public key": jwt.encode(
            {"alg": "HS256", "kid": public["kid"]},
            {"iss": world.issuer.issuer, "aud": world.issuer.audience, "sub": "x",
             "exp": int(time.time()) + 60},
            OctKey.import_key(str(public).encode()), algorithms=["HS256"]),
        "expired": world.token("practitioner", world.gp_ref, ttl=-120),
        "unknown practitioner": world.token("practitioner", "Practitioner/ghost"),
        "garbage scope": world.issuer.sign({**_claims(payload), "scope": "user/Task.xyz!"}),
    }
    for name, token in cases.items():
        r = world.client.get("/fhir/Organization", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, name
        assert token[:20] not in r.text


def test_inactive_practitioner_is_401(world: World) -> None:
    pract = world.admin.get(f"/fhir/{world.sw_ref}").json()
    assert world.sw.get("/fhir/Organization").status_code == 200
    assert world.admin.put(f"/fhir/{world.sw_ref}", dict(pract, active=False)).status_code == 200
    assert world.sw.get("/fhir/Organization").status_code == 401


# role, scope (None = the role's default), interaction, expected status
MATRIX: list[tuple[str, str | None, str, int]] = [
    ("admin", None, "create-organization", 201),
    ("admin", "user/Organization.rs", "create-organization", 403),
    ("practitioner", None, "create-organization", 403),
    ("citizen", None, "create-organization", 403),
    ("hub", None, "create-organization", 403),
    ("auditor", None, "create-organization", 403),
    ("practitioner", None, "search-organization", 200),
    ("citizen", None, "search-organization", 200),
    ("auditor", None, "search-organization", 200),
    ("hub", None, "search-organization", 200),
    ("practitioner", "user/Task.rs", "search-organization", 403),
    ("practitioner", "patient/*.rs", "search-organization", 403),
    ("practitioner", None, "create-patient", 201),
    ("admin", None, "create-patient", 201),
    ("citizen", None, "create-patient", 403),
    ("auditor", None, "create-patient", 403),
    ("practitioner", None, "search-task", 200),
    ("practitioner", "user/Task.read", "search-task", 200),
    ("practitioner", "user/Task.c", "search-task", 403),
    ("admin", None, "search-task", 403),
    ("auditor", None, "search-task", 403),
    ("hub", None, "search-task", 200),
    ("hub", "user/*.rs", "search-task", 403),
    ("citizen", None, "read-own-patient", 200),
    ("citizen", None, "read-other-patient", 404),
    ("practitioner", None, "create-consent", 403),
    ("citizen", None, "create-consent", 201),
    ("citizen", "patient/Consent.rs", "create-consent", 403),
]


@pytest.mark.parametrize(("role", "scope", "interaction", "expected"), MATRIX)
def test_role_scope_interaction_matrix(world: World, role: str, scope: str | None,
                                       interaction: str, expected: int) -> None:
    pid = world.open_dossier()
    other = world.open_dossier(f.patient(ssin=f.niss("700101", 7)))
    users = {"admin": "Operator/admin", "auditor": "Operator/auditor",
             "practitioner": world.gp_ref, "citizen": f"Patient/{pid}", "hub": None}
    if role == "hub":
        api = Api(world.client, str(world.issuer.mint(None, ["hub"], scope, 600,
                                                      client_id="hub-test")))
    else:
        api = world.as_(role, str(users[role]), scope)
    action = {
        "create-organization": lambda: api.post("/fhir/Organization", f.organization()),
        "search-organization": lambda: api.get("/fhir/Organization"),
        "create-patient": lambda: api.post("/fhir/Patient", f.patient(ssin=None)),
        "search-task": lambda: api.get("/fhir/Task"),
        "read-own-patient": lambda: api.get(f"/fhir/Patient/{pid}"),
        "read-other-patient": lambda: api.get(f"/fhir/Patient/{other}"),
        "create-consent": lambda: api.post("/fhir/Consent",
                                           f.consent(pid, world.gp_ref)),
    }[interaction]
    r = action()
    assert r.status_code == expected, (role, scope, interaction, r.text)
    if expected >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"


def test_hub_backend_services_end_to_end(world: World) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "hub-key-1", "alg": "ES256"},
                             private=True)
    public = key.as_dict(private=False)
    world.issuer.register_client("abrumet-test", jwks={"keys": [public]},
                                 scope="system/*.rs", fhir_user=world.org_ref)
    token_url = "/auth/token"
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "hub-key-1", "typ": "JWT"}, {
        "iss": "abrumet-test", "sub": "abrumet-test", "aud": world.issuer.token_endpoint,
        "exp": now + 240, "iat": now, "jti": uuid.uuid4().hex}, key)
    form = {"grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type":
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    r = world.client.post(token_url, data=form)
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    hub = Api(world.client, access)
    assert hub.get("/fhir/metadata").status_code == 200
    assert hub.get("/fhir/Organization").json()["total"] >= 1
    replay = world.client.post(token_url, data=form)
    assert replay.status_code in (400, 401)
    assert replay.json()["error"] == "invalid_client"


def test_dev_token_cli(world: World, settings: Any) -> None:
    data_dir: Path = settings.data_dir
    out = subprocess.run(
        [sys.executable, "-m", "dossier", "dev-token", "--data-dir", str(data_dir),
         "--fhir-user", world.gp_ref, "--roles", "practitioner"],
        capture_output=True, text=True, check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **({"DATABASE_URL": settings.database_url}
                                         if settings.database_url else {})})
    token = out.stdout.strip()
    assert "\n" not in token and token.count(".") == 2
    assert Api(world.client, token).get("/fhir/Organization").status_code == 200
    expired = subprocess.run(
        [sys.executable, "-m", "dossier", "dev-token", "--data-dir", str(data_dir),
         "--fhir-user", world.gp_ref, "--roles", "practitioner", "--ttl=-120"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert Api(world.client, expired).get("/fhir/Organization").status_code == 401


def test_smart_configuration_is_public(world: World) -> None:
    r = world.anonymous.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    body = r.json()
    assert body["token_endpoint"].endswith("/auth/token")
    assert "private_key_jwt" in str(body)
