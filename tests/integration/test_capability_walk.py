"""Walk the CapabilityStatement and exercise every advertised interaction and search
parameter, as the role the statement names for it (issue 17): nothing is advertised that
does not work. (Subscription is walked in test_subscriptions.py: it needs a listener.)"""

from __future__ import annotations

import json
from typing import Any

from dossier.notify.worker import run_pending
from tests import factories as f
from tests.integration.conftest import Api, World

PREFERENCE = ("practitioner", "admin", "citizen", "auditor", "hub")
VALUES = {"token": "x", "date": "ge2000-01-01", "string": "a"}
TERRITORY = "https://dossier.brussels/fhir/CodeSystem/territory-level"
SERVICE_TYPE = "https://dossier.brussels/fhir/CodeSystem/service-type"
AUDIT_VALUES = {"outcome": "0", "action": "R", "purpose": "TREAT", "agent": "Practitioner/x"}


def roles_of(interaction: dict[str, Any]) -> list[str]:
    return interaction["documentation"].removeprefix("Roles: ").split(", ")


class Walk:
    def __init__(self, world: World) -> None:
        self.world = world
        self.pid = world.consented()
        ref = f"Patient/{self.pid}"
        world.grant(self.pid, world.org_ref)  # the hub below speaks for the organisation
        gp = world.gp
        self.apis: dict[str, Api] = {
            "admin": world.admin, "auditor": world.auditor, "practitioner": gp,
            "citizen": world.citizen(self.pid), "hub": world.as_("hub", world.org_ref)}
        made = {
            "Patient": self.pid,
            "Task": gp.create(f.task(ref))["id"],
            "CareTeam": gp.create(f.care_team(ref, [(world.sw_ref, "social-worker",
                                                     True)]))["id"],
            "RelatedPerson": gp.create(f.related_person(self.pid))["id"],
            "Observation": gp.create(f.fragility(ref))["id"],
            "Consent": world.citizen(self.pid).create(
                f.consent(self.pid, world.sw_ref))["id"],
            "Organization": world.org["id"],
            "Practitioner": world.gp_ref.split("/")[1],
            "Endpoint": world.admin.create(f.endpoint())["id"],
            "Group": "profession-persphysician",
            "Location": "bassin-sud",
            "HealthcareService": world.admin.create(self.service())["id"],
        }
        bundle = gp.get("/fhir/Flag", params={"patient": ref}).json()
        made["Flag"] = bundle["entry"][0]["resource"]["id"]
        made["PractitionerRole"] = world.admin.get(
            "/fhir/PractitionerRole", params={"practitioner": world.gp_ref}).json()[
            "entry"][0]["resource"]["id"]
        made["Provenance"] = gp.get("/fhir/Provenance", params={
            "target": f"Task/{made['Task']}"}).json()["entry"][0]["resource"]["id"]
        run_pending(world.app.state.runtime)  # the inbox Communications of the accesses
        inbox = world.citizen(self.pid).get("/fhir/Communication", params={
            "recipient": ref}).json()
        made["Communication"] = inbox["entry"][0]["resource"]["id"]
        world.app.state.runtime.integrate_audit()
        made["AuditEvent"] = world.auditor.get("/fhir/AuditEvent", params={
            "patient": ref, "_count": "1"}).json()["entry"][0]["resource"]["id"]
        self.made = made

    def api(self, rtype: str, interaction: dict[str, Any]) -> Api:
        roles = roles_of(interaction)
        # a practitioner's Groups are its own rosters; the directory's are the admin's
        order = ("admin", *PREFERENCE) if rtype == "Group" else PREFERENCE
        if rtype == "Communication":  # a professional reads only their own messages
            order = ("citizen", *PREFERENCE)
        return self.apis[next(r for r in order if r in roles)]

    def service(self) -> dict[str, Any]:
        return {"resourceType": "HealthcareService", "name": "Walk",
                "providedBy": {"reference": self.world.org_ref},
                "type": [{"coding": [{"system": SERVICE_TYPE, "code": "legal-aid"}]}],
                "coverageArea": [{"reference": "Location/bassin-nord"}]}

    def new(self, rtype: str, api: Api | None = None) -> dict[str, Any]:
        """A fresh resource of the type, to create (and, for delete, to delete)."""
        ref = f"Patient/{self.pid}"
        if rtype == "RelatedPerson" and api is self.apis["citizen"]:
            return f.representative(self.pid, f.niss(serial=902))  # hers to name or remove
        if rtype == "Consent" and api is self.apis["practitioner"]:
            assisted = f.consent(self.pid, self.world.gp_ref)  # the person present (§13)
            assisted["performer"] = [{"reference": self.world.gp_ref}]
            assisted["verification"] = [{"verified": True, "verifiedWith": {"reference": ref},
                                         "verificationDate": "2026-12-06T10:00:00Z"}]
            return assisted
        bodies: dict[str, Any] = {
            "Patient": lambda: f.patient(f.niss(serial=901)),
            "Task": lambda: f.task(ref),
            "CareTeam": lambda: f.care_team(ref, [(self.world.gp_ref, "general-practitioner",
                                                   False)]),
            "RelatedPerson": lambda: f.related_person(self.pid, "Janssens"),
            "Observation": lambda: f.fragility(ref),
            "Consent": lambda: f.consent(self.pid, self.world.gp_ref),
            "Organization": lambda: f.organization("ASBL Walk"),
            "Practitioner": lambda: f.practitioner("Walk"),
            "PractitionerRole": lambda: f.practitioner_role(self.world.sw_ref,
                                                            self.world.org_ref),
            "Endpoint": lambda: f.endpoint("https://walk.example/fhir"),
            "Group": lambda: {"resourceType": "Group", "type": "practitioner", "actual": True,
                              "member": [{"entity": {"reference": self.world.gp_ref}}]},
            "Location": lambda: {"resourceType": "Location", "name": "Quartier Walk",
                                 "type": [{"coding": [{"system": TERRITORY,
                                                       "code": "quartier"}]}],
                                 "partOf": {"reference": "Location/commune-jette"}},
            "HealthcareService": self.service,
        }
        return bodies[rtype]()  # type: ignore[no-any-return]


