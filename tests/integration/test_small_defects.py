"""Issue 16, defect 10: 405 with Allow; no Host header in URLs we hand out; a dev-issuer key
rotated out stops verifying at once; dev-token refuses a data directory without a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auth.devissuer import DevIssuer
from dossier.app import create_app
from dossier.cli import main
from dossier.settings import load_settings
from tests import factories as f
from tests.integration.conftest import World


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/fhir/metadata"), ("PUT", "/fhir/Task"), ("GET", "/fhir/Patient/p1/$erase"),
    ("PUT", "/fhir/Provenance/p1"),
])
def test_405_says_what_is_allowed(world: World, method: str, path: str) -> None:
    r = world.gp.client.request(method, path, headers={
        **world.gp.headers, "Content-Type": "application/fhir+json"},
        content=b'{"resourceType":"Provenance"}')
    if r.status_code != 405:
        pytest.skip(f"{method} {path} answers {r.status_code} here")
    assert r.headers.get("allow"), (method, path)
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_forged_host_is_never_echoed(data_dir: Path, database_url: str | None) -> None:
    db = {"database_url": database_url} if database_url else {}
    app = create_app(load_settings(data_dir=data_dir, audit_sequencer_seconds=0,
                                   notify_worker_seconds=0, maintenance_seconds=0,
                                   host="127.0.0.1", port=8123, **db))
    try:
        with TestClient(app, base_url="http://evil.example") as client:
            admin = {"Authorization": "Bearer " + app.state.dev_issuer.mint(
                "Person/admin", ["admin"], None, 600), "Content-Type": "application/fhir+json"}
            r = client.post("/fhir/Organization", json=f.organization(), headers=admin)
            assert r.status_code == 201, r.text
            assert r.headers["location"].startswith("http://127.0.0.1:8123/fhir/")
            found = client.get("/fhir/Organization", headers=admin)
            assert "evil.example" not in found.text
            assert found.json()["entry"][0]["fullUrl"].startswith("http://127.0.0.1:8123/")
    finally:
        app.state.runtime.engine.dispose()


def test_a_key_rotated_out_stops_verifying_at_once(world: World, settings: Any) -> None:
    old = world.token("practitioner", world.gp_ref)
    assert world.client.get("/fhir/Organization",
                            headers={"Authorization": f"Bearer {old}"}).status_code == 200
    other = DevIssuer.from_data_dir(settings.data_dir)  # another process: the CLI
    other.rotate_key()
    other.rotate_key()  # the first key is now out of the file
    r = world.client.get("/fhir/Organization", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401
    fresh = other.mint(world.gp_ref, ["practitioner"], None, 600)
    assert world.client.get("/fhir/Organization",
                            headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_dev_token_refuses_a_missing_data_dir(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    code = main(["dev-token", "--data-dir", str(missing), "--fhir-user", "Person/admin",
                 "--roles", "admin"])
    assert code == 2
    assert "holds no dev issuer key" in capsys.readouterr().err
    assert not missing.exists()
