"""Real, independent FHIR clients against a running server (uvicorn on a loopback port),
on SQLite and PostgreSQL (issue 17):

- Python `fhirclient`, configured with the base URL only, authenticates as a hub by
  discovery (SMART Backend Services, the token endpoint from the CapabilityStatement),
  then reads, searches and pages;
- `fhirpy`, sync and async: CRUD, `.count()`, `fetch_all`, `get_or_create`, `patch()`,
  conditional update and delete;
- `fhir-kit-client` (npm) run by Node: CRUD, paging to the end, compartment search,
  batch, transaction;
- a scripted Bulk Data client flow, as `bulk-data-client` performs it: kick-off with one
  `_type` per type, polling with Retry-After, manifest, downloads, DELETE.

The server's public base is the live URL, so every link it returns is followable."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from dossier.app import create_app
from tests import factories as f
from tests.integration.conftest import World, make_settings
from tests.integration.test_hubs import Hub
from tests.livesrv import free_port, serve

JS_DIR = Path(__file__).parent / "js_client"


class Live:
    def __init__(self, world: World, base: str) -> None:
        self.world = world
        self.base = base
        self.fhir = f"{base}/fhir"


@pytest.fixture
def live(data_dir: Path, database_url: str | None) -> Iterator[Live]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_settings(data_dir, database_url, base_url=base))
    try:
        with TestClient(app, base_url=base) as client, serve(app, port):
            yield Live(World(app, client), base)
    finally:
        app.state.runtime.engine.dispose()


def hub_for(world: World) -> Hub:
    org = world.admin.create(f.organization("Abrumet", "health"))
    hub = Hub(world, "hub-abrumet", f"Organization/{org['id']}")
    assert hub.register().status_code == 200
    return hub


# ---------------------------------------------------------------- fhirclient (Python)

def test_fhirclient_backend_services_by_discovery(live: Live) -> None:
    from fhirclient import client as fc
    from fhirclient.models.patient import Patient
    from fhirclient.models.task import Task

    world = live.world
    hub = hub_for(world)
    pid = world.consented()
    for _ in range(7):
        world.gp.create(f.task(f"Patient/{pid}"))
    world.grant(pid, hub.org_ref, ("identity", "demarches"), ("access",))

    # only the base URL, the client id and its signed assertion: the token endpoint is
    # found in the CapabilityStatement (rest.security oauth-uris)
    smart = fc.FHIRClient(settings={"app_id": hub.client_id, "api_base": live.fhir,
                                    "jwt_token": hub.signed(), "scope": "system/*.rs"})
    assert smart.prepare() is False  # discovered, not yet authorized
    smart.authorize()
    assert smart.ready
    patient = Patient.read(pid, smart.server)
    assert patient.id == pid and patient.name[0].family == "Martin"
    search = Task.where(struct={"patient": f"Patient/{pid}", "_count": "3"})
    found = list(search.perform_resources_iter(smart.server))  # follows `next` links
    assert len(found) == 7 and len({t.id for t in found}) == 7


# ---------------------------------------------------------------- fhirpy (Python)

def test_fhirpy_sync(live: Live) -> None:
    from fhirpy import SyncFHIRClient
    from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

    world = live.world
    pid = world.consented()
    headers = {"Accept": "application/fhir+json"}
    gp = SyncFHIRClient(live.fhir, authorization=world.gp.headers["Authorization"],
                        extra_headers=headers)
    admin = SyncFHIRClient(live.fhir, authorization=world.admin.headers["Authorization"],
                           extra_headers=headers)
    # CRUD (the GP writes démarches; the admin keeps — and deletes in — the directory)
    task = gp.resource("Task", **{k: v for k, v in f.task(f"Patient/{pid}").items()
                                  if k != "resourceType"})
    task.save()
    task["status"] = "on-hold"
    task.save()
    assert gp.reference("Task", task.id).to_resource()["meta"]["versionId"] == "2"
    org = admin.resource("Organization", name="Resto du coeur Anderlecht", active=True)
    org.save()
    org.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone
        admin.reference("Organization", org.id).to_resource()
    # patch(): fhirpy sends a merge patch as application/json
    patched = gp.resources("Task").search(_id=task.id).patch(status="in-progress")
    assert patched["status"] == "in-progress"
    direct = gp.reference("Task", task.id).patch(status="completed")
    assert direct["status"] == "completed" and direct["meta"]["versionId"] == "4"
    # count() (_count=0 & _totalMethod=count) and fetch_all() over several pages
    for _ in range(4):
        gp.resource("Task", **{k: v for k, v in f.task(f"Patient/{pid}").items()
                               if k != "resourceType"}).save()
    tasks = gp.resources("Task").search(patient=f"Patient/{pid}")
    assert tasks.count() == 5
    assert len({t.id for t in tasks.limit(2).fetch_all()}) == 5
    # get_or_create sends POST /Organization?identifier=…: refused, never a duplicate
    cbe = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe"
    body = {"name": "CPAS de Forest", "active": True,
            "identifier": [{"system": cbe, "value": "0207123456"}]}
    admin.resource("Organization", **body).save()
    with pytest.raises(OperationOutcome) as refused:
        admin.resources("Organization").search(identifier=f"{cbe}|0207123456").get_or_create(
            admin.resource("Organization", **body))
    assert "If-None-Exist" in str(refused.value)
    assert admin.resources("Organization").search(identifier=f"{cbe}|0207123456").count() == 1
    # conditional update and delete (searchset.update / .delete)
    same = admin.resources("Organization").search(identifier=f"{cbe}|0207123456")
    updated, created = same.update(admin.resource("Organization", **{**body, "active": False}))
    assert not created and updated["active"] is False
    same.delete()
    assert same.count() == 0


def test_fhirpy_async(live: Live) -> None:
    from fhirpy import AsyncFHIRClient

    world = live.world
    pid = world.consented()

    async def run() -> tuple[int, int, str]:
        gp = AsyncFHIRClient(live.fhir, authorization=world.gp.headers["Authorization"],
                             extra_headers={"Accept": "application/fhir+json"})
        for _ in range(3):
            await gp.resource("Task", **{k: v for k, v in f.task(f"Patient/{pid}").items()
                                         if k != "resourceType"}).save()
        tasks = gp.resources("Task").search(patient=f"Patient/{pid}")
        fetched = await tasks.limit(2).fetch_all()
        first = await tasks.first()
        patched = await gp.reference("Task", first.id).patch(status="on-hold")
        return await tasks.count(), len({t.id for t in fetched}), patched["status"]

    assert asyncio.run(run()) == (3, 3, "on-hold")


# ---------------------------------------------------------------- fhir-kit-client (Node)

def _node_ready() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are required for the JavaScript client test in CI")
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "fhir-kit-client").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=300)
    return node


def test_fhir_kit_client_on_node(live: Live) -> None:
    node = _node_ready()
    world = live.world
    pid = world.consented()
    for status in ("in-progress", "in-progress", "completed", "on-hold", "in-progress"):
        world.gp.create(f.task(f"Patient/{pid}", status=status))
    payload = {"base": live.fhir, "patient": pid,
               "admin": world.admin.headers["Authorization"].split(" ", 1)[1],
               "gp": world.gp.headers["Authorization"].split(" ", 1)[1]}
    done = subprocess.run([node, str(JS_DIR / "client.mjs")], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(done.stdout)
    crud = report["crud"]
    assert crud["readName"] == "Service social de Molenbeek", report
    assert (crud["updatedVersion"], crud["patchedVersion"], crud["patchedActive"]) == \
        ("2", "3", True)
    assert crud["gone"] == 410
    paging = report["paging"]
    assert paging["total"] == paging["distinct"] == 5 and paging["pages"] == 3, paging
    assert paging["countOnlyTotal"] == 5 and paging["countOnlyNext"] is None
    assert report["compartment"] == {"total": 3, "types": ["Task"]}
    assert report["batch"] == {"type": "batch-response",
                               "statuses": ["200 OK", "404 Not Found", "200 OK"]}
    assert report["transaction"] == {"type": "transaction-response",
                                     "statuses": ["201 Created", "201 Created"]}


# ---------------------------------------------------------------- Bulk Data client flow

def test_bulk_data_client_flow(live: Live) -> None:
    """What bulk-data-client does: kick-off (POST, one `_type` parameter per type), poll
    with Retry-After until the manifest, download every file, then DELETE the job."""
    world = live.world
    hub = hub_for(world)
    pids = [world.consented(f.patient(f.niss(serial=300 + i))) for i in range(3)]
    for pid in pids:
        world.gp.create(f.task(f"Patient/{pid}"))
        world.gp.create(f.fragility(f"Patient/{pid}"))
        world.grant(pid, hub.org_ref, ("demarches", "fragility"), ("access",))
    with httpx.Client(base_url=live.base, timeout=30) as http:
        token = http.post("/auth/token", data={
            "grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": hub.signed(aud=f"{live.base}/auth/token")}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        kick = http.post("/fhir/Patient/$export", headers={
            **auth, "Accept": "application/fhir+json", "Content-Type": "application/fhir+json",
            "Prefer": "respond-async"}, json={"resourceType": "Parameters", "parameter": [
                {"name": "_type", "valueString": "Task"},
                {"name": "_type", "valueString": "Observation"},
                {"name": "patient", "valueReference": {"reference": f"Patient/{pids[0]}"}},
                {"name": "patient", "valueReference": {"reference": f"Patient/{pids[1]}"}}]})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["content-location"]
        assert status_url.startswith(live.base)
        deadline = time.monotonic() + 120
        while True:
            poll = http.get(status_url, headers=auth)
            if poll.status_code == 200:
                break
            assert poll.status_code == 202 and poll.headers["x-progress"], poll.text
            assert time.monotonic() < deadline
            time.sleep(min(float(poll.headers.get("retry-after", "1")), 0.2))
        manifest = poll.json()
        assert manifest["requiresAccessToken"] is True
        assert {o["type"] for o in manifest["output"]} == {"Task", "Observation"}
        seen: dict[str, set[str]] = {}
        for item in manifest["output"]:
            got = http.get(item["url"], headers={**auth, "Accept": "application/fhir+ndjson"})
            assert got.status_code == 200
            rows = [json.loads(line) for line in got.text.splitlines() if line]
            assert len(rows) == item["count"]
            seen[item["type"]] = {r["for" if r["resourceType"] == "Task" else "subject"][
                "reference"] for r in rows}
        assert seen["Task"] == seen["Observation"] == {f"Patient/{p}" for p in pids[:2]}
        assert http.delete(status_url, headers=auth).status_code == 202
        assert http.get(status_url, headers=auth).status_code == 404
        # GET kick-off with repeated parameters, and handling=lenient
        again = http.get("/fhir/Patient/$export", params=[
            ("_type", "Task"), ("_type", "Observation"), ("_typeFilter", "Task?status=x")],
            headers={**auth, "Prefer": "respond-async, handling=lenient"})
        assert again.status_code == 202, again.text
        warned = [i for i in again.json()["issue"] if i["severity"] == "warning"]
        assert [i["expression"] for i in warned] == [["_typeFilter"]]
        strict = http.get("/fhir/Patient/$export", params=[("_typeFilter", "Task?status=x")],
                          headers={**auth, "Prefer": "respond-async"})
        assert strict.status_code == 400
