"""Two real FHIR clients, fhirpy and fhirclient, against a running server."""

from __future__ import annotations

from tests import factories as f
from tests.integration.conftest import World
from tests.livesrv import serve


def test_fhirpy_create_read_search(world: World) -> None:
    from fhirpy import SyncFHIRClient

    pid = world.consented()
    with serve(world.app) as base:
        client = SyncFHIRClient(f"{base}/fhir",
                                authorization=world.gp.headers["Authorization"],
                                extra_headers={"Accept": "application/fhir+json"})
        pat = client.reference("Patient", pid).to_resource()
        assert pat.id == pid
        task = client.resource("Task", **{k: v for k, v in f.task(f"Patient/{pat.id}").items()
                                          if k != "resourceType"})
        task.save()
        got = client.reference("Task", task.id).to_resource()
        assert got["status"] == "in-progress"
        found = client.resources("Task").search(patient=f"Patient/{pat.id}").fetch_all()
        assert [t.id for t in found] == [task.id]


def test_fhirclient_create_read_search(world: World) -> None:
    from fhirclient import client as fc
    from fhirclient.models.organization import Organization

    with serve(world.app) as base:
        smart = fc.FHIRClient(settings={"app_id": "dossier-test", "api_base": f"{base}/fhir"})
        smart.server.session.headers["Authorization"] = world.admin.headers["Authorization"]
        org = Organization(f.organization("Maison médicale du Midi", "health"))
        created = org.create(smart.server)
        assert created["id"]
        read = Organization.read(created["id"], smart.server)
        assert read.name == "Maison médicale du Midi"
        from fhirclient.models.organization import Organization as O2

        found = list(O2.where(struct={"_id": created["id"]}).perform_resources_iter(
            smart.server))
        assert [o.id for o in found] == [created["id"]]
