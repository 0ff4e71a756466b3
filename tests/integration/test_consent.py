"""Consent enforcement over HTTP on SQLite and PostgreSQL: every interaction, existence
hiding, immediate revocation, break-the-glass and the citizen's preview."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.integration.conftest import World


def _ids(bundle: dict[str, Any], rtype: str | None = None) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if rtype is None or e["resource"]["resourceType"] == rtype}


def _dossier(world: World) -> tuple[str, dict[str, str]]:
    """A person with a démarche, a psy démarche, a network and an assessment, recorded by
    the GP (who holds a full grant); returns the ids."""
    pid = world.consented()
    gp = world.gp
    ids = {
        "task": gp.create(f.task(f"Patient/{pid}"))["id"],
        "psy": gp.create(f.task(f"Patient/{pid}", code="mental-health-follow-up"))["id"],
        "team": gp.create(f.care_team(f"Patient/{pid}", [
            (world.gp_ref, "general-practitioner", True)]))["id"],
        "obs": gp.create(f.fragility(f"Patient/{pid}"))["id"],
    }
    return pid, ids


def test_no_consent_means_not_there(world: World) -> None:
    pid, ids = _dossier(world)
    sw = world.sw
    hidden = sw.get(f"/fhir/Patient/{pid}")
    missing = sw.get("/fhir/Patient/00000000-0000-0000-0000-000000000000")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    assert sw.get(f"/fhir/Task/{ids['task']}").content == sw.get(
        "/fhir/Task/00000000-0000-0000-0000-000000000000").content
    a = sw.get("/fhir/Task", params={"patient": pid}).json()
    b = sw.get("/fhir/Task", params={"patient": "00000000-0000-0000-0000-000000000000"}).json()
    for bundle in (a, b):
        bundle.pop("timestamp")
        bundle["link"] = [{"relation": x["relation"]} for x in bundle["link"]]
    assert a == b and a["total"] == 0
    for path in (f"/fhir/Task/{ids['task']}/_history", f"/fhir/Task/{ids['task']}/_history/1",
                 f"/fhir/Patient/{pid}/$everything"):
        assert sw.get(path).status_code == 404, path
    assert sw.get("/fhir/Task/_history").json()["total"] == 0


def test_grants_by_person_organisation_profession(world: World) -> None:
    pid, ids = _dossier(world)
    sw = world.sw
    assert sw.total("/fhir/Task", patient=pid) == 0
    world.grant(pid, world.org_ref, categories=("demarches",), actions=("access",))
    assert _ids(sw.get("/fhir/Task", params={"patient": pid}).json()) == {ids["task"]}
    other_org = world.admin.create(f.organization("Foyer bruxellois", "housing"))
    nurse = world.add_practitioner("Leclercq", "persnurse", f"Organization/{other_org['id']}")
    nurse_api = world.as_("practitioner", nurse)
    assert nurse_api.total("/fhir/CareTeam", patient=pid) == 0
    world.grant(pid, "Group/profession-persnurse", categories=("network",), actions=("access",))
    assert nurse_api.total("/fhir/CareTeam", patient=pid) == 1
    assert nurse_api.total("/fhir/Task", patient=pid) == 0


def test_categories_and_psy(world: World) -> None:
    pid, ids = _dossier(world)
    world.grant(pid, world.sw_ref, categories=("demarches", "identity"), actions=("access",))
    sw = world.sw
    bundle = sw.get("/fhir/Task", params={"patient": pid, "_include": "Task:patient"}).json()
    assert bundle["total"] == 1  # the psy démarche is neither listed nor counted
    assert _ids(bundle, "Task") == {ids["task"]}
    assert _ids(bundle, "Patient") == {pid}
    assert sw.get(f"/fhir/Task/{ids['psy']}").status_code == 404
    assert sw.get(f"/fhir/Observation/{ids['obs']}").status_code == 404
    world.grant(pid, world.sw_ref, categories=("psy",), actions=("access",))
    assert sw.total("/fhir/Task", patient=pid) == 2


def test_include_never_leaks(world: World) -> None:
    pid, _ = _dossier(world)
    world.grant(pid, world.sw_ref, categories=("demarches",), actions=("access",))
    bundle = world.sw.get("/fhir/Task", params={
        "patient": pid, "_include": "Task:patient"}).json()
    assert _ids(bundle, "Patient") == set()
    rev = world.sw.get("/fhir/Patient", params={"_id": pid,
                                                 "_revinclude": "Task:patient"}).json()
    assert rev["total"] == 0 and "entry" not in rev


def test_deny_overrides_and_period(world: World) -> None:
    pid, _ = _dossier(world)
    world.grant(pid, world.org_ref, categories=("demarches",), actions=("access",))
    assert world.sw.total("/fhir/Task", patient=pid) == 1
    world.citizen(pid).create(f.consent(pid, world.sw_ref, kind="deny", categories=(),
                                        actions=()))
    assert world.sw.total("/fhir/Task", patient=pid) == 0
    assert world.gp.total("/fhir/Task", patient=pid) == 2  # others keep their grants
    nurse = world.add_practitioner("Peeters", "persnurse")
    world.grant(pid, nurse, categories=("demarches",), actions=("access",),
                start="2999-01-01")
    assert world.as_("practitioner", nurse).total("/fhir/Task", patient=pid) == 1  # org grant
    world.grant(pid, nurse, categories=("demarches",), actions=("access",), kind="deny",
                end="2000-01-01")  # an exclusion that ended long ago does nothing
    assert world.as_("practitioner", nurse).total("/fhir/Task", patient=pid) == 1


def test_revocation_is_immediate(world: World) -> None:
    pid, ids = _dossier(world)
    grant = world.grant(pid, world.sw_ref, categories=("demarches",), actions=("access",))
    assert world.sw.get(f"/fhir/Task/{ids['task']}").status_code == 200
    citizen = world.citizen(pid)
    r = citizen.put(f"/fhir/Consent/{grant['id']}", dict(grant, status="inactive"))
    assert r.status_code == 200, r.text
    assert world.sw.get(f"/fhir/Task/{ids['task']}").status_code == 404
    again = world.grant(pid, world.sw_ref, categories=("demarches",), actions=("access",))
    assert world.sw.get(f"/fhir/Task/{ids['task']}").status_code == 200
    assert citizen.delete(f"/fhir/Consent/{again['id']}").status_code == 204
    assert world.sw.get(f"/fhir/Task/{ids['task']}").status_code == 404
    history = citizen.get(f"/fhir/Consent/{grant['id']}/_history").json()
    assert history["total"] == 2  # every consent change is versioned


def test_only_the_citizen_writes_consent(world: World) -> None:
    pid, _ = _dossier(world)
    other = world.open_dossier(f.patient(ssin=f.niss("900101", 9)))
    body = f.consent(pid, world.sw_ref)
    assert world.gp.post("/fhir/Consent", body).status_code == 403
    assert world.admin.post("/fhir/Consent", body).status_code == 403
    assert world.citizen(other).post("/fhir/Consent", body).status_code in (403, 404)
    assert world.gp.get("/fhir/Consent").status_code == 403
    bad = dict(body, provision={"type": "permit", "provision": [{"type": "deny"}]})
    assert world.citizen(pid).post("/fhir/Consent", bad).status_code == 422


def test_collect_grant_and_transactions(world: World) -> None:
    pid = world.consented()
    world.grant(pid, world.sw_ref, categories=("demarches",), actions=("collect", "access"))
    sw = world.sw
    assert sw.post("/fhir/Task", f.task(f"Patient/{pid}")).status_code == 201
    assert sw.post("/fhir/Observation", f.fragility(f"Patient/{pid}")).status_code == 403
    mixed = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": f.task(f"Patient/{pid}"), "request": {"method": "POST", "url": "Task"}},
        {"resource": f.fragility(f"Patient/{pid}"),
         "request": {"method": "POST", "url": "Observation"}}]}
    before = world.gp.total("/fhir/Task", patient=pid)
    assert sw.post("/fhir", mixed).status_code == 403
    assert world.gp.total("/fhir/Task", patient=pid) == before
    batch = dict(mixed, type="batch")
    statuses = [e["response"]["status"][:3] for e in sw.post("/fhir", batch).json()["entry"]]
    assert statuses == ["201", "403"]
    stranger = world.open_dossier(f.patient(ssin=f.niss("910101", 3)))
    assert sw.post("/fhir/Task", f.task(f"Patient/{stranger}")).status_code == 404


def test_psy_label_can_be_added_never_removed(world: World) -> None:
    pid = world.consented()
    gp = world.gp
    body = f.task(f"Patient/{pid}", code="housing-application")
    body["meta"] = {"security": [{"system": f"{f.DB}/CodeSystem/dossier-category",
                                  "code": "psy"}]}
    task = gp.create(body)
    assert "psy" in {c["code"] for c in task["meta"]["security"]}
    task.pop("meta")
    updated = gp.put(f"/fhir/Task/{task['id']}", task).json()
    assert "psy" in {c["code"] for c in updated["meta"]["security"]}
    world.grant(pid, world.sw_ref, categories=("demarches",), actions=("access",))
    assert world.sw.get(f"/fhir/Task/{task['id']}").status_code == 404


def test_psy_added_later_hides_earlier_versions(world: World) -> None:
    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    world.grant(pid, world.sw_ref, categories=("demarches",), actions=("access",))
    assert world.sw.get(f"/fhir/Task/{task['id']}/_history/1").status_code == 200
    labelled = dict(task, meta={"security": [{"system": f"{f.DB}/CodeSystem/dossier-category",
                                              "code": "psy"}]})
    assert world.gp.put(f"/fhir/Task/{task['id']}", labelled).status_code == 200
    assert world.sw.get(f"/fhir/Task/{task['id']}/_history/1").status_code == 404
    assert world.sw.get("/fhir/Task/_history").json()["total"] == 0
    assert world.sw.get("/fhir/Provenance", params={
        "target": f"Task/{task['id']}"}).json()["total"] == 0


def test_everything_and_preview_agree(world: World) -> None:
    pid, ids = _dossier(world)
    world.grant(pid, world.sw_ref, categories=("identity", "network"), actions=("access",))
    seen = world.sw.get(f"/fhir/Patient/{pid}/$everything").json()
    assert _ids(seen) - _ids(seen, "Provenance") == {pid, ids["team"]}
    # authorship travels with what it describes, never further
    targets = {e["resource"]["target"][0]["reference"] for e in seen["entry"]
               if e["resource"]["resourceType"] == "Provenance"}
    assert targets == {f"Patient/{pid}", f"CareTeam/{ids['team']}"}
    preview = world.citizen(pid).get(f"/fhir/Patient/{pid}/$access-preview",
                                     params={"actor": world.sw_ref})
    assert preview.status_code == 200, preview.text
    assert _ids(preview.json()) == _ids(seen)
    full = world.gp.get(f"/fhir/Patient/{pid}/$everything").json()
    assert _ids(full) - _ids(full, "Provenance") == {pid, *ids.values(), f"fragility-{pid}"}
    assert world.sw.get(f"/fhir/Patient/{pid}/$access-preview",
                        params={"actor": world.sw_ref}).status_code == 403


def test_break_the_glass(world: World) -> None:
    pid, ids = _dossier(world)
    nurse = world.add_practitioner("Urgent", "persnurse")
    er = world.as_("practitioner", nurse)
    assert er.get(f"/fhir/Patient/{pid}").status_code == 404
    reason = {"resourceType": "Parameters",
              "parameter": [{"name": "reason", "valueString": "unconscious at admission"}]}
    r = er.post(f"/fhir/Patient/{pid}/$break-glass", reason)
    assert r.status_code == 200, r.text
    assert er.get(f"/fhir/Patient/{pid}").status_code == 200
    assert er.get(f"/fhir/CareTeam/{ids['team']}").status_code == 200
    assert er.get(f"/fhir/Observation/{ids['obs']}").status_code == 200
    assert er.get(f"/fhir/Task/{ids['task']}").status_code == 404  # démarches: no
    assert er.get(f"/fhir/Task/{ids['psy']}").status_code == 404  # psy: never
    world.app.state.runtime.integrate_audit()
    events = world.citizen(pid).get("/fhir/AuditEvent").json()["entry"]
    purposes = {c["code"] for e in events for p in e["resource"]["purposeOfEvent"]
                for c in p["coding"]}
    assert "BTG" in purposes
    assert "unconscious" not in str(world.auditor.get("/fhir/AuditEvent").json())
    urgent = world.auditor.get("/fhir/AuditEvent", params={"purpose": "BTG"}).json()
    assert urgent["total"] >= 2 and all(
        e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
        for e in urgent["entry"])
    details = [d["valueString"] for e in urgent["entry"] for en in e["resource"]["entity"]
               for d in en.get("detail", [])]
    assert "break-glass" in details

    other, _ = _dossier(world)
    world.citizen(other).create(f.consent(other, None, kind="deny", categories=(),
                                          actions=(), purpose="BTG"))
    refused = er.post(f"/fhir/Patient/{other}/$break-glass", reason)
    missing = er.post("/fhir/Patient/00000000-0000-0000-0000-000000000000/$break-glass",
                      reason)
    assert refused.status_code == missing.status_code == 404
    assert refused.content == missing.content
    assert er.post(f"/fhir/Patient/{pid}/$break-glass",
                   {"resourceType": "Parameters"}).status_code == 422


def test_put_is_no_existence_oracle(world: World) -> None:
    hidden = world.open_dossier(f.patient(ssin=f.niss("920202", 2)))
    body = dict(f.patient(ssin=None), id=hidden)
    missing = dict(body, id="00000000-0000-0000-0000-00000000abcd")
    for api in (world.sw, world.admin):
        a = api.put(f"/fhir/Patient/{hidden}", body)
        b = api.put(f"/fhir/Patient/{missing['id']}", missing)
        assert a.status_code == b.status_code, (a.text, b.text)
        assert a.status_code in (403, 404)
    assert world.admin.get(f"/fhir/Patient/{missing['id']}").status_code in (403, 404)


def test_a_consent_damaged_in_the_store_closes_the_dossier(world: World) -> None:
    """Fail closed: a stored Consent that can no longer be read (changed in place, same
    version) could have been an exclusion, so nothing of the dossier is shown to
    professionals from the next request on — although the same Consent was read fine a
    moment before."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from dossier.db.models import resources

    pid = world.consented()
    task = world.gp.create(f.task(f"Patient/{pid}"))
    assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 200
    grant = world.citizen(pid).get("/fhir/Consent", params={"patient": pid}).json()
    consent_id = grant["entry"][0]["resource"]["id"]
    engine = world.app.state.runtime.engine
    with Session(engine) as session, session.begin():
        content = session.execute(resources.select().where(
            resources.c.res_type == "Consent", resources.c.res_id == consent_id)).one().content
        damaged = {**content, "provision": {**content["provision"], "type": "maybe"}}
        session.execute(update(resources).where(
            resources.c.res_type == "Consent", resources.c.res_id == consent_id).values(
            content=damaged))
    assert world.gp.get(f"/fhir/Task/{task['id']}").status_code == 404
    assert world.gp.total("/fhir/Task", patient=f"Patient/{pid}") == 0
