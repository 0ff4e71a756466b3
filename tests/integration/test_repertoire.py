"""The territory and the répertoire over HTTP (issue 18, SPEC §14)."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import World

ST = "https://dossier.brussels/fhir/CodeSystem/service-type"
EL = "https://dossier.brussels/fhir/CodeSystem/service-eligibility"


def service(org_ref: str, code: str, areas: list[str], langs: list[str],
            name: str = "Service") -> dict[str, Any]:
    return {"resourceType": "HealthcareService", "active": True,
            "providedBy": {"reference": org_ref}, "name": name,
            "type": [{"coding": [{"system": ST, "code": code}]}],
            "coverageArea": [{"reference": f"Location/{a}"} for a in areas],
            "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": c}]}
                              for c in langs],
            "eligibility": [{"code": {"coding": [{"system": EL, "code": "brussels-resident"}]}}],
            "availableTime": [{"daysOfWeek": ["mon", "thu"], "availableStartTime": "09:00:00",
                               "availableEndTime": "12:30:00"}],
            "telecom": [{"system": "phone", "value": "+32 2 000 00 00"}],
            "comment": "Sans rendez-vous le lundi matin."}


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", ())
            if e.get("search", {}).get("mode", "match") == "match"}


def test_the_territory_is_shipped_and_linked(world: World) -> None:
    r = world.sw.get("/fhir/Location", params={"partof": "Location/brussels-region"})
    assert r.status_code == 200, r.text
    assert ids(r.json()) == {"bassin-nord", "bassin-nord-est", "bassin-centre-ouest",
                             "bassin-sud", "bassin-sud-est"}
    communes = world.sw.get("/fhir/Location", params={
        "type": "commune", "_count": "100"}).json()
    assert communes["total"] == 18  # Bruxelles-Ville is shipped in parts, one per bassin
    parts = world.sw.get("/fhir/Location", params={"name": "Bruxelles-Ville"}).json()
    bassins = {e["resource"]["partOf"]["reference"] for e in parts["entry"]}
    assert {"Location/bassin-nord", "Location/bassin-centre-ouest", "Location/bassin-sud",
            "Location/bassin-nord-est"} <= bassins
    ixl = world.citizen("nobody").get("/fhir/Location/commune-ixelles")
    assert ixl.status_code == 200 and ixl.json()["address"]["postalCode"] == "1050"
    assert world.anonymous.get("/fhir/Location/commune-ixelles").status_code == 401


def test_only_an_admin_keeps_the_territory(world: World) -> None:
    loc = world.sw.get("/fhir/Location/bassin-sud").json()
    assert world.sw.put("/fhir/Location/bassin-sud", loc).status_code == 403
    loc["alias"] = [*loc["alias"], "Zuid"]
    assert world.admin.put("/fhir/Location/bassin-sud", loc).status_code == 200


def test_services_found_by_need_place_and_language(world: World) -> None:
    spanish = world.admin.create(service(world.org_ref, "debt-mediation",
                                         ["commune-saint-gilles"], ["fr", "es"]))
    french = world.admin.create(service(world.org_ref, "debt-mediation",
                                        ["commune-forest"], ["fr"]))
    north = world.admin.create(service(world.org_ref, "debt-mediation",
                                       ["commune-jette"], ["es"]))
    quartier = world.admin.create(service(world.org_ref, "home-nursing",
                                          ["quartier-cureghem"], ["nl"]))
    regional = world.admin.create(service(world.org_ref, "legal-aid",
                                          ["brussels-region"], ["fr", "nl"]))

    def find(**params: str) -> set[str]:
        r = world.citizen("someone").get("/fhir/HealthcareService", params=params)
        assert r.status_code == 200, r.text
        return ids(r.json())

    # "debt mediation in Spanish in bassin Sud"
    assert find(type="debt-mediation", language="es",
                **{"coverage-area": "Location/bassin-sud"}) == {spanish["id"]}
    assert find(**{"service-type": f"{ST}|debt-mediation"}) == {
        spanish["id"], french["id"], north["id"]}
    # containment: the region finds everything, a bassin what covers a place inside it
    assert find(**{"coverage-area": "Location/brussels-region"}) == {
        spanish["id"], french["id"], north["id"], quartier["id"], regional["id"]}
    assert find(**{"coverage-area": "Location/bassin-centre-ouest"}) == {quartier["id"]}
    assert find(**{"coverage-area": "Location/commune-anderlecht"}) == {quartier["id"]}
    assert find(**{"coverage-area": "Location/commune-forest,Location/commune-jette"}) == {
        french["id"], north["id"]}
    # a postal code: services covering that place, a place inside it or above it
    assert find(**{"address-postalcode": "1060"}) == {spanish["id"], regional["id"]}
    assert find(**{"address-postalcode": "1070"}) == {quartier["id"], regional["id"]}
    # what serves a place: covering it, a place inside it, or one above it
    assert find(serves="Location/commune-saint-gilles") == {spanish["id"], regional["id"]}
    assert find(serves="Location/bassin-centre-ouest") == {quartier["id"], regional["id"]}
    assert find(serves="Location/quartier-cureghem", type="home-nursing") == {quartier["id"]}
    assert find(organization=world.org_ref, language="nl") == {quartier["id"], regional["id"]}
    assert find(eligibility="brussels-resident", type="legal-aid") == {regional["id"]}


def test_organisations_by_postal_code(world: World) -> None:
    org = world.admin.create({"resourceType": "Organization", "name": "CPAS de Saint-Gilles",
                              "address": [{"postalCode": "1060", "city": "Saint-Gilles"}]})
    r = world.sw.get("/fhir/Organization", params={"address-postalcode": "1060"})
    assert r.status_code == 200, r.text
    assert ids(r.json()) == {org["id"]}


def test_bad_services_are_named(world: World) -> None:
    bad_type = service(world.org_ref, "debt-mediation", ["commune-forest"], ["fr"])
    bad_type["type"][0]["coding"][0]["code"] = "astrology"
    r = world.admin.post("/fhir/HealthcareService", bad_type)
    assert r.status_code == 422 and "HealthcareService.type" in r.text
    nowhere = service(world.org_ref, "debt-mediation", ["atlantis"], ["fr"])
    r = world.admin.post("/fhir/HealthcareService", nowhere)
    assert r.status_code == 422 and "coverageArea" in r.text
    not_a_place = service(world.org_ref, "debt-mediation", [], ["fr"])
    not_a_place["coverageArea"] = [{"reference": world.org_ref}]
    r = world.admin.post("/fhir/HealthcareService", not_a_place)
    assert r.status_code == 422 and "coverageArea" in r.text
    assert world.citizen("someone").post("/fhir/HealthcareService", service(
        world.org_ref, "debt-mediation", ["commune-forest"], ["fr"])).status_code == 403


def test_an_organisations_members_keep_its_services(world: World) -> None:
    other = world.admin.create({"resourceType": "Organization", "name": "ASBL Autre"})
    mine = world.sw.create(service(world.org_ref, "home-care", ["commune-uccle"], ["fr"]))
    mine["name"] = "Aide à domicile d'Uccle"
    assert world.sw.put(f"/fhir/HealthcareService/{mine['id']}", mine).status_code == 200
    moved = dict(mine, providedBy={"reference": f"Organization/{other['id']}"})
    assert world.sw.put(f"/fhir/HealthcareService/{mine['id']}", moved).status_code == 403
    assert world.sw.post("/fhir/HealthcareService", service(
        f"Organization/{other['id']}", "home-care", ["commune-uccle"], ["fr"])).status_code == 403
    outsider = world.as_("practitioner", world.add_practitioner(
        "Ailleurs", "persnurse", f"Organization/{other['id']}"))
    assert outsider.put(f"/fhir/HealthcareService/{mine['id']}", mine).status_code == 403
    assert outsider.delete(f"/fhir/HealthcareService/{mine['id']}").status_code == 403
    assert world.sw.delete(f"/fhir/HealthcareService/{mine['id']}").status_code in (200, 204)
