"""Issue 17: what real FHIR clients expect of a server — each fault of the interoperability
run, as the request that showed it (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from dossier.app import create_app
from dossier.settings import SettingsError, load_settings
from tests import factories as f
from tests.integration.conftest import FHIR, Api, World, make_settings

SMART_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
DB = "https://dossier.brussels/fhir"


def outcome(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def metadata(world: World) -> dict[str, Any]:
    r = world.anonymous.get("/fhir/metadata")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def types_of(cs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["type"]: t for t in cs["rest"][0]["resource"]}


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def relative(url: str) -> str:
    return url.removeprefix("http://testserver")


# ---------------------------------------------------------------- discovery

def test_capability_statement_has_smart_security_and_instantiates(world: World) -> None:
    cs = metadata(world)
    get_fhir_model_class("CapabilityStatement").model_validate(cs)  # R4(B) valid
    security = cs["rest"][0]["security"]
    assert any(c["system"] == SMART_SERVICE and c["code"] == "SMART-on-FHIR"
               for s in security["service"] for c in s["coding"])
    uris = {e["url"]: e["valueUri"] for ext in security["extension"]
            if ext["url"] == OAUTH_URIS for e in ext["extension"]}
    assert uris["token"] == "http://testserver/auth/token"
    assert uris["authorize"] == "http://testserver/auth/authorize"
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cs["instantiates"]
    assert any("subscriptions-backport" in u for u in cs["instantiates"])
    assert any("smart-app-launch" in u for u in cs["implementationGuide"])


def test_capability_statement_advertises_only_what_a_role_can_do(world: World) -> None:
    types = types_of(metadata(world))

    def codes(rtype: str) -> set[str]:
        return {i["code"] for i in types[rtype]["interaction"]}

    assert "delete" not in codes("Task") and "delete" not in codes("Patient")
    assert not {"create", "update", "patch", "delete"} & codes("Flag")
    assert {"create", "update", "delete"} <= codes("Consent")  # the citizen's
    assert "delete" in codes("Organization")  # the admin keeps the directory
    for rtype, param in (("AuditEvent", "patient"), ("Communication", "recipient"),
                         ("Provenance", "target")):
        assert param in {p["name"] for p in types[rtype]["searchParam"]}
    for entry in types.values():
        for p in entry.get("searchParam", []):
            assert p["definition"].startswith(("http://hl7.org/fhir/SearchParameter/",
                                               f"{DB}/SearchParameter/"))


def test_definitions_are_readable_at_their_canonical_urls(world: World) -> None:
    cs = metadata(world)
    own = [op["definition"] for op in cs["rest"][0]["operation"]
           if op["definition"].startswith(DB)]
    assert own
    model = get_fhir_model_class("OperationDefinition")
    for url in own:
        r = world.anonymous.get("/fhir" + url.removeprefix(DB))
        assert r.status_code == 200, url
        assert r.json()["url"] == url
        model.model_validate(r.json())
    found = world.anonymous.get("/fhir/OperationDefinition", params={"url": own[0]}).json()
    assert found["total"] == 1
    topic_url = types_of(cs)["Subscription"]["extension"][0]["valueCanonical"]
    topic = world.anonymous.get("/fhir" + topic_url.removeprefix(DB))
    assert topic.status_code == 200 and topic.json()["url"] == topic_url
    get_fhir_model_class("SubscriptionTopic").model_validate(topic.json())
    definitions = {p["definition"] for t in types_of(cs).values()
                   for p in t.get("searchParam", []) if p["definition"].startswith(DB)}
    sp_model = get_fhir_model_class("SearchParameter")
    for url in sorted(definitions):
        r = world.anonymous.get("/fhir" + url.removeprefix(DB))
        assert r.status_code == 200, url
        sp_model.model_validate(r.json())
    assert world.anonymous.get("/fhir/OperationDefinition/nope").status_code == 404


@pytest.mark.parametrize("path", ["/.well-known/smart-configuration",
                                  "/fhir/.well-known/smart-configuration"])
def test_smart_configuration_is_json_at_both_paths(world: World, path: str) -> None:
    r = world.anonymous.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    config = r.json()
    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert "S256" in config["code_challenge_methods_supported"]
    assert "client_credentials" in config["grant_types_supported"]


# ---------------------------------------------------------------- paging

def follow(api: Api, first: str) -> tuple[list[dict[str, Any]], int]:
    """Every entry of every page, following `next` to the end (as a sync client does)."""
    seen: list[dict[str, Any]] = []
    url: str | None = first
    pages = 0
    while url:
        r = api.get(relative(url))
        assert r.status_code == 200, r.text
        bundle = r.json()
        seen += bundle.get("entry", [])
        url = links(bundle).get("next")
        pages += 1
        assert pages < 50
    return seen, pages


def test_history_is_paged_to_the_end(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    for status in ["on-hold", "in-progress"] * 12:
        r = world.gp.put(f"/fhir/Task/{task['id']}", {**task, "status": status})
        assert r.status_code == 200, r.text
        task = r.json()
    for path in (f"/fhir/Task/{task['id']}/_history", "/fhir/Task/_history", "/fhir/_history"):
        first = world.gp.get(path, params={"_count": "10"}).json()
        assert first["total"] >= 25
        assert "next" in links(first), path
        entries, pages = follow(world.gp, links(first)["self"])
        assert len(entries) == first["total"] and pages >= 3, path
    versions = [e["response"]["etag"] for e in follow(
        world.gp, f"/fhir/Task/{task['id']}/_history?_count=7")[0]]
    assert versions == [f'W/"{n}"' for n in range(25, 0, -1)]


def test_count_zero_gives_the_total_and_no_next_link(world: World) -> None:
    pid = world.consented()
    for _ in range(3):
        world.gp.create(f.task(f"Patient/{pid}"))
    for params in ({"_count": "0"}, {"_summary": "count"},
                   {"_count": "0", "_totalMethod": "count"}):  # what fhirpy's count() sends
        bundle = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}",
                                                    **params}).json()
        assert bundle["total"] == 3 and "entry" not in bundle
        assert set(links(bundle)) == {"self"}
    history = world.gp.get("/fhir/_history", params={"_count": "0"}).json()
    assert "entry" not in history and set(links(history)) == {"self"}


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _warnings(bundle: dict[str, Any]) -> list[str]:
    return [i["diagnostics"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"
            for i in e["resource"]["issue"]]


def test_beyond_the_cap_the_total_is_left_out_and_paging_still_reaches_the_end(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §15: a search costs the same whatever the caseload, so the default count stops
    at TOTAL_CAP (here 3); `_total=accurate` counts all, `_total=none` nothing."""
    monkeypatch.setattr("dossier.core.repository.TOTAL_CAP", 3)
    pid = world.consented()
    made = {world.gp.create(f.task(f"Patient/{pid}"))["id"] for _ in range(5)}
    query = {"patient": f"Patient/{pid}", "_count": "2"}
    first = world.gp.get("/fhir/Task", params=query).json()
    assert "total" not in first and len(_matches(first)) == 2
    assert any("More than 3 resources match" in w for w in _warnings(first))
    entries, pages = follow(world.gp, links(first)["self"])
    assert {e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"} == made
    assert pages == 3  # 2 + 2 + 1, and no next link after the last page
    accurate = world.gp.get("/fhir/Task", params={**query, "_total": "accurate"}).json()
    assert accurate["total"] == 5 and not _warnings(accurate)
    none = world.gp.get("/fhir/Task", params={**query, "_total": "none"}).json()
    assert "total" not in none and not _warnings(none) and "next" in links(none)
    counted = world.gp.get("/fhir/Task", params={**query, "_summary": "count"}).json()
    assert counted["total"] == 5  # only the number was asked for: counted exactly
    last = world.gp.get("/fhir/Task", params={**query, "_offset": "4"}).json()
    assert len(_matches(last)) == 1 and "next" not in links(last)
    # at or below the cap nothing changes: exact total
    monkeypatch.setattr("dossier.core.repository.TOTAL_CAP", 5)
    assert world.gp.get("/fhir/Task", params=query).json()["total"] == 5


def test_a_bad_total_is_refused(world: World) -> None:
    r = world.gp.get("/fhir/Task", params={"_total": "exact"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_everything_pages_with_count(world: World) -> None:
    pid = world.consented()
    for _ in range(6):
        world.gp.create(f.task(f"Patient/{pid}"))
    whole = world.gp.get(f"/fhir/Patient/{pid}/$everything").json()
    first = world.gp.get(f"/fhir/Patient/{pid}/$everything", params={"_count": "4"}).json()
    assert first["total"] == whole["total"] and len(first["entry"]) == 4
    entries, _ = follow(world.gp, links(first)["self"])
    assert sorted(e["fullUrl"] for e in entries) == sorted(e["fullUrl"] for e in whole["entry"])
    tasks = world.gp.get(f"/fhir/Patient/{pid}/$everything",
                         params={"_type": "Task", "_count": "50"}).json()
    assert tasks["total"] == 6 and {e["resource"]["resourceType"] for e in tasks["entry"]} == {
        "Task"}
    hidden = world.open_dossier(f.patient(f.niss(serial=555)))
    assert world.gp.get(f"/fhir/Patient/{hidden}/$everything",
                        params={"_count": "5"}).status_code == 404


# ---------------------------------------------------------------- parameters

def test_summary_and_elements_subset_and_say_so(world: World) -> None:
    pid = world.consented()
    world.gp.create(f.task(f"Patient/{pid}"))
    bundle = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}",
                                                "_elements": "status"}).json()
    task = bundle["entry"][0]["resource"]
    assert set(task) == {"resourceType", "id", "meta", "status", "intent"}  # + mandatory
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "SUBSETTED", "display": "subsetted"} in task["meta"]["tag"]
    summary = world.gp.get(f"/fhir/Task/{task['id']}", params={"_summary": "true"}).json()
    assert "for" in summary and "status" in summary
    assert "SUBSETTED" in {t["code"] for t in summary["meta"].get("tag", [])} or \
        set(summary) == set(world.gp.get(f"/fhir/Task/{task['id']}").json())
    outcome(world.gp.get("/fhir/Task", params={"_summary": "maybe"}), 400)


