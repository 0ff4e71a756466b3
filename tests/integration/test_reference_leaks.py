"""Issue 16, defect 9: the id of a resource the reader may not see never travels in a
reference (SPEC §5: "never leaked through references"): Task.partOf → a psy Task, in a
read, search, `$everything`, `$demarches`, history, `_revinclude` and a batch."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.integration.conftest import World


def setup(world: World) -> tuple[str, str, str]:
    pid = world.consented()  # the GP: every category
    psy = world.gp.create(f.task(f"Patient/{pid}", code="mental-health-follow-up"))["id"]
    plain = f.task(f"Patient/{pid}")
    plain["partOf"] = [{"reference": f"Task/{psy}"}]
    task = world.gp.create(plain)
    assert task["partOf"] == [{"reference": f"Task/{psy}"}]  # the GP sees it
    world.grant(pid, world.sw_ref, categories=("identity", "demarches", "network"),
                actions=("access",))
    return pid, psy, task["id"]


def test_no_psy_id_through_a_reference(world: World) -> None:
    pid, psy, task = setup(world)
    sw = world.sw
    assert sw.get(f"/fhir/Task/{psy}").status_code == 404
    responses: dict[str, Any] = {
        "read": sw.get(f"/fhir/Task/{task}"),
        "vread": sw.get(f"/fhir/Task/{task}/_history/1"),
        "search": sw.get("/fhir/Task", params={"patient": pid}),
        "everything": sw.get(f"/fhir/Patient/{pid}/$everything"),
        "demarches": sw.get(f"/fhir/Patient/{pid}/$demarches"),
        "history": sw.get(f"/fhir/Task/{task}/_history"),
        "type-history": sw.get("/fhir/Task/_history"),
        "revinclude": sw.get("/fhir/Patient", params={"_id": pid,
                                                      "_revinclude": "Task:patient"}),
        "batch": sw.post("/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Task/{task}"}},
            {"request": {"method": "GET", "url": f"Task?patient={pid}"}}]}),
    }
    for name, r in responses.items():
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        assert psy not in r.text, name
    assert task in responses["read"].text
    masked = responses["read"].json()["partOf"][0]
    assert "reference" not in masked
    # the GP, who may see the psy démarche, still gets the reference
    assert psy in world.gp.get(f"/fhir/Task/{task}").text
