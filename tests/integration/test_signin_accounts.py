"""Issue 16, defect 1: the embedded issuer signs nobody in without a password.

The attack: on the default `dossier serve` (no --demo), `POST /auth/authorize` with
`user=admin` and a PKCE challenge returned a code that `/auth/token` turned into an admin
token. Codes and jti values live in the database, so they hold across processes (two
apps on one database stand for two workers)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from dossier.app import create_app
from dossier.cli import main
from dossier.settings import load_settings

BASE = "https://dossier.test"
REDIRECT = f"{BASE}/portal/callback"
DEMO_PASSWORD = "demo password for tests"


def make_app(data_dir: Path, database_url: str | None, **extra: Any) -> Any:
    db = {"database_url": database_url} if database_url else {}
    settings = load_settings(data_dir=data_dir, base_url=BASE, audit_sequencer_seconds=0,
                             notify_worker_seconds=0, maintenance_seconds=0, **db, **extra)
    return create_app(settings)


@pytest.fixture
def app(data_dir: Path, database_url: str | None) -> Iterator[Any]:
    app = make_app(data_dir, database_url)
    yield app
    app.state.runtime.engine.dispose()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(client: TestClient, challenge: str, **form: str) -> Any:
    params = {"response_type": "code", "client_id": "dossier-portal", "redirect_uri": REDIRECT,
              "scope": "openid fhirUser user/*.cruds patient/*.cruds", "state": "s",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    return client.post("/auth/authorize", data={**params, **form}, follow_redirects=False)


def code_of(response: Any) -> str:
    assert response.status_code == 303, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def redeem(client: TestClient, code: str, verifier: str) -> Any:
    return client.post("/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": "dossier-portal", "code_verifier": verifier})


@pytest.mark.parametrize("user", ["admin", "auditor", "dr-dupont", "martin"])
def test_the_anonymous_admin_attack_fails(app: Any, user: str) -> None:
    with TestClient(app, base_url=BASE) as client:
        verifier, challenge = pkce()
        response = authorize(client, challenge, user=user)
        assert response.status_code == 401
        assert "location" not in response.headers
        response = authorize(client, challenge, username=user, password="")
        assert response.status_code in (400, 401)  # FastAPI drops an empty field
        assert "location" not in response.headers
        # and no guessed code redeems
        assert redeem(client, secrets.token_urlsafe(32), verifier).status_code == 400


def test_the_operator_password_is_printed_once_and_works(
        data_dir: Path, database_url: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    first = make_app(data_dir, database_url)
    printed = capsys.readouterr().err
    found = re.search(r"Operator account 'admin' created; its password \(shown once\): (\S+)",
                      printed)
    assert found, printed
    second = make_app(data_dir, database_url)  # a later start prints nothing
    assert "Operator account" not in capsys.readouterr().err
    try:
        with TestClient(first, base_url=BASE) as client:
            verifier, challenge = pkce()
            code = code_of(authorize(client, challenge, username="admin",
                                     password=found.group(1)))
            with TestClient(second, base_url=BASE) as other:  # another worker
                token = redeem(other, code, verifier)
            assert token.status_code == 200, token.text
            assert redeem(client, code, verifier).status_code == 400  # single use, shared
            claims = first.state.authenticate(f"Bearer {token.json()['access_token']}").claims
            assert claims.roles == frozenset({"admin"})
            assert claims.fhir_user == "Person/admin"
    finally:
        first.state.runtime.engine.dispose()
        second.state.runtime.engine.dispose()


def test_demo_people_sign_in_only_with_demo(data_dir: Path,
                                            database_url: str | None) -> None:
    plain = make_app(data_dir, database_url, demo_password=DEMO_PASSWORD)
    try:
        with TestClient(plain, base_url=BASE) as client:
            assert authorize(client, pkce()[1], username="martin",
                             password=DEMO_PASSWORD).status_code == 401
    finally:
        plain.state.runtime.engine.dispose()
    demo = make_app(data_dir, database_url, demo=True, demo_password=DEMO_PASSWORD)
    try:
        with TestClient(demo, base_url=BASE) as client:
            verifier, challenge = pkce()
            code = code_of(authorize(client, challenge, username="martin",
                                     password=DEMO_PASSWORD))
            body = redeem(client, code, verifier).json()
            assert body["patient"] == "martin"
            assert authorize(client, challenge, username="martin",
                             password="not the password").status_code == 401
    finally:
        demo.state.runtime.engine.dispose()


def test_users_cli(data_dir: Path, database_url: str | None,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    if database_url:
        monkeypatch.setenv("DOSSIER_DATABASE_URL", database_url)
    dd = ["--data-dir", str(data_dir)]
    assert main(["users", "add", "dpo", "--role", "auditor", *dd]) == 0
    password = re.search(r"password \(shown once\): (\S+)", capsys.readouterr().out)
    assert password
    assert main(["users", "add", "dpo", "--role", "auditor", *dd]) == 2  # exists
    assert main(["users", "add", "gp", "--role", "practitioner", *dd]) == 2  # no --fhir-user
    assert main(["users", "list", *dd]) == 0
    assert "dpo\tauditor\tPerson/dpo" in capsys.readouterr().out
    app = make_app(data_dir, database_url)
    try:
        with TestClient(app, base_url=BASE) as client:
            verifier, challenge = pkce()
            code = code_of(authorize(client, challenge, username="dpo",
                                     password=password.group(1)))
            assert main(["users", "remove", "dpo", *dd]) == 0
            # removed between sign-in and redemption: no token
            assert redeem(client, code, verifier).status_code == 400
    finally:
        app.state.runtime.engine.dispose()
