"""The three stories of STORIES.md replayed over HTTP, each actor with their own token, on
SQLite and PostgreSQL: what each professional sees ($demarches, $network) and what
$discharge-readiness answers on a Friday afternoon, a Tuesday morning and a Belgian public
holiday; a pseudonymous dossier end to end; bad input refused with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from dossier.domain.readiness import REASON_TEXTS
from schemas import terminology
from tests import factories as f
from tests.integration.conftest import Api, World

DB = "https://dossier.brussels/fhir"
REASON_SYSTEM = f"{DB}/CodeSystem/readiness-reason"
COMPONENT = f"{DB}/CodeSystem/fragility-component"
FRIDAY_4PM = "2027-03-12T16:00:00+01:00"
FRIDAY_11AM = "2027-03-12T11:00:00+01:00"
TUESDAY_10AM = "2027-03-16T10:00:00+01:00"
HOLIDAY_EVE_2PM = "2027-07-20T14:00:00+02:00"  # the day before 21 July
NATIONAL_DAY_10AM = "2027-07-21T10:00:00+02:00"
NOBODY = "00000000-0000-0000-0000-000000000000"


# ---------------------------------------------------------------------- helpers

def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """The answer is valid FHIR R4 (R4B models) for any client."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def member(ref: str, role: str, available: bool = False, start: str | None = None,
           end: str | None = None) -> dict[str, Any]:
    participant: dict[str, Any] = {
        "extension": [{"url": f.AVAILABLE, "valueBoolean": available}],
        "role": [{"coding": [{"system": f"{DB}/CodeSystem/network-role", "code": role}]}],
        "member": {"reference": ref}}
    if start or end:
        participant["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    return participant


def team(pid: str, participants: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "CareTeam", "status": "active",
            "subject": {"reference": f"Patient/{pid}"}, "participant": participants}


def demarche(pid: str, code: str, status: str, owner: str, requester: str,
             business: str | None = None, start: str | None = None, end: str | None = None,
             authored: str = "2027-01-04T09:00:00+01:00",
             part_of: str | None = None) -> dict[str, Any]:
    task = f.task(f"Patient/{pid}", code=code, status=status, owner=owner, authored=authored,
                  business=business)
    task["requester"] = {"reference": requester}
    if start:
        task["executionPeriod"] = {"start": start, **({"end": end} if end else {})}
    if part_of:
        task["partOf"] = [{"reference": part_of}]
    return task


def assessment(pid: str, when: str, *, housing: str, lives_alone: bool, support: bool,
               **more: bool) -> dict[str, Any]:
    obs = f.fragility(f"Patient/{pid}", housing=housing, lives_alone=lives_alone,
                      support=support, when=when)
    for code, value in more.items():
        obs["component"].append({"code": {"coding": [{"system": COMPONENT,
                                                      "code": code.replace("_", "-")}]},
                                 "valueBoolean": value})
    return obs


def readiness(api: Api, pid: str, at: str | None, *, destination: str | None = None,
              language: str | None = None) -> Any:
    parameters: list[dict[str, Any]] = []
    if at is not None:
        parameters.append({"name": "at", "valueDateTime": at})
    if destination:
        parameters.append({"name": "destination", "valueReference": {"reference": destination}})
    if language:
        parameters.append({"name": "language", "valueCode": language})
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if parameters:
        body["parameter"] = parameters
    return api.post(f"/fhir/Patient/{pid}/$discharge-readiness", body)


def answer(api: Api, pid: str, at: str, **kw: Any) -> tuple[bool, list[str], set[str]]:
    """(ready, reason codes in order, contacts) — after checking the §12 shape."""
    r = readiness(api, pid, at, **kw)
    assert r.status_code == 200, r.text
    body = valid(r.json())
    names = [p["name"] for p in body["parameter"]]
    assert names[0] == "ready" and names.count("ready") == 1
    assert set(names) <= {"ready", "reason", "contact"}
    reasons = [p["valueCodeableConcept"] for p in body["parameter"] if p["name"] == "reason"]
    for concept in reasons:
        coding = concept["coding"][0]
        assert coding["system"] == REASON_SYSTEM
        assert coding["display"] == terminology.display(REASON_SYSTEM, coding["code"])
        assert concept["text"]
    contacts = {p["valueReference"]["reference"] for p in body["parameter"]
                if p["name"] == "contact"}
    return (body["parameter"][0]["valueBoolean"], [c["coding"][0]["code"] for c in reasons],
            contacts)


def texts(api: Api, pid: str, at: str, **kw: Any) -> list[str]:
    body = readiness(api, pid, at, **kw).json()
    return [p["valueCodeableConcept"]["text"] for p in body["parameter"]
            if p["name"] == "reason"]


def timeline_ids(api: Api, pid: str) -> list[str]:
    r = api.get(f"/fhir/Patient/{pid}/$demarches")
    assert r.status_code == 200, r.text
    bundle = valid(r.json())
    assert bundle["type"] == "searchset" and bundle["total"] == len(bundle.get("entry", []))
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def network(api: Api, pid: str) -> dict[str, list[dict[str, Any]]]:
    """$network as {'node': [...], 'edge': [...], 'seen': [...]}, each a dict of parts."""
    r = api.get(f"/fhir/Patient/{pid}/$network")
    assert r.status_code == 200, r.text
    out: dict[str, list[dict[str, Any]]] = {"node": [], "edge": [], "seen": []}
    for parameter in valid(r.json())["parameter"]:
        parts: dict[str, Any] = {}
        for part in parameter["part"]:
            value = next(v for k, v in part.items() if k.startswith("value"))
            if part["name"] == "role":
                parts.setdefault("role", set()).add(value["code"])
            else:
                parts[part["name"]] = value
        out[parameter["name"]].append(parts)
    return out


def nodes(net: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {n["reference"]["reference"]: n for n in net["node"]}


def refused_like_missing(api: Api, pid: str) -> None:
    """Without consent the operations answer exactly as for a dossier that does not exist."""
    for path in ("$demarches", "$network"):
        hidden, missing = api.get(f"/fhir/Patient/{pid}/{path}"), api.get(
            f"/fhir/Patient/{NOBODY}/{path}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.content == missing.content
    hidden = readiness(api, pid, TUESDAY_10AM)
    missing = readiness(api, NOBODY, TUESDAY_10AM)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content


def org(world: World, name: str, sector: str) -> str:
    return f"Organization/{world.admin.create(f.organization(name, sector))['id']}"


# ---------------------------------------------------------------------- Martin

def test_martin_release_is_prepared_not_on_a_friday_evening(world: World) -> None:
    prison = org(world, "Service psychosocial de la prison", "justice")
    onem = org(world, "Office national de l'emploi", "employment")
    mrs = org(world, "MRS Les Glycines", "elderly-care")
    shelter = org(world, "Maison d'accueil de nuit", "homelessness")
    prison_sw = world.add_practitioner("Lambert", "perssocialworker", prison)
    prison_api = world.as_("practitioner", prison_sw)
    pid = world.open_dossier(f.patient(f.niss("670101", 321), "Martin", "Jean"))
    world.grant(pid, world.gp_ref)  # everything, mental health included
    world.grant(pid, prison, categories=("demarches", "network", "fragility"))
    world.grant(pid, world.sw_ref, categories=("identity", "demarches", "network", "fragility"))

    # in detention: the prison social service handles the first requests
    benefits = prison_api.create(demarche(
        pid, "unemployment-benefits", "in-progress", onem, prison_sw, "awaiting-documents",
        start="2026-12-15"))["id"]
    prison_api.create(assessment(pid, "2027-03-08T10:00:00+01:00", housing="none",
                                 lives_alone=True, support=False, mobility_limited=True,
                                 income_loss=True, institution_exit=True))
    network_id = prison_api.create(team(pid, [
        member(prison_sw, "social-worker", start="2026-12-01", end="2027-03-12T12:00:00+01:00"),
        member(world.gp_ref, "general-practitioner"),
        member(world.sw_ref, "social-worker")]))["id"]

    # released on a Friday: the afternoon, nobody confirmed, no home
    ready, reasons, contacts = answer(world.sw, pid, FRIDAY_4PM)
    assert not ready
    assert reasons == ["high-fragility-no-support", "friday-afternoon"]
    assert contacts == {world.gp_ref, world.sw_ref}  # the prison's part ended at noon
    assert texts(world.sw, pid, FRIDAY_4PM) == [
        REASON_TEXTS[c]["fr"] for c in reasons]  # Martin speaks French
    ready, reasons, contacts = answer(prison_api, pid, FRIDAY_11AM)
    assert not ready and reasons == ["high-fragility-no-support"]
    assert prison_sw in contacts

    # what the social service does next
    shelter_stay = world.sw.create(demarche(
        pid, "emergency-shelter", "completed", shelter, world.sw_ref, "decision-positive",
        start="2027-03-12T18:00:00+01:00", end="2027-03-15"))["id"]
    cpas = world.sw.create(demarche(
        pid, "cpas-support", "completed", world.org_ref, world.sw_ref, "decision-positive",
        start="2027-03-13", end="2027-04-10"))["id"]
    care_home = world.sw.create(demarche(
        pid, "care-home-admission", "in-progress", mrs, world.sw_ref, "appointment-set",
        start="2027-03-15"))["id"]
    psy = world.gp.create(demarche(
        pid, "mental-health-follow-up", "in-progress", world.org_ref, world.gp_ref,
        start="2027-03-11"))["id"]
    # the CPAS department changes: the closed démarche cannot reopen, a new one continues it
    closed = world.sw.get(f"/fhir/Task/{cpas}").json()
    refused = world.sw.put(f"/fhir/Task/{cpas}", {**closed, "status": "in-progress"})
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["code"] == "business-rule"
    assert world.sw.get(f"/fhir/Task/{cpas}").json()["meta"]["versionId"] == "1"
    again = world.sw.create(demarche(
        pid, "cpas-support", "requested", world.org_ref, world.sw_ref, "awaiting-documents",
        authored="2027-05-03T09:00:00+02:00", part_of=f"Task/{cpas}"))["id"]

    # each professional sees the timeline their consent allows, oldest first
    social = [benefits, shelter_stay, cpas, care_home, again]
    assert timeline_ids(world.sw, pid) == social
    assert timeline_ids(prison_api, pid) == social
    assert timeline_ids(world.gp, pid) == [benefits, psy, *social[1:]]
    assert timeline_ids(world.citizen(pid), pid) == [benefits, psy, *social[1:]]
    reopened = world.sw.get(f"/fhir/Patient/{pid}/$demarches").json()["entry"][-1]["resource"]
    assert reopened["partOf"] == [{"reference": f"Task/{cpas}"}]

    # the care home will see him on Monday: with it as destination he may leave on Tuesday
    current = world.sw.get(f"/fhir/CareTeam/{network_id}").json()
    current["participant"].append(member(mrs, "care-home", start="2027-03-15"))
    assert world.sw.put(f"/fhir/CareTeam/{network_id}", current).status_code == 200
    assert answer(world.sw, pid, TUESDAY_10AM, destination=mrs) == (True, [], {mrs})
    ready, reasons, contacts = answer(world.sw, pid, TUESDAY_10AM)
    assert (ready, reasons, contacts) == (False, ["high-fragility-no-support"], {world.sw_ref})

    # the network map and the professionals he has seen
    net = network(world.sw, pid)
    drawn = nodes(net)
    assert set(drawn) == {f"Patient/{pid}", prison_sw, world.gp_ref, world.sw_ref, mrs}
    assert drawn[f"Patient/{pid}"]["kind"] == "person"
    assert drawn[f"Patient/{pid}"]["reference"]["display"] == "Jean Martin"
    assert drawn[mrs]["kind"] == "organisation" and drawn[mrs]["role"] == {"care-home"}
    assert drawn[mrs]["reference"]["display"] == "MRS Les Glycines"
    assert drawn[prison_sw]["kind"] == "professional"
    assert drawn[prison_sw]["period"] == {"start": "2026-12-01",
                                          "end": "2027-03-12T12:00:00+01:00"}
    assert set(drawn[f"Patient/{pid}"]) == {"reference", "kind"}  # the centre
    assert not any(n.get("available-at-discharge") for n in drawn.values())
    assert {(e["source"]["reference"], e["target"]["reference"]) for e in net["edge"]} == {
        (f"Patient/{pid}", ref) for ref in (prison_sw, world.gp_ref, world.sw_ref, mrs)}
    seen = {s["practitioner"]["reference"]: s for s in net["seen"]}
    assert set(seen) == {prison_sw, world.gp_ref, world.sw_ref}
    assert seen[prison_sw]["first"] == "2026-12-01"
    assert seen[prison_sw]["last"] == "2027-03-12T12:00:00+01:00"
    assert "last" not in seen[world.gp_ref]  # still his GP
    assert seen[world.gp_ref]["practitioner"]["display"] == "Anne Dupont"

    # a professional he never consented to sees nothing, not even that he exists
    stranger = world.as_("practitioner", world.add_practitioner("Leclercq", "persnurse"))
    refused_like_missing(stranger, pid)


# ---------------------------------------------------------------------- Simone

def test_simone_home_nurse_is_activated_before_she_goes_home(world: World) -> None:
    hospital = org(world, "Hôpital de la Senne", "health")
    centre = org(world, "Centre de services Les Tilleuls", "elderly-care")
    home_care = org(world, "Soins à domicile Bruxelles", "health")
    geriatrician = world.add_practitioner("Maes", "persphysician", hospital)
    nurse = world.add_practitioner("Peeters", "persnurse", home_care)
    ward, home_nurse = world.as_("practitioner", geriatrician), world.as_("practitioner", nurse)
    patient = f.patient(f.niss("430305", 42), "Wouters", "Simone", "1943-03-05", "nl")
    patient["communication"][0]["preferred"] = True
    patient["communication"].append({"language": {"coding": [
        {"system": "urn:ietf:bcp:47", "code": "fr"}]}})
    pid = world.open_dossier(patient)
    world.grant(pid, world.gp_ref, categories=("identity", "demarches", "network", "fragility"))
    world.grant(pid, "Group/profession-persnurse", categories=("network", "fragility"))
    world.grant(pid, world.sw_ref, categories=("identity", "demarches", "network"))
    world.grant(pid, hospital, categories=("network", "fragility"), actions=("access",))

    family = {name: world.sw.create(f.related_person(pid, "Wouters", name, "family"))["id"]
              for name in ("Jan", "Piet")}
    neighbour = world.sw.create(f.related_person(pid, "Dubois", "Marie", "neighbour"))["id"]
    volunteer = world.sw.create(f.related_person(pid, "Haddad", "Karim", "volunteer"))["id"]
    informal = {f"RelatedPerson/{i}" for i in (*family.values(), neighbour, volunteer)}
    team_id = world.sw.create(team(pid, [
        member(world.gp_ref, "general-practitioner"),
        *[member(f"RelatedPerson/{i}", "family") for i in family.values()],
        member(f"RelatedPerson/{neighbour}", "neighbour"),
        member(f"RelatedPerson/{volunteer}", "volunteer"),
        member(centre, "home-help"),
        member(hospital, "hospital-social-service", True, "2019-05-01", "2019-05-20")]))["id"]
    world.gp.create(assessment(pid, "2027-03-10T09:00:00+01:00", housing="inadequate",
                               lives_alone=True, support=False, mobility_limited=True))

    # after the fall the hospital wants to send her home on Friday afternoon
    ready, reasons, contacts = answer(ward, pid, FRIDAY_4PM)
    assert not ready and reasons == ["high-fragility-no-support", "friday-afternoon"]
    assert contacts == {world.gp_ref, *informal}  # not the service centre: home help only
    # the hospital does not see who she is (no identity grant): English unless asked
    assert texts(ward, pid, FRIDAY_4PM) == [REASON_TEXTS[c]["en"] for c in reasons]
    assert texts(ward, pid, FRIDAY_4PM, language="nl") == [
        REASON_TEXTS[c]["nl"] for c in reasons]
    assert texts(world.gp, pid, FRIDAY_4PM) == [REASON_TEXTS[c]["nl"] for c in reasons]

    # the network as the hospital sees it: the sons far away, the neighbour, the volunteer
    drawn = nodes(network(ward, pid))
    assert "display" not in drawn[f"Patient/{pid}"]["reference"]
    assert drawn[f"RelatedPerson/{neighbour}"]["reference"]["display"] == "Marie Dubois"
    assert drawn[f"RelatedPerson/{neighbour}"]["kind"] == "informal"
    assert drawn[f"RelatedPerson/{family['Jan']}"]["role"] == {"family"}
    assert drawn[centre]["kind"] == "organisation"
    assert drawn[hospital]["current"] is False  # an earlier stay, long over
    assert drawn[hospital]["available-at-discharge"] is False
    assert ward.get(f"/fhir/Patient/{pid}/$demarches").json()["total"] == 0  # no grant

    # the meeting: the home nurse confirms she will be there; support is now confirmed
    current = home_nurse.get(f"/fhir/CareTeam/{team_id}").json()
    current["participant"].append(member(nurse, "home-nurse", True, start="2027-03-15"))
    assert home_nurse.put(f"/fhir/CareTeam/{team_id}", current).status_code == 200
    world.gp.create(assessment(pid, "2027-03-15T09:00:00+01:00", housing="inadequate",
                               lives_alone=True, support=True, mobility_limited=True))
    flag = world.gp.get("/fhir/Flag", params={"patient": pid}).json()["entry"][0]["resource"]
    assert flag["code"]["coding"][0]["code"] == "moderate"

    assert answer(ward, pid, TUESDAY_10AM) == (True, [], {nurse})
    assert answer(ward, pid, HOLIDAY_EVE_2PM) == (False, ["holiday-eve"], {nurse, world.gp_ref})
    assert answer(ward, pid, NATIONAL_DAY_10AM) == (
        False, ["public-holiday"], {nurse, world.gp_ref})
    assert texts(ward, pid, NATIONAL_DAY_10AM, language="fr") == [
        REASON_TEXTS["public-holiday"]["fr"]]
    drawn = nodes(network(home_nurse, pid))
    assert drawn[nurse]["available-at-discharge"] is True
    assert drawn[nurse]["role"] == {"home-nurse"}
    assert drawn[nurse]["period"] == {"start": "2027-03-15"}


# ---------------------------------------------------------------------- Ricarda

def test_ricarda_next_service_does_not_start_from_zero(world: World) -> None:
    debt = org(world, "Service de médiation de dettes", "debt")
    tax = org(world, "SPF Finances", "public-administration")
    school = org(world, "Service de promotion de la santé à l'école", "education")
    mediator = world.add_practitioner("Garcia", "perssocialworker", debt)
    school_nurse = world.add_practitioner("Janssen", "persnurse", school)
    helper, next_service = world.as_("practitioner", mediator), world.as_(
        "practitioner", school_nurse)
    pid = str(helper.create(f.patient(f.niss("850412", 77), "Lopez", "Ricarda", "1985-04-12",
                                      "es"))["id"])
    refused_like_missing(helper, pid)  # opening a dossier gives no access by itself
    world.grant(pid, mediator, categories=("identity", "demarches"))

    plan = helper.create(demarche(pid, "debt-mediation", "completed", tax, mediator,
                                  "decision-positive", start="2027-02-01",
                                  end="2027-02-03"))["id"]
    mediation = helper.create(demarche(pid, "debt-mediation", "in-progress", debt, mediator,
                                       "in-review", start="2027-02-10"))["id"]
    refused_cpas = helper.create(demarche(pid, "cpas-support", "completed", world.org_ref,
                                          mediator, "decision-negative", start="2027-01-20",
                                          end="2027-02-05"))["id"]
    assert timeline_ids(helper, pid) == [refused_cpas, plan, mediation]
    # no assessment is visible to her social worker: that is a reason, not a guess
    ready, reasons, contacts = answer(helper, pid, FRIDAY_4PM)
    assert (ready, reasons, contacts) == (False, ["no-assessment", "friday-afternoon"], set())
    assert texts(helper, pid, TUESDAY_10AM) == [REASON_TEXTS["no-assessment"]["en"]]  # es

    # the GP has no consent: nothing; the school's service, once granted, sees who does what
    refused_like_missing(world.gp, pid)
    assert world.gp.total("/fhir/Task", patient=pid) == 0
    grant = world.grant(pid, school, categories=("demarches",), actions=("access",))
    assert timeline_ids(next_service, pid) == [refused_cpas, plan, mediation]
    owners = [e["resource"]["owner"]["reference"] for e in
              next_service.get(f"/fhir/Patient/{pid}/$demarches").json()["entry"]]
    assert owners == [world.org_ref, tax, debt]
    assert world.citizen(pid).delete(f"/fhir/Consent/{grant['id']}").status_code in (200, 204)
    refused_like_missing(next_service, pid)


# ---------------------------------------------------------------------- anonymity

@pytest.mark.parametrize("patient", [
    {"resourceType": "Patient", "name": [{"use": "anonymous", "given": ["R."]}]},
    {"resourceType": "Patient"},
], ids=["pseudonym", "no-name"])
def test_pseudonymous_dossier_works_end_to_end(world: World, patient: dict[str, Any]) -> None:
    pid = world.open_dossier(patient)
    stored = world.citizen(pid).get(f"/fhir/Patient/{pid}").json()
    assert "identifier" not in stored
    world.grant(pid, world.sw_ref, categories=("identity", "demarches", "network", "fragility"))
    sw = world.sw
    task = sw.create(demarche(pid, "emergency-shelter", "requested", world.org_ref, world.sw_ref,
                              "submitted", start="2027-03-10"))["id"]
    neighbour = sw.create(f.related_person(pid, "Janssens", "Lea", "neighbour"))["id"]
    sw.create(team(pid, [member(world.sw_ref, "case-manager"),
                         member(f"RelatedPerson/{neighbour}", "neighbour", True)]))
    sw.create(assessment(pid, "2027-03-10T09:00:00+01:00", housing="none", lives_alone=True,
                         support=False))
    assert timeline_ids(sw, pid) == [task]
    assert timeline_ids(world.citizen(pid), pid) == [task]
    drawn = nodes(network(sw, pid))
    assert drawn[f"RelatedPerson/{neighbour}"]["available-at-discharge"] is True
    expected_name = "R." if patient.get("name") else None
    assert drawn[f"Patient/{pid}"]["reference"].get("display") == expected_name
    # the neighbour confirmed: high fragility, yet somebody is there on a Tuesday
    assert answer(sw, pid, TUESDAY_10AM) == (True, [], {f"RelatedPerson/{neighbour}"})
    ready, reasons, _ = answer(sw, pid, FRIDAY_4PM)
    assert not ready and reasons == ["friday-afternoon"]
    refused_like_missing(world.gp, pid)


# ---------------------------------------------------------------------- bad input

def _refused(r: Any, field: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert field in " ".join(issue.get("expression", [])), issue
    assert issue["diagnostics"]
    return issue


def _snapshot(api: Api, pid: str) -> list[tuple[str, str, str]]:
    bundle = api.get(f"/fhir/Patient/{pid}/$everything").json()
    return sorted((e["resource"]["resourceType"], e["resource"]["id"],
                   e["resource"]["meta"]["versionId"]) for e in bundle.get("entry", []))


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(world: World) -> None:
    pid = world.consented()
    gp = world.gp
    closed = gp.create(demarche(pid, "medical-card", "completed", world.org_ref, world.gp_ref,
                                "decision-positive", start="2027-01-10", end="2027-01-20"))
    before = _snapshot(gp, pid)

    issue = _refused(gp.put(f"/fhir/Task/{closed['id']}", {**closed, "status": "in-progress"}),
                     "Task.status")
    assert issue["code"] == "business-rule"
    unknown = demarche(pid, "tax-payment-plan", "requested", world.org_ref, world.gp_ref)
    _refused(gp.post("/fhir/Task", unknown), "code")
    no_role = team(pid, [member(world.gp_ref, "general-practitioner")])
    del no_role["participant"][0]["role"]
    _refused(gp.post("/fhir/CareTeam", no_role), "participant")
    wrong_type = assessment(pid, "2027-03-10T09:00:00+01:00", housing="none",
                            lives_alone=True, support=False)
    wrong_type["component"][1] = {"code": {"coding": [{"system": COMPONENT,
                                                       "code": "lives-alone"}]},
                                  "valueCodeableConcept": {"coding": [
                                      {"system": COMPONENT, "code": "none"}]}}
    _refused(gp.post("/fhir/Observation", wrong_type), "component")
    housing_bool = assessment(pid, "2027-03-10T09:00:00+01:00", housing="none",
                              lives_alone=True, support=False)
    housing_bool["component"][0] = {"code": {"coding": [{"system": COMPONENT,
                                                         "code": "housing"}]},
                                    "valueBoolean": False}
    _refused(gp.post("/fhir/Observation", housing_bool), "component")

    for at in (None, "next friday", "2027-03-12T16:00:00", "2027-03-12", "2027-02-30T10:00:00Z",
               "2027-03-12T16:00+01:00"):
        issue = _refused(readiness(gp, pid, at), "at")
        assert "'at'" in issue["diagnostics"] and issue["code"] == "invalid"
    no_body = gp.client.post(f"/fhir/Patient/{pid}/$discharge-readiness", headers=gp.headers)
    _refused(no_body, "at")
    _refused(readiness(gp, pid, FRIDAY_4PM, destination="somewhere"), "destination")
    odd = {"resourceType": "Parameters", "parameter": [
        {"name": "at", "valueDateTime": FRIDAY_4PM},
        {"name": "destination", "valueString": "Organization/x"}]}
    _refused(gp.post(f"/fhir/Patient/{pid}/$discharge-readiness", odd), "destination")
    _refused(readiness(gp, pid, FRIDAY_4PM, language="es"), "language")
    twice = {"resourceType": "Parameters", "parameter": [
        {"name": "at", "valueDateTime": FRIDAY_4PM}, {"name": "at", "valueDateTime": FRIDAY_4PM}]}
    _refused(gp.post(f"/fhir/Patient/{pid}/$discharge-readiness", twice), "at")
    unknown_param = {"resourceType": "Parameters", "parameter": [
        {"name": "at", "valueDateTime": FRIDAY_4PM}, {"name": "note", "valueString": "x"}]}
    _refused(gp.post(f"/fhir/Patient/{pid}/$discharge-readiness", unknown_param), "parameter")
    assert gp.get(f"/fhir/Patient/{pid}/$discharge-readiness").status_code == 405
    assert gp.get(f"/fhir/Patient/{pid}/$demarches", params={"status": "open"}).status_code == 400

    assert _snapshot(gp, pid) == before  # nothing was written by any of these
    assert gp.total("/fhir/Observation", patient=pid) == 0
    assert gp.total("/fhir/Flag", patient=pid) == 0
