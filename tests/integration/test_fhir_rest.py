"""The FHIR REST surface over HTTP, on SQLite and PostgreSQL, as real actors with tokens."""

from __future__ import annotations

from tests import factories as f
from tests.integration.conftest import World


def test_metadata_tells_the_truth(world: World) -> None:
    r = world.anonymous.get("/fhir/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    types = {t["type"]: t for t in cs["rest"][0]["resource"]}
    for rtype in ("Patient", "Practitioner", "PractitionerRole", "Organization", "Group",
                  "RelatedPerson", "CareTeam", "Task", "Observation", "Flag", "Consent"):
        assert rtype in types
    task = types["Task"]
    codes = {i["code"] for i in task["interaction"]}
    assert {"read", "vread", "update", "patch", "create", "search-type",
            "history-instance", "history-type"} <= codes
    assert "delete" not in codes  # nobody deletes a démarche (auth/rules.py)
    assert "Task:patient" in task["searchInclude"]
    assert {p["name"] for p in task["searchParam"]} >= {"_id", "_lastUpdated", "patient",
                                                         "status", "code"}


def test_create_read_update_history(world: World) -> None:
    pid = world.consented()
    api = world.gp
    r = api.post("/fhir/Task", f.task(f"Patient/{pid}"))
    assert r.status_code == 201, r.text
    task = r.json()
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Task/{task['id']}/_history/1")
    assert "last-modified" in r.headers
    assert task["meta"]["versionId"] == "1"
    assert "demarches" in {c["code"] for c in task["meta"]["security"]}

    read = api.get(f"/fhir/Task/{task['id']}")
    assert read.status_code == 200 and read.json() == task

    upd = api.put(f"/fhir/Task/{task['id']}", dict(task, status="completed"))
    assert upd.status_code == 200, upd.text
    assert upd.json()["meta"]["versionId"] == "2"
    assert upd.headers["etag"] == 'W/"2"'

    v1 = api.get(f"/fhir/Task/{task['id']}/_history/1")
    assert v1.status_code == 200 and v1.json()["status"] == "in-progress"
    hist = api.get(f"/fhir/Task/{task['id']}/_history").json()
    assert hist["type"] == "history" and hist["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    assert api.get("/fhir/Task/_history").json()["total"] == 2


def test_delete_keeps_history(world: World) -> None:
    admin = world.admin
    org = admin.create(f.organization("Service de médiation de dettes", "income"))
    path = f"/fhir/Organization/{org['id']}"
    assert admin.put(path, dict(org, active=False)).status_code == 200
    assert admin.delete(path).status_code == 204
    gone = admin.get(path)
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert admin.delete(path).status_code == 204  # idempotent
    hist = admin.get(f"{path}/_history").json()
    assert hist["total"] == 3
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert admin.get(f"{path}/_history/2").json()["active"] is False
    assert admin.total("/fhir/Organization", _id=org["id"]) == 0


def test_if_match_conflict_is_412_and_changes_nothing(world: World) -> None:
    pid = world.consented()
    api = world.gp
    pat = api.get(f"/fhir/Patient/{pid}").json()
    ok = api.put(f"/fhir/Patient/{pid}", dict(pat, birthDate="1966-05-05"),
                 headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    stale = api.put(f"/fhir/Patient/{pid}", dict(pat, birthDate="1960-01-01"),
                    headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert api.get(f"/fhir/Patient/{pid}").json()["birthDate"] == "1966-05-05"


def test_if_none_exist(world: World) -> None:
    niss = f.niss("850731", 1)
    pid = world.consented(f.patient(ssin=niss))
    query = {"If-None-Exist": f"identifier={f.SSIN}|{niss}"}
    again = world.gp.post("/fhir/Patient", f.patient(ssin=niss), headers=query)
    # one dossier per person (SPEC §13): the same answer as for a new dossier, its id
    assert again.status_code == 201
    assert again.json()["id"] == pid and f"/Patient/{pid}/" in again.headers["location"]
    assert world.gp.total("/fhir/Patient", identifier=f"{f.SSIN}|{niss}") == 1
    other = f.niss("850731", 2)
    new = world.gp.post("/fhir/Patient", f.patient(ssin=other),
                        headers={"If-None-Exist": f"identifier={f.SSIN}|{other}"})
    assert new.status_code == 201


def test_update_as_create_and_id_mismatch(world: World) -> None:
    org = dict(f.organization(), id="cpas-1060")
    r = world.admin.put("/fhir/Organization/cpas-1060", org)
    assert r.status_code == 201
    assert world.admin.put("/fhir/Organization/other", org).status_code == 400
    assert world.admin.get("/fhir/Organization/other").status_code == 404


def test_search_tokens_references_dates_paging(world: World) -> None:
    pid = world.consented()
    other = world.consented(f.patient(ssin=None, family="Anon"))
    api = world.gp
    for i in range(5):
        api.create(f.task(f"Patient/{pid}", status="in-progress" if i % 2 else "completed",
                          owner=world.org_ref, authored=f"2026-11-0{i + 1}T10:00:00Z"))
    api.create(f.task(f"Patient/{other}", code="debt-mediation"))

    bundle = api.get("/fhir/Task", params={"patient": f"Patient/{pid}"}).json()
    assert bundle["type"] == "searchset" and bundle["total"] == 5
    assert api.total("/fhir/Task", subject=pid, status="completed") == 3
    assert api.total("/fhir/Task", **{"for": pid}) == 5
    assert api.total("/fhir/Task", owner=world.org_ref) == 5
    assert api.total("/fhir/Task",
                     code=f"{f.DB}/CodeSystem/demarche-type|debt-mediation") == 1
    assert api.total("/fhir/Task", status="completed,in-progress") == 6

    page = api.get("/fhir/Task", params={"patient": f"Patient/{pid}", "_count": "2",
                                         "_sort": "-authored-on"}).json()
    assert page["total"] == 5 and len(page["entry"]) == 2
    dates = [e["resource"]["authoredOn"] for e in page["entry"]]
    assert dates == sorted(dates, reverse=True)
    links = {link["relation"]: link["url"] for link in page["link"]}
    assert "next" in links and "previous" not in links
    seen = [e["resource"]["id"] for e in page["entry"]]
    url = links["next"]
    while url:
        nxt = api.get(url[url.index("/fhir"):]).json()
        seen += [e["resource"]["id"] for e in nxt.get("entry", [])]
        url = {lk["relation"]: lk["url"] for lk in nxt["link"]}.get("next")
    assert len(seen) == 5 and len(set(seen)) == 5

    assert api.total("/fhir/Task", _lastUpdated="ge2020-01-01") == 6
    future = api.get("/fhir/Task", params={"_lastUpdated": "gt2999-01-01"}).json()
    assert future["total"] == 0 and "entry" not in future
    assert api.total("/fhir/Task", **{"authored-on": "ge2026-11-04"}) == 2
    assert api.total("/fhir/Patient", _id=pid) == 1


def test_include_and_revinclude(world: World) -> None:
    pid = world.consented()
    api = world.gp
    api.create(f.task(f"Patient/{pid}", owner=world.org_ref))
    inc = api.get("/fhir/Task", params={"patient": pid, "_include": "Task:patient"}).json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in inc["entry"]}
    assert modes == {("Task", "match"), ("Patient", "include")}
    assert inc["total"] == 1
    owner = api.get("/fhir/Task", params={"patient": pid, "_include": "Task:owner"}).json()
    assert {e["resource"]["resourceType"] for e in owner["entry"]} == {"Task", "Organization"}
    rev = api.get("/fhir/Patient", params={"_id": pid, "_revinclude": "Task:patient"}).json()
    assert {e["resource"]["resourceType"] for e in rev["entry"]} == {"Patient", "Task"}


def test_directory_search_by_name_and_role(world: World) -> None:
    api = world.gp
    assert api.total("/fhir/Practitioner", name="dupo") == 1
    assert api.total("/fhir/PractitionerRole", practitioner=world.sw_ref) == 1
    assert api.total("/fhir/PractitionerRole", organization=world.org_ref) == 2


def test_unknown_search_parameter(world: World) -> None:
    api = world.gp
    r = api.get("/fhir/Task", params={"colour": "blue"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "invalid"
    lenient = api.get("/fhir/Task", params={"colour": "blue"},
                      headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    for bad in ({"_lastUpdated": "yesterday"}, {"_count": "-1"}, {"patient": "Patient/%%"},
                {"_sort": "status"}, {"_include": "*"}, {"status:exact": "x"}):
        assert api.get("/fhir/Task", params=bad).status_code == 400, bad


def test_transaction_resolves_references_and_is_all_or_nothing(world: World) -> None:
    pid = world.consented()
    api = world.gp
    rp_urn = "urn:uuid:0f4ab8a4-1b9c-4c7f-8d1f-8b1f1d2b6a01"
    ct_urn = "urn:uuid:0f4ab8a4-1b9c-4c7f-8d1f-8b1f1d2b6a02"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": ct_urn, "resource": f.care_team(f"Patient/{pid}", [
            (rp_urn, "neighbour", True), (world.gp_ref, "general-practitioner", False)]),
         "request": {"method": "POST", "url": "CareTeam"}},
        {"fullUrl": rp_urn, "resource": f.related_person(pid),
         "request": {"method": "POST", "url": "RelatedPerson"}},
        {"fullUrl": ct_urn, "resource": f.task(f"Patient/{pid}"),
         "request": {"method": "POST", "url": "Task"}},
    ]}
    dup = api.post("/fhir", bundle)
    assert dup.status_code == 400  # the same fullUrl twice
    bundle["entry"][2]["fullUrl"] = "urn:uuid:0f4ab8a4-1b9c-4c7f-8d1f-8b1f1d2b6a03"
    r = api.post("/fhir", bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created"] * 3
    team = out["entry"][0]["resource"]
    rp_id = out["entry"][1]["resource"]["id"]
    assert team["participant"][0]["member"]["reference"] == f"RelatedPerson/{rp_id}"
    assert api.get(f"/fhir/CareTeam/{team['id']}").status_code == 200

    before = api.total("/fhir/Task")
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": f.task(f"Patient/{pid}"), "request": {"method": "POST", "url": "Task"}},
        {"resource": dict(f.task(f"Patient/{pid}"), note=[{"text": "x"}]),
         "request": {"method": "POST", "url": "Task"}},
    ]}
    fail = api.post("/fhir", bad)
    assert fail.status_code == 422
    assert "entry 1" in fail.json()["issue"][0]["diagnostics"]
    assert api.total("/fhir/Task") == before