def test_missing_not_exact_and_type_modifiers(world: World) -> None:
    pid = world.consented()
    done = world.gp.create(f.task(f"Patient/{pid}", status="completed"))
    open_ = world.gp.create(f.task(f"Patient/{pid}"))

    def ids(**params: str) -> set[str]:
        r = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}", **params})
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    assert ids(**{"status:not": "completed"}) == {open_["id"]}
    assert ids(**{"owner:missing": "true"}) == ids(**{"owner:missing": "true"})
    assert ids(**{"patient:missing": "false"}) == {done["id"], open_["id"]}
    assert ids(**{"part-of:missing": "true"}) == {done["id"], open_["id"]}
    assert ids(**{"subject:Patient": pid}) == {done["id"], open_["id"]}
    world.admin.create(f.practitioner("Van Damme", "Élise"))
    admin = world.admin

    def names(**params: str) -> int:
        return int(admin.get("/fhir/Practitioner", params=params).json()["total"])

    assert names(name="elise") == 1
    assert names(**{"name:exact": "Élise"}) == 1
    assert names(**{"name:exact": "elise"}) == 0
    assert names(**{"name:exact": "Van Damme"}) == 1


def test_unknown_parameters_400_or_listed_when_lenient(world: World) -> None:
    pid = world.consented()
    body = outcome(world.gp.get("/fhir/Task", params={"frobnicate": "1"}), 400)
    assert "frobnicate" in body["issue"][0]["diagnostics"]
    outcome(world.gp.get("/fhir/Task", params={"status:above": "x"}), 400)
    r = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}", "frobnicate": "1",
                                           "status:above": "x"},
                     headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200, r.text
    notes = [e for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    listed = [i["expression"][0] for i in notes[0]["resource"]["issue"]]
    assert listed == ["frobnicate", "status:above"]
    assert "frobnicate" not in links(r.json())["self"]


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize(("params", "headers"), [
    ({}, {"Accept": "application/fhir+xml"}),
    ({}, {"Accept": "application/xml, text/xml"}),
    ({"_format": "xml"}, {}),
    ({"_format": "application/fhir+xml"}, {}),
    ({}, {"Accept": "application/fhir+json; fhirVersion=3.0"}),
])
def test_xml_and_other_fhir_versions_are_406(world: World, params: dict[str, str],
                                             headers: dict[str, str]) -> None:
    outcome(world.gp.get("/fhir/Task", params=params, headers=headers), 406)
    outcome(world.anonymous.get("/fhir/metadata", params=params, headers=headers), 406)


def test_json_and_browsers_are_served(world: World) -> None:
    for accept in ("application/fhir+json", "application/json", "*/*",
                   "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                   "application/fhir+json; fhirVersion=4.0"):
        assert world.gp.get("/fhir/Task", headers={"Accept": accept}).status_code == 200
    assert world.gp.get("/fhir/Task", params={"_format": "json"}).status_code == 200
    r = world.gp.post("/fhir/Task", f.task("Patient/x"),
                      headers={"Content-Type": "application/fhir+json; fhirVersion=3.0"})
    outcome(r, 415)


# ---------------------------------------------------------------- writes

def test_post_with_query_parameters_is_refused_never_a_duplicate(world: World) -> None:
    org = f.organization("Maison médicale Esperanto")
    org["identifier"] = [{"system": "https://www.ehealth.fgov.be/standards/fhir/core/"
                                    "NamingSystem/cbe", "value": "0411905847"}]
    world.admin.create(org)
    before = world.admin.total("/fhir/Organization")
    r = world.admin.post("/fhir/Organization?identifier=https://www.ehealth.fgov.be/"
                         "standards/fhir/core/NamingSystem/cbe|0411905847", org)
    assert "If-None-Exist" in outcome(r, 400)["issue"][0]["diagnostics"]
    assert world.admin.total("/fhir/Organization") == before
    again = world.admin.post("/fhir/Organization", org, headers={
        "If-None-Exist": "identifier=https://www.ehealth.fgov.be/standards/fhir/core/"
                         "NamingSystem/cbe|0411905847"})
    assert again.status_code == 200
    assert world.admin.total("/fhir/Organization") == before


def test_prefer_return_operation_outcome(world: World) -> None:
    r = world.admin.post("/fhir/Organization", f.organization("ASBL Rue"),
                         headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.headers["location"]
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "information"
    minimal = world.admin.post("/fhir/Organization", f.organization("ASBL Rue 2"),
                               headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""


def patch(api: Api, path: str, body: Any, media: str = "application/json-patch+json",
          headers: dict[str, str] | None = None) -> Any:
    return api.client.patch(path, content=json.dumps(body),
                            headers={**api.headers, "Content-Type": media, **(headers or {})})


def test_json_patch_goes_through_the_choke_point(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    path = f"/fhir/Task/{task['id']}"
    r = patch(world.gp, path, [{"op": "test", "path": "/status", "value": "in-progress"},
                               {"op": "replace", "path": "/status", "value": "completed"}])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed" and r.json()["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'
    provenance = world.gp.get("/fhir/Provenance", params={"target": f"Task/{task['id']}"})
    assert provenance.json()["total"] == 2  # written by the server for each version
    merged = patch(world.gp, path, {"businessStatus": None}, "application/merge-patch+json")
    assert merged.status_code == 200 and "businessStatus" not in merged.json()
    outcome(patch(world.gp, path, [{"op": "add", "path": "/note",
                                    "value": [{"text": "free text"}]}]), 422)  # profile
    outcome(patch(world.gp, path, [{"op": "test", "path": "/status", "value": "failed"}]),
            422)
    outcome(patch(world.gp, path, [{"op": "replace", "path": "/id", "value": "other"}]), 422)
    outcome(patch(world.gp, path, [{"op": "replace", "path": "/status", "value": "x"}],
                  headers={"If-Match": 'W/"1"'}), 412)
    outcome(patch(world.gp, path, {"op": "nonsense"}, "application/json-patch+json"), 400)
    outcome(patch(world.gp, path, [], "text/plain"), 415)
    # consent: another practitioner without a grant sees no such resource
    outcome(patch(world.sw, path, [{"op": "replace", "path": "/status",
                                    "value": "on-hold"}]), 404)
    # a citizen changes their dossier through consents only
    outcome(patch(world.citizen(pid), path, [{"op": "replace", "path": "/status",
                                              "value": "on-hold"}]), 403)
    assert world.gp.get(path).json()["meta"]["versionId"] == "3"


def test_conditional_update_and_delete(world: World) -> None:
    cbe = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe"
    org = f.organization("CPAS d'Ixelles")
    org["identifier"] = [{"system": cbe, "value": "0212345678"}]
    query = f"identifier={cbe}|0212345678"
    created = world.admin.put(f"/fhir/Organization?{query}", org)
    assert created.status_code == 201, created.text
    updated = world.admin.put(f"/fhir/Organization?{query}", {**org, "active": False})
    assert updated.status_code == 200 and updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    world.admin.create({**org, "name": "CPAS d'Ixelles (bis)"})
    outcome(world.admin.put(f"/fhir/Organization?{query}", org), 412)
    outcome(world.admin.delete(f"/fhir/Organization?{query}"), 412)
    world.admin.delete(f"/fhir/Organization/{created.json()['id']}")
    assert world.admin.delete(f"/fhir/Organization?{query}").status_code == 204
    assert world.admin.total("/fhir/Organization", identifier=f"{cbe}|0212345678") == 0
    assert world.admin.delete(f"/fhir/Organization?{query}").status_code == 204  # none left


def test_conditional_update_in_a_dossier_keeps_consent(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    r = world.gp.put(f"/fhir/Task?_id={task['id']}", {**task, "status": "on-hold"})
    assert r.status_code == 200 and r.json()["status"] == "on-hold"
    # the social worker has no grant: the Task does not match for him; he cannot write
    outcome(world.sw.put(f"/fhir/Task?_id={task['id']}",
                         {k: v for k, v in task.items() if k != "id"}), 404)


def test_compartment_search(world: World) -> None:
    pid = world.consented()
    world.gp.create(f.task(f"Patient/{pid}"))
    world.gp.create(f.task(f"Patient/{pid}", status="completed"))
    r = world.gp.get(f"/fhir/Patient/{pid}/Task", params={"status": "completed"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1
    assert relative(links(r.json())["self"]).startswith(f"/fhir/Patient/{pid}/Task?")
    assert world.gp.get(f"/fhir/Patient/{pid}/Task").json()["total"] == 2
    hidden = world.open_dossier(f.patient(f.niss(serial=556)))
    assert world.gp.get(f"/fhir/Patient/{hidden}/Task").json()["total"] == 0
    outcome(world.gp.get(f"/fhir/Patient/{pid}/Organization"), 400)
    audit = world.citizen(pid).get(f"/fhir/Patient/{pid}/AuditEvent")
    assert audit.status_code == 200 and audit.json()["total"] > 0


# ---------------------------------------------------------------- CORS

ORIGIN = "http://app.example.test:5173"


def cors_world(data_dir: Any, database_url: str | None, **extra: Any) -> Any:
    return create_app(make_settings(data_dir, database_url, **extra))


def test_no_cors_by_default(world: World) -> None:
    r = world.anonymous.get("/fhir/metadata", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_cors_for_configured_origins(data_dir: Any, database_url: str | None) -> None:
    app = cors_world(data_dir, database_url, cors_origins=f"{ORIGIN}, https://other.example")
    try:
        with TestClient(app) as client:
            pre = client.options("/fhir/Patient", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, prefer"})
            assert pre.status_code == 200
            assert pre.headers["access-control-allow-origin"] == ORIGIN
            assert "authorization" in pre.headers["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in pre.headers
            r = client.get("/fhir/Patient", headers={"Origin": ORIGIN})  # 401, with CORS
            assert r.status_code == 401
            assert r.headers["access-control-allow-origin"] == ORIGIN
            assert "WWW-Authenticate" in r.headers["access-control-expose-headers"]
            other = client.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
            token = client.options("/auth/token", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
            assert token.headers["access-control-allow-origin"] == ORIGIN
            portal = client.get("/portal/", headers={"Origin": ORIGIN})
            assert "access-control-allow-origin" not in portal.headers
    finally:
        app.state.runtime.engine.dispose()


def test_cors_never_wildcards_credentials(data_dir: Any) -> None:
    with pytest.raises(SettingsError, match="never"):
        load_settings(data_dir=data_dir, cors_origins="*", cors_allow_credentials=True)
    with pytest.raises(SettingsError):
        load_settings(data_dir=data_dir, cors_origins="https://app.example/path")
    assert load_settings(data_dir=data_dir, cors_origins="*").cors_origin_list == ["*"]


def test_cors_with_credentials_names_the_origin(data_dir: Any,
                                                database_url: str | None) -> None:
    app = cors_world(data_dir, database_url, cors_origins=ORIGIN, cors_allow_credentials=True)
    try:
        with TestClient(app) as client:
            r = client.get("/fhir/metadata", headers={"Origin": ORIGIN})
            assert r.headers["access-control-allow-origin"] == ORIGIN  # never *
            assert r.headers["access-control-allow-credentials"] == "true"
    finally:
        app.state.runtime.engine.dispose()


def test_fhir_json_content_type_default(world: World) -> None:
    r = world.anonymous.get("/fhir/metadata")
    assert r.headers["content-type"].startswith(FHIR)


# ---------------------------------------------------------------- Bulk Data progress

def test_export_progress_is_visible_while_it_runs(world: World) -> None:
    """Status polls answer while the job runs (on SQLite too: the job's units read without
    the write lock), so a client sees X-Progress before the manifest."""
    import time

    from tests.integration.test_hubs import Hub

    org = world.admin.create(f.organization("Abrumet", "health"))
    hub = Hub(world, "hub-abrumet", f"Organization/{org['id']}")
    assert hub.register().status_code == 200
    for i in range(60):  # three units of 25 people
        pid = world.open_dossier(f.patient(f.niss(serial=600 + i)))
        world.grant(pid, hub.org_ref, ("identity", "demarches"), ("access",))
    api = hub.as_organisation()
    kick = api.get("/fhir/Patient/$export", headers={"Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    status_url = relative(kick.headers["content-location"])
    progress: list[str] = []
    slowest = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.monotonic()
        r = api.get(status_url)
        slowest = max(slowest, time.monotonic() - started)
        if r.status_code == 200:
            break
        assert r.status_code == 202, r.text
        progress.append(r.headers["x-progress"])
    else:
        raise AssertionError("the export did not finish")
    assert progress, "no poll answered before the job ended"
    assert any(p.endswith("/60 patients") for p in progress), progress  # e.g. 25/60
    assert slowest < 5.0
    assert sum(o["count"] for o in r.json()["output"] if o["type"] == "Patient") == 60


def test_conditional_entries_in_a_transaction(world: World) -> None:
    cbe = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe"
    org = {**f.organization("CPAS d'Evere"), "identifier": [{"system": cbe,
                                                             "value": "0212000111"}]}
    query = f"Organization?identifier={cbe}|0212000111"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": org, "request": {"method": "PUT", "url": query}}]}
    first = world.admin.post("/fhir", bundle)
    assert first.status_code == 200, first.text
    assert first.json()["entry"][0]["response"]["status"] == "201 Created"
    again = world.admin.post("/fhir", bundle).json()
    assert again["entry"][0]["response"]["status"] == "200 OK"
    gone = world.admin.post("/fhir", {"resourceType": "Bundle", "type": "transaction",
                                      "entry": [{"request": {"method": "DELETE",
                                                             "url": query}}]})
    assert gone.json()["entry"][0]["response"]["status"] == "204 No Content"
    assert world.admin.total("/fhir/Organization", identifier=f"{cbe}|0212000111") == 0


def test_a_count_above_the_largest_page_is_clamped_and_said_so(world: World) -> None:
    pid = world.consented()
    for _ in range(3):
        world.gp.create(f.task(f"Patient/{pid}"))
    settings = world.app.state.runtime.settings
    biggest = settings.page_size_max
    bundle = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}",
                                                "_count": str(biggest + 1)}).json()
    assert len(_matches(bundle)) == 3 and bundle["total"] == 3
    assert any(f"_count={biggest + 1}" in w and f"at most {biggest}" in w
               for w in _warnings(bundle)), bundle
    # within the limit: no warning
    plain = world.gp.get("/fhir/Task", params={"patient": f"Patient/{pid}",
                                               "_count": str(biggest)}).json()
    assert _warnings(plain) == []


@pytest.mark.parametrize("bad", ["-1", "٣", "1e3", "２０", ""])
def test_a_count_that_is_not_a_whole_number_is_refused(world: World, bad: str) -> None:
    r = world.gp.get("/fhir/Task", params={"_count": bad})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "_count" in r.json()["issue"][0]["diagnostics"]
