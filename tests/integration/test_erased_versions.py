"""Issue 16, defect 8: after `$erase`, old versions answer like the current one: 410 for
former readers, 404 for anybody else — never `200 {}`."""

from __future__ import annotations

from tests import factories as f
from tests.integration.conftest import World


def test_old_versions_of_an_erased_dossier(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    team = world.gp.create(f.care_team(f"Patient/{pid}", [(world.gp_ref,
                                                            "general-practitioner", True)]))
    stranger = world.sw  # never granted
    asked = world.citizen(pid).post(f"/fhir/Patient/{pid}/$erase",
                                    {"resourceType": "Parameters"})
    assert asked.status_code == 200, asked.text
    done = world.admin.post(f"/fhir/Patient/{pid}/$erase", {"resourceType": "Parameters"})
    assert done.status_code == 200, done.text
    paths = [f"Patient/{pid}", f"Task/{task['id']}", f"CareTeam/{team['id']}"]
    for path in paths:
        for reader in (world.gp, world.citizen(pid)):
            assert reader.get(f"/fhir/{path}").status_code == 410, path
            r = reader.get(f"/fhir/{path}/_history/1")
            assert r.status_code == 410, (path, r.status_code, r.text[:200])
            assert r.json()["resourceType"] == "OperationOutcome"
            history = reader.get(f"/fhir/{path}/_history")
            assert all(e.get("resource") != {} for e in history.json().get("entry", []))
        assert stranger.get(f"/fhir/{path}/_history/1").status_code == 404, path
        assert stranger.get(f"/fhir/{path}").status_code == 404, path
