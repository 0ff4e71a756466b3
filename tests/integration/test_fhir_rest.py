"""The FHIR REST surface over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.integration.conftest import Api


def _seed(api: Api) -> dict[str, Any]:
    org = api.create(f.organization())
    pract = api.create(f.practitioner())
    role = api.create(f.practitioner_role(f"Practitioner/{pract['id']}",
                                          f"Organization/{org['id']}"))
    pat = api.create(f.patient())
    return {"org": org, "pract": pract, "role": role, "patient": pat}


def test_metadata_tells_the_truth(api: Api) -> None:
    r = api.get("/fhir/metadata")
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
    assert {"read", "vread", "update", "delete", "create", "search-type",
            "history-instance", "history-type"} <= {i["code"] for i in task["interaction"]}
    assert "Task:patient" in task["searchInclude"] or "Task:for" in task["searchInclude"]


def test_create_read_update_history_delete(api: Api) -> None:
    seeded = _seed(api)
    pid = seeded["patient"]["id"]
    r = api.post("/fhir/Task", f.task(f"Patient/{pid}"))
    assert r.status_code == 201
    task = r.json()
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Task/{task['id']}/_history/1")
    assert "last-modified" in r.headers
    assert task["meta"]["versionId"] == "1"
    codes = {c["code"] for c in task["meta"]["security"]}
    assert "demarches" in codes

    read = api.get(f"/fhir/Task/{task['id']}")
    assert read.status_code == 200 and read.json() == task

    changed = dict(task, status="completed")
    upd = api.put(f"/fhir/Task/{task['id']}", changed)
    assert upd.status_code == 200, upd.text
    assert upd.json()["meta"]["versionId"] == "2"
    assert upd.headers["etag"] == 'W/"2"'

    v1 = api.get(f"/fhir/Task/{task['id']}/_history/1")
    assert v1.status_code == 200 and v1.json()["status"] == "in-progress"
    hist = api.get(f"/fhir/Task/{task['id']}/_history").json()
    assert hist["type"] == "history" and hist["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    type_hist = api.get("/fhir/Task/_history").json()
    assert type_hist["total"] == 2

    assert api.delete(f"/fhir/Task/{task['id']}").status_code == 204
    gone = api.get(f"/fhir/Task/{task['id']}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert api.get(f"/fhir/Task/{task['id']}/_history").json()["total"] == 3
    assert api.get(f"/fhir/Task/{task['id']}/_history/2").json()["status"] == "completed"


def test_if_match_conflict_is_412_and_changes_nothing(api: Api) -> None:
    pat = api.create(f.patient())
    body = dict(pat, birthDate="1966-05-05")
    ok = api.put(f"/fhir/Patient/{pat['id']}", body, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = api.put(f"/fhir/Patient/{pat['id']}", dict(pat, birthDate="1960-01-01"),
                    headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert api.get(f"/fhir/Patient/{pat['id']}").json()["birthDate"] == "1966-05-05"


def test_if_none_exist(api: Api) -> None:
    niss = f.niss("850731", 1)
    first = api.post("/fhir/Patient", f.patient(ssin=niss),
                     headers={"If-None-Exist": f"identifier={f.SSIN}|{niss}"})
    assert first.status_code == 201
    again = api.post("/fhir/Patient", f.patient(ssin=niss),
                     headers={"If-None-Exist": f"identifier={f.SSIN}|{niss}"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    total = api.get("/fhir/Patient", params={"identifier": f"{f.SSIN}|{niss}"}).json()
    assert total["total"] == 1


def test_update_as_create_and_id_mismatch(api: Api) -> None:
    org = dict(f.organization(), id="cpas-1060")
    r = api.put("/fhir/Organization/cpas-1060", org)
    assert r.status_code == 201
    bad = api.put("/fhir/Organization/other", org)
    assert bad.status_code == 400
    assert api.get("/fhir/Organization/other").status_code == 404


def test_search_tokens_references_dates_paging(api: Api) -> None:
    seeded = _seed(api)
    pid = seeded["patient"]["id"]
    other = api.create(f.patient(ssin=None, family="Anon"))
    owner = f"Organization/{seeded['org']['id']}"
    for i in range(5):
        api.create(f.task(f"Patient/{pid}", status="in-progress" if i % 2 else "completed",
                          owner=owner, authored=f"2026-11-0{i + 1}T10:00:00Z"))
    api.create(f.task(f"Patient/{other['id']}", code="debt-mediation"))

    bundle = api.get("/fhir/Task", params={"patient": f"Patient/{pid}"}).json()
    assert bundle["type"] == "searchset" and bundle["total"] == 5
    by_status = api.get("/fhir/Task", params={"for": pid, "status": "completed"}).json()
    assert by_status["total"] == 3
    code = api.get("/fhir/Task", params={
        "code": f"{f.DB}/CodeSystem/demarche-type|debt-mediation"}).json()
    assert code["total"] == 1
    either = api.get("/fhir/Task", params={"status": "completed,in-progress"}).json()
    assert either["total"] == 6

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

    since = api.get("/fhir/Task", params={"_lastUpdated": "ge2020-01-01"}).json()
    assert since["total"] == 6
    future = api.get("/fhir/Task", params={"_lastUpdated": "gt2999-01-01"}).json()
    assert future["total"] == 0 and "entry" not in future
    by_id = api.get("/fhir/Patient", params={"_id": pid}).json()
    assert by_id["total"] == 1


def test_include_and_revinclude(api: Api) -> None:
    seeded = _seed(api)
    pid = seeded["patient"]["id"]
    api.create(f.task(f"Patient/{pid}"))
    inc = api.get("/fhir/Task", params={"patient": pid, "_include": "Task:patient"}).json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in inc["entry"]}
    assert modes == {("Task", "match"), ("Patient", "include")}
    assert inc["total"] == 1
    rev = api.get("/fhir/Patient", params={"_id": pid, "_revinclude": "Task:patient"}).json()
    assert {e["resource"]["resourceType"] for e in rev["entry"]} == {"Patient", "Task"}


def test_unknown_search_parameter(api: Api) -> None:
    r = api.get("/fhir/Task", params={"colour": "blue"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "invalid"
    lenient = api.get("/fhir/Task", params={"colour": "blue"},
                      headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    for bad in ({"_lastUpdated": "yesterday"}, {"_count": "-1"}, {"patient": "Patient/%%"},
                {"_sort": "status"}, {"_include": "*"}):
        assert api.get("/fhir/Task", params=bad).status_code == 400, bad


def test_transaction_resolves_references_and_is_all_or_nothing(api: Api) -> None:
    pat_urn = "urn:uuid:0f4ab8a4-1b9c-4c7f-8d1f-8b1f1d2b6a01"
    org_urn = "urn:uuid:0f4ab8a4-1b9c-4c7f-8d1f-8b1f1d2b6a02"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": pat_urn, "resource": f.task(pat_urn, owner=org_urn),
         "request": {"method": "POST", "url": "Task"}},
        {"fullUrl": pat_urn, "resource": f.patient(ssin=None),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": org_urn, "resource": f.organization(),
         "request": {"method": "POST", "url": "Organization"}},
    ]}
    dup = api.post("/fhir", bundle)
    assert dup.status_code == 400  # the same fullUrl twice
    bundle["entry"][0]["fullUrl"] = "urn:uuid:0f4ab8a4-1b9c-4c7f-8d1f-8b1f1d2b6a03"
    r = api.post("/fhir", bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created"] * 3
    task = out["entry"][0]["resource"]
    assert task["for"]["reference"] == f"Patient/{out['entry'][1]['resource']['id']}"
    assert api.get(f"/fhir/Task/{task['id']}").status_code == 200

    before = api.get("/fhir/Patient").json()["total"]
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": f.patient(ssin=None), "request": {"method": "POST", "url": "Patient"}},
        {"resource": dict(f.task("Patient/does-not-exist"), note=[{"text": "x"}]),
         "request": {"method": "POST", "url": "Task"}},
    ]}
    fail = api.post("/fhir", bad)
    assert fail.status_code == 422
    assert "entry 1" in fail.json()["issue"][0]["diagnostics"]
    assert api.get("/fhir/Patient").json()["total"] == before


def test_batch_entries_stand_alone(api: Api) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": f.organization(), "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Organization", "colour": "red"},
         "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "GET", "url": "Organization/missing"}},
    ]}
    r = api.post("/fhir", bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("4") and statuses[2].startswith("404")
    assert api.get("/fhir/Organization").json()["total"] == 1
