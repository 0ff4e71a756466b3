"""Field encryption at rest: nothing personal in clear in the SQLite files (WAL included)
or in a pg_dump; rotation re-wraps keys; erasure shreds a person's data for good."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests import factories as f
from tests.integration.conftest import World

SECRETS = ("Quagmire", "Zébulon", "Rue des Bouchers 42", "+32470111222", "Bartholomeus")


def _personal_dossier(world: World) -> tuple[str, str]:
    niss = f.niss("610315", 418)
    patient = f.patient(ssin=niss, family="Quagmire", given="Zébulon", birth="1961-03-15")
    patient["address"] = [{"line": ["Rue des Bouchers 42"], "city": "Bruxelles",
                           "postalCode": "1000"}]
    patient["telecom"] = [{"system": "phone", "value": "+32470111222"}]
    pid = world.consented(patient)
    world.gp.create(f.related_person(pid, family="Bartholomeus", given="Anna"))
    current = world.gp.get(f"/fhir/Patient/{pid}").json()
    assert world.gp.put(f"/fhir/Patient/{pid}", dict(current, birthDate="1961-03-16")
                        ).status_code == 200  # a second version, also sealed
    return pid, niss


def _forms(value: str) -> list[bytes]:
    escaped = json.dumps(value)[1:-1]
    return list({value.encode(), escaped.encode(), value.encode("utf-16-le")})


def _assert_absent(blob: bytes, values: tuple[str, ...]) -> None:
    for value in values:
        for form in _forms(value):
            assert form not in blob, value


def _dump(world: World, settings: Any, backend: str) -> bytes:
    if backend == "sqlite":
        world.app.state.runtime.engine.dispose()
        return b"".join(p.read_bytes() for p in Path(settings.data_dir).rglob("*")
                        if p.is_file())
    url = make_url(settings.database_url)
    out = subprocess.run(["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-d", url.database],
                         capture_output=True, check=True, timeout=120)
    return out.stdout


def test_no_personal_data_in_clear_at_rest(world: World, settings: Any, backend: str) -> None:
    pid, niss = _personal_dossier(world)
    assert world.gp.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Quagmire"
    assert world.gp.total("/fhir/Patient", identifier=f"{f.SSIN}|{niss}") == 1
    blob = _dump(world, settings, backend)
    assert pid.encode() in blob  # the dump is real: pseudonymous ids are there
    _assert_absent(blob, (*SECRETS, niss))


def _cli(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    return subprocess.run([sys.executable, "-m", "dossier", *args, "--data-dir",
                           str(settings.data_dir)], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_kek_rotation_rewraps_without_touching_data(world: World, settings: Any) -> None:
    pid, _ = _personal_dossier(world)
    engine = world.app.state.runtime.engine
    with engine.connect() as conn:
        before = conn.execute(text("SELECT kek_id, wrapped FROM patient_keys")).all()
        content = conn.execute(text("SELECT sealed FROM resources WHERE res_id = :p"),
                               {"p": pid}).scalar_one()
    rotated = _cli(settings, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    with engine.connect() as conn:
        after = conn.execute(text("SELECT kek_id, wrapped FROM patient_keys")).all()
        again = conn.execute(text("SELECT sealed FROM resources WHERE res_id = :p"),
                             {"p": pid}).scalar_one()
    assert {r.kek_id for r in after}.isdisjoint({r.kek_id for r in before})
    assert again == content  # data untouched
    assert world.gp.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Quagmire"


def test_erasure_shreds_and_keeps_the_audit_verifiable(world: World, settings: Any,
                                                      backend: str) -> None:
    pid, niss = _personal_dossier(world)
    task = world.gp.create(f.task(f"Patient/{pid}"))
    assert world.admin.post(f"/fhir/Patient/{pid}/$erase", {"resourceType": "Parameters"}
                            ).status_code == 409  # nobody asked
    asked = world.citizen(pid).post(f"/fhir/Patient/{pid}/$erase",
                                    {"resourceType": "Parameters"})
    assert asked.status_code == 200, asked.text
    assert world.gp.post(f"/fhir/Patient/{pid}/$erase", {"resourceType": "Parameters"}
                         ).status_code == 403
    done = world.admin.post(f"/fhir/Patient/{pid}/$erase", {"resourceType": "Parameters"})
    assert done.status_code == 200, done.text
    assert world.citizen(pid).get(f"/fhir/Patient/{pid}").status_code == 410
    assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 410
    assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 410
    assert world.gp.total("/fhir/Patient", identifier=f"{f.SSIN}|{niss}") == 0
    assert world.gp.total("/fhir/Task", patient=pid) == 0
    with world.app.state.runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT wrapped FROM patient_keys WHERE patient_id = :p"),
                            {"p": pid}).scalar_one() is None
    world.app.state.runtime.integrate_audit()
    verify = _cli(settings, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _assert_absent(_dump(world, settings, backend), (*SECRETS, niss))
