"""The embedded dev issuer: key file, minting, dev tokens, rotation, client registry."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from auth.devissuer import DEFAULT_BASE_URL, KEY_FILE, DevIssuer, default_scope, dev_token
from auth.errors import InvalidToken
from auth.scopes import format_scopes
from auth.tokens import TokenValidator

BASE = "https://dossier.test"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir")


def validator_for(issuer: DevIssuer) -> TokenValidator:
    return TokenValidator(issuer.issuer, issuer.audience, issuer.key_source())


def test_signing_key_is_created_private_and_reused(tmp_path: Path, issuer: DevIssuer) -> None:
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    again = DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir")
    assert again.jwks() == issuer.jwks()
    assert all("d" not in key for key in issuer.jwks()["keys"])


def test_minted_token_validates_with_the_claims_asked_for(issuer: DevIssuer) -> None:
    token = issuer.mint("Practitioner/dr-dupont", ["practitioner"], "user/Task.cruds", 600)
    claims = validator_for(issuer).validate(token)
    assert claims.fhir_user == "Practitioner/dr-dupont"
    assert claims.subject == "Practitioner/dr-dupont"
    assert claims.roles == frozenset({"practitioner"})
    assert claims.client_id == "dev-cli"
    assert claims.raw_scope == "user/Task.cruds"


def test_negative_ttl_mints_an_expired_token(issuer: DevIssuer) -> None:
    token = issuer.mint("Patient/martin", ["citizen"], None, -120)
    with pytest.raises(InvalidToken) as caught:
        validator_for(issuer).validate(token)
    assert caught.value.reason == "expired"


@pytest.mark.parametrize(("roles", "scope"), [
    (["citizen"], "patient/*.cruds"), (["practitioner"], "user/*.cruds"),
    (["auditor"], "user/*.rs"), (["admin"], "user/*.cruds"), (["hub"], "system/*.rs"),
])
def test_default_scope_follows_the_role(issuer: DevIssuer, roles: list[str],
                                        scope: str) -> None:
    assert default_scope(roles) == scope
    claims = validator_for(issuer).validate(issuer.mint("Person/x", roles, None, 60))
    assert format_scopes(claims.scopes) == scope


def test_mint_refuses_what_no_validator_would_accept(issuer: DevIssuer) -> None:
    with pytest.raises(ValueError, match="roles"):
        issuer.mint("Patient/martin", ["superuser"], None, 60)
    with pytest.raises(InvalidToken):
        issuer.mint("Patient/martin", ["citizen"], "everything please", 60)
    with pytest.raises(ValueError, match="registered"):
        issuer.mint("Patient/martin", ["citizen"], None, 60, extra_claims={"iss": "x"})


def test_extra_claims_carry_an_actor(issuer: DevIssuer) -> None:
    token = issuer.mint("Practitioner/dr-dupont", ["hub"], "system/*.rs", 60,
                        client_id="hub-abrumet", extra_claims={"act": {"sub": "hub-abrumet"}})
    assert validator_for(issuer).validate(token).act == {"sub": "hub-abrumet"}


def test_dev_token_uses_the_issuer_recorded_by_the_server(tmp_path: Path,
                                                          issuer: DevIssuer) -> None:
    token = dev_token(tmp_path, "Patient/simone", ["citizen"], ttl=60)
    assert validator_for(issuer).validate(token).fhir_user == "Patient/simone"


def test_dev_token_without_a_server_uses_the_default_base(tmp_path: Path) -> None:
    token = dev_token(tmp_path / "fresh", "Person/admin", ["admin"], "user/*.cruds", 60)
    issuer = DevIssuer.from_data_dir(tmp_path / "fresh")
    assert issuer.issuer == f"{DEFAULT_BASE_URL}/auth"
    assert validator_for(issuer).validate(token).roles == frozenset({"admin"})


def test_rotation_keeps_old_tokens_valid_and_other_processes_follow(
        tmp_path: Path, issuer: DevIssuer) -> None:
    server_side = validator_for(DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir"))
    old = issuer.mint("Patient/martin", ["citizen"], None, 60)
    new_kid = issuer.rotate_key()
    new = issuer.mint("Patient/martin", ["citizen"], None, 60)
    assert issuer.jwks()["keys"][0]["kid"] == new_kid
    assert server_side.validate(old).subject
    assert server_side.validate(new).subject  # unknown kid → reloaded from disk
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_register_client_persists_public_keys_only(tmp_path: Path, issuer: DevIssuer) -> None:
    key = ECKey.generate_key("P-384", parameters={"kid": "hub-1"})
    with pytest.raises(ValueError, match="public"):
        issuer.register_client("hub", jwks={"keys": [key.as_dict(private=True)]})
    with pytest.raises(ValueError, match="needs"):
        issuer.register_client("nothing")
    issuer.register_client("hub", jwks={"keys": [key.as_dict(private=False)]},
                           fhir_user="Organization/abrumet")
    client = DevIssuer(tmp_path, f"{BASE}/auth", f"{BASE}/fhir").client("hub")
    assert client is not None
    assert client.backend
    assert client.scope == "system/*.rs"
    assert client.fhir_user == "Organization/abrumet"
    assert issuer.client("unknown") is None


def test_discovery_names_the_endpoints(issuer: DevIssuer) -> None:
    doc = issuer.discovery()
    assert doc["issuer"] == f"{BASE}/auth"
    assert doc["jwks_uri"] == f"{BASE}/auth/jwks"
    assert doc["token_endpoint"] == f"{BASE}/auth/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert issuer.smart_configuration()["authorization_endpoint"] == f"{BASE}/auth/authorize"


def test_mint_at_a_given_time(issuer: DevIssuer) -> None:
    then = datetime(2027, 3, 5, 10, 0, tzinfo=UTC)
    token = issuer.mint("Patient/martin", ["citizen"], None, 60, now=then)
    assert validator_for(issuer).validate(token, now=then).expires_at.timestamp() == \
        then.timestamp() + 60