def test_batch_entries_stand_alone(world: World) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": f.organization("Foyer", "housing"),
         "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Organization", "colour": "red"},
         "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "GET", "url": "Organization/missing"}},
    ]}
    r = world.admin.post("/fhir", bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("422") and statuses[2].startswith("404")
    assert world.admin.total("/fhir/Organization", name="Foyer") == 1


def test_provenance_is_written_by_the_server(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    world.gp.put(f"/fhir/Task/{task['id']}", dict(task, status="on-hold"))
    found = world.gp.get("/fhir/Provenance", params={"target": f"Task/{task['id']}"}).json()
    activities = sorted(e["resource"]["activity"]["coding"][0]["code"]
                        for e in found["entry"])
    assert activities == ["CREATE", "UPDATE"]
    from fhir.resources.R4B.provenance import Provenance

    for entry in found["entry"]:  # built by the server, not re-validated at write: check here
        Provenance.model_validate(entry["resource"])
    assert {e["resource"]["agent"][0]["who"]["reference"] for e in found["entry"]} == {
        world.gp_ref}
    assert world.gp.post("/fhir/Provenance", found["entry"][0]["resource"]).status_code == 405
    assert world.sw.get("/fhir/Provenance", params={
        "target": f"Task/{task['id']}"}).json()["total"] == 0
