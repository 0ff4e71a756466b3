"""`dossier serve --demo`: the demo people load on start, loading again changes nothing, and
the dev issuer's demo users read exactly what the demo consents allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from auth.devissuer import DEMO_USERS
from dossier.app import create_app
from dossier.db.models import resource_versions, resources
from dossier.seed.demo import load_demo
from tests.integration.conftest import Api, make_settings

DB = "https://dossier.brussels/fhir"


def _counts(app: Any) -> tuple[int, int]:
    with app.state.runtime.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(resources)).scalar_one(),
                conn.execute(select(func.count()).select_from(resource_versions)).scalar_one())


def _as(app: Any, client: TestClient, user_id: str) -> Api:
    user = next(u for u in DEMO_USERS if u.id == user_id)
    return Api(client, app.state.dev_issuer.mint(user.fhir_user, list(user.roles), None, 3600))


def _codes(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["code"]["coding"][0]["code"] for e in bundle.get("entry", [])]


def test_demo_loads_once_and_demo_users_see_what_consent_allows(
        data_dir: Path, database_url: str | None) -> None:
    settings = make_settings(data_dir, database_url, demo=True)
    app = create_app(settings)
    try:
        loaded = _counts(app)
        assert loaded[0] > 50
        with TestClient(app) as client:
            gp, sw = _as(app, client, "dr-dupont"), _as(app, client, "sw-janssens")
            martin = _as(app, client, "martin")

            # every FHIR id the demo users name exists (Person/ are operator accounts)
            named = [u.fhir_user.split("/") for u in DEMO_USERS
                     if u.fhir_user and not u.fhir_user.startswith("Person/")]
            assert len(named) == 11  # 3 citizens and the 8 demo practitioners
            with app.state.runtime.engine.connect() as conn:
                for rtype, rid in named:
                    assert conn.execute(select(resources.c.res_id).where(
                        resources.c.res_type == rtype, resources.c.res_id == rid,
                        resources.c.deleted.is_(False))).first() is not None, (rtype, rid)

            # demo citizens sign in by national number; Piet, Simone's mandataire, has
            # no dossier of his own and reaches hers
            piet = next(u for u in DEMO_USERS if u.id == "piet")
            piet_api = Api(client, app.state.dev_issuer.mint(None, ["citizen"], None, 3600,
                                                             niss=piet.niss))
            listed = piet_api.get("/fhir/Patient").json()
            assert [e["resource"]["id"] for e in listed["entry"]] == ["simone"]
            martin_by_niss = Api(client, app.state.dev_issuer.mint(
                None, ["citizen"], None, 3600, niss=DEMO_USERS[0].niss))
            assert martin_by_niss.get("/fhir/Patient/martin").status_code == 200

            # the GP sees Martin's mental-health démarche; the CPAS social worker does not
            gp_view = gp.get("/fhir/Patient/martin/$demarches").json()
            sw_view = sw.get("/fhir/Patient/martin/$demarches").json()
            assert "mental-health-follow-up" in _codes(gp_view)
            assert "mental-health-follow-up" not in _codes(sw_view)
            assert sw_view["total"] == gp_view["total"] - 1 == 6
            assert sw_view["entry"][-1]["resource"]["partOf"] == [{"reference":
                                                                   "Task/martin-cpas"}]
            # Ricarda granted the social worker her démarches only, and the GP nothing
            assert sw.get("/fhir/Patient/ricarda/$demarches").json()["total"] == 3
            assert sw.get("/fhir/Patient/ricarda").status_code == 404
            assert gp.get("/fhir/Patient/ricarda/$demarches").status_code == 404
            assert gp.get("/fhir/Patient/ricarda").status_code == 404
            # Simone: the GP reads the network and the fragility; the Flag was computed
            flag = gp.get("/fhir/Flag", params={"patient": "simone"}).json()
            assert flag["entry"][0]["resource"]["status"] == "active"
            drawn = gp.get("/fhir/Patient/simone/$network").json()
            targets = {p["part"][0]["valueReference"]["reference"]
                       for p in drawn["parameter"] if p["name"] == "node"}
            assert {"RelatedPerson/simone-neighbour", "Practitioner/nurse-peeters"} <= targets
            ready = gp.post("/fhir/Patient/simone/$discharge-readiness", {
                "resourceType": "Parameters",
                "parameter": [{"name": "at", "valueDateTime": "2027-07-21T10:00:00+02:00"}]})
            assert ready.status_code == 200, ready.text
            reasons = [p["valueCodeableConcept"]["coding"][0]["code"]
                       for p in ready.json()["parameter"] if p["name"] == "reason"]
            assert reasons == ["public-holiday"]  # the home nurse is confirmed
            # the person sees their whole dossier, consents included
            everything = martin.get("/fhir/Patient/martin/$everything").json()
            types = {e["resource"]["resourceType"] for e in everything["entry"]}
            assert {"Patient", "Consent", "Task", "CareTeam", "Observation", "Flag",
                    "RelatedPerson"} <= types
            assert martin.get("/fhir/Patient/simone").status_code == 404
            # Ricarda refused break-the-glass: it answers as for no dossier
            assert sw.post("/fhir/Patient/ricarda/$break-glass", {
                "resourceType": "Parameters",
                "parameter": [{"name": "reason", "valueString": "test"}]}).status_code == 404
    finally:
        app.state.runtime.engine.dispose()

    again = create_app(settings)  # a second start on the same data
    try:
        assert _counts(again) == loaded
        assert load_demo(again.state.runtime) == 0
        assert _counts(again) == loaded
    finally:
        again.state.runtime.engine.dispose()
