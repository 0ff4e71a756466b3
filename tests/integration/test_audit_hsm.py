"""The audit log with the HSM key provider (SoftHSM2): tree heads signed on the token,
records authenticated with a key derived on it; `dossier audit verify` with the same
token accepts the log and rejects a record inserted in the database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from audit.canonical import canonical_bytes
from audit.checkpoint import verify_tree_head
from dossier.app import create_app
from tests.integration.conftest import World, make_settings

SOFTHSM_LIB = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "1234"


@pytest.fixture
def token(tmp_path: Path) -> Iterator[dict[str, str]]:
    if not SOFTHSM_LIB.exists():
        pytest.skip("needs softhsm2: apt-get install -y softhsm2")
    util = shutil.which("softhsm2-util")
    assert util is not None
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    label = f"audit-{uuid.uuid4().hex[:8]}"
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", PIN,
                    "--so-pin", "5678"], check=True, capture_output=True)
    import pkcs11

    if str(SOFTHSM_LIB) in pkcs11._loaded:  # loaded before with another SOFTHSM2_CONF
        pkcs11.lib(str(SOFTHSM_LIB)).reinitialize()
    try:
        yield {"SOFTHSM2_CONF": str(conf), "DOSSIER_KEY_PROVIDER": "pkcs11",
               "DOSSIER_PKCS11_LIBRARY": str(SOFTHSM_LIB),
               "DOSSIER_PKCS11_TOKEN_LABEL": label, "DOSSIER_PKCS11_PIN": PIN}
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _verify(env: dict[str, str], data_dir: Path,
            database_url: str | None) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", **env}
    if database_url:
        full["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "dossier", "audit", "verify", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=120,
                          env=full, check=False)


def test_the_log_signed_and_authenticated_on_the_hsm(token: dict[str, str], data_dir: Path,
                                                      database_url: str | None) -> None:
    settings = make_settings(data_dir, database_url, key_provider="pkcs11",
                             pkcs11_library=token["DOSSIER_PKCS11_LIBRARY"],
                             pkcs11_token_label=token["DOSSIER_PKCS11_TOKEN_LABEL"],
                             pkcs11_pin=PIN)
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            world = World(app, client)
            pid = world.consented()
            world.gp.get(f"/fhir/Patient/{pid}")
            size = app.state.runtime.integrate_audit()
            head = world.anonymous.get("/audit/tree-head").json()
            jwk = world.anonymous.get("/audit/public-key").json()
            assert verify_tree_head(head, jwk).tree_size == size
        assert not (data_dir / "keys" / "audit-signing.pem").exists()  # no key file
        ok = _verify(token, data_dir, database_url)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        forged: dict[str, Any] = {"id": str(uuid.uuid4()), "action": "read",
                                  "outcome": "success", "patient": f"Patient/{pid}",
                                  "agent": {"who": "Practitioner/nobody", "role": "auditor"},
                                  "events": [], "recorded": "2027-01-01T00:00:00Z"}
        leaf = canonical_bytes(forged)
        with app.state.runtime.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO audit_records (id, recorded_at, patient_id, agent, action, "
                "outcome, record, leaf, mac) VALUES (:id, CURRENT_TIMESTAMP, :p, 'x', "
                "'read', 'success', :rec, :leaf, :mac)"),
                {"id": forged["id"], "p": pid, "rec": json.dumps(forged), "leaf": leaf,
                 "mac": os.urandom(32)})
        app.state.runtime.integrate_audit()
        bad = _verify(token, data_dir, database_url)
        assert bad.returncode == 1
        assert f"index {size}" in bad.stdout and "not written by the service" in bad.stdout
    finally:
        app.state.runtime.engine.dispose()