def search_value(rtype: str, param: dict[str, Any], walk: Walk) -> str:
    if rtype == "AuditEvent":
        return AUDIT_VALUES.get(param["name"], f"Patient/{walk.pid}"
                                if param["type"] == "reference" else "ge2000-01-01")
    if param["name"] == "_id":
        return walk.made[rtype]
    if param["type"] == "reference":
        return f"Patient/{walk.pid}" if param["name"] in ("patient", "subject", "for") \
            else "Organization/x" if param["name"] in ("organization", "owner") or (
                param["name"] == "partof" and rtype != "Location") \
            else f"{param.get('target', ['Practitioner'])[0]}/x"
    return VALUES[param["type"]]


def test_every_advertised_interaction_and_parameter_works(world: World) -> None:
    cs = world.anonymous.get("/fhir/metadata").json()
    walk = Walk(world)
    definitions: dict[str, dict[str, Any]] = {}
    exercised: list[str] = []
    for entry in cs["rest"][0]["resource"]:
        rtype = entry["type"]
        if rtype == "Subscription":
            continue
        rid = walk.made.get(rtype)
        for interaction in entry["interaction"]:
            code = interaction["code"]
            api = walk.api(rtype, interaction)
            path = f"/fhir/{rtype}/{rid}"
            if code == "read":
                r = api.get(path)
            elif code == "vread":
                r = api.get(f"{path}/_history/1")
            elif code == "history-instance":
                r = api.get(f"{path}/_history")
            elif code == "history-type":
                r = api.get(f"/fhir/{rtype}/_history")
            elif code == "search-type":
                r = api.get(f"/fhir/{rtype}")
                for param in entry["searchParam"]:
                    sp = definitions.setdefault(param["definition"], world.anonymous.get(
                        "/fhir" + param["definition"].removeprefix(
                            "https://dossier.brussels/fhir")).json()
                        if param["definition"].startswith("https://dossier.brussels")
                        else {"target": []})
                    value = search_value(rtype, {**param, "target": sp.get("target")}, walk)
                    found = api.get(f"/fhir/{rtype}", params={param["name"]: value})
                    assert found.status_code == 200, (rtype, param["name"], found.text)
                    exercised.append(f"{rtype}?{param['name']}")
            elif code == "create":
                r = api.post(f"/fhir/{rtype}", walk.new(rtype, api))
            elif code == "update":
                current = api.get(path).json()
                r = api.put(path, current)
            elif code == "patch":
                r = api.client.patch(path, content=json.dumps(
                    [{"op": "test", "path": "/id", "value": rid}]), headers={
                    **api.headers, "Content-Type": "application/json-patch+json"})
            elif code == "delete":
                made = api.create(walk.new(rtype, api))
                r = api.delete(f"/fhir/{rtype}/{made['id']}")
            else:
                raise AssertionError(f"unexpected interaction {code}")
            assert r.status_code in (200, 201, 204), (rtype, code, roles_of(interaction),
                                                      r.text)
            exercised.append(f"{rtype} {code}")
    assert len(exercised) > 150
