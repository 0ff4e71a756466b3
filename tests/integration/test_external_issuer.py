"""The whole service behind an external OpenID provider that is not ours (npm
oidc-provider on Node), on SQLite and PostgreSQL: with DOSSIER_OIDC_ISSUER set, the
embedded issuer is off, the provider's hub tokens are validated through discovery and
JWKS, and the consent decision, the audit and the refusals are the same as with the
embedded issuer. (tests/unit/auth/test_auth_oidc_peer.py proves the validator alone.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from dossier.app import create_app
from dossier.db.models import audit_records
from tests import factories as f
from tests.integration.conftest import World, make_settings
from tests.unit.auth.test_auth_oidc_peer import AUDIENCE, Peer, _rsa, start_peer

pytestmark = pytest.mark.oidc_peer
__all__ = ["start_peer"]  # the fixture, used by name below


def seeded(data_dir: Path, database_url: str | None) -> tuple[str, dict[str, str]]:
    """With the embedded issuer: the provider's hub Organization in the directory, a
    dossier granting it démarches, a démarche and a psy démarche in it."""
    app = create_app(make_settings(data_dir, database_url))
    try:
        with TestClient(app) as client:
            world = World(app, client)
            r = world.admin.put("/fhir/Organization/peer-org", {
                **f.organization("Peer hub", "health"), "id": "peer-org"})
            assert r.status_code == 201, r.text
            pid = world.consented()
            world.grant(pid, "Organization/peer-org", ("demarches",), ("access",))
            made = {"task": world.gp.create(f.task(f"Patient/{pid}"))["id"],
                    "psy": world.gp.create(f.task(f"Patient/{pid}",
                                                  code="mental-health-follow-up"))["id"]}
            return pid, made
    finally:
        app.state.runtime.engine.dispose()


def test_the_service_behind_an_external_provider(
        data_dir: Path, database_url: str | None,
        start_peer: Callable[[RSAKey], Peer]) -> None:
    pid, made = seeded(data_dir, database_url)
    peer = start_peer(_rsa("peer-app"))
    app = create_app(make_settings(data_dir, database_url, oidc_issuer=peer.issuer,
                                   oidc_audience=AUDIENCE))
    try:
        with httpx.Client(timeout=10) as http, TestClient(app) as client:
            token = peer.token(http)
            auth = {"Authorization": f"Bearer {token}"}
            found = client.get("/fhir/Task", params={"patient": f"Patient/{pid}"},
                               headers=auth)
            assert found.status_code == 200, found.text
            assert {e["resource"]["id"] for e in found.json()["entry"]} == {made["task"]}
            assert client.get(f"/fhir/Task/{made['psy']}", headers=auth).status_code == 404
            # no embedded issuer: no token endpoint, no dev discovery
            assert client.post("/auth/token", data={"grant_type": "client_credentials"}
                               ).status_code == 404
            # discovery points to the provider: SMART configuration from its metadata,
            # and the CapabilityStatement's oauth-uris (issue 17)
            smart = client.get("/.well-known/smart-configuration")
            assert smart.status_code == 200, smart.text
            assert smart.headers["content-type"].startswith("application/json")
            assert smart.json()["token_endpoint"].startswith(peer.issuer)
            security = client.get("/fhir/metadata").json()["rest"][0]["security"]
            uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
            assert uris["token"] == smart.json()["token_endpoint"]
            # a token of ours is not the provider's
            forged = token.rsplit(".", 1)[0] + ".AAAA"
            assert client.get(f"/fhir/Task/{made['task']}",
                              headers={"Authorization": f"Bearer {forged}"}).status_code == 401
            with Session(app.state.runtime.engine) as session:
                recorded: list[dict[str, Any]] = [r for (r,) in session.execute(
                    select(audit_records.c.record).where(
                        audit_records.c.patient_id == pid))]
            by_peer = [r for r in recorded if r["agent"].get("client") == "peer-hub"]
            assert by_peer and all(r["agent"]["who"] == "Organization/peer-org"
                                   for r in by_peer)
            # the psy démarche: refused, and logged against the person
            assert {r["outcome"] for r in by_peer} == {"success", "denied"}
    finally:
        app.state.runtime.engine.dispose()
