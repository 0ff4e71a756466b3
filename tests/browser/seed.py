"""Demo-like data for the portal tests, written over the real FHIR API by the people who
may write it: the operator keeps the directory, a social worker opens Martin's dossier
and, once Martin consents, records what happened. Ids match the dev issuer's demo users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests import factories as f

FHIR = "application/fhir+json"
ORG_MM = "Organization/mm-midi"
ORG_CPAS = "Organization/cpas-saint-gilles"
GP = "Practitioner/dr-dupont"
SW = "Practitioner/sw-janssens"
MARTIN = "martin"
SIMONE = "simone"
MARTIN_FAMILY = "Vandercammen"
MARTIN_NISS = f.niss("650312", 457)
NEIGHBOUR_FAMILY = "Peeters"
PASSWORD = "portal test password"


@dataclass
class Seeded:
    martin: str
    simone: str
    gp: str
    sw: str
    names: tuple[str, ...]  # personal data that must never appear in a URL


class Writer:
    def __init__(self, http: Any, token: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR}

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        path = f"/fhir/{resource['resourceType']}/{resource['id']}"
        r = self.http.put(path, json=resource, headers=self.headers)
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    def post(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/fhir/{resource['resourceType']}", json=resource,
                           headers=self.headers)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def _with_id(resource: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**resource, "id": rid}


def open_dossier(runtime: Any, patient: dict[str, Any]) -> None:
    """A dossier with a chosen id (the demo users' ids): written as the server, because
    through the API a PUT never creates inside a dossier."""
    from sqlalchemy.orm import Session

    from dossier.seed.groups import server_repository

    with Session(runtime.engine) as session, session.begin():
        server_repository(runtime, session).update("Patient", patient["id"], patient)


def seed(http: Any, app: Any) -> Seeded:
    """Directory, two dossiers, Martin's grant to his social worker and her entries; the
    demo people's sign-in accounts (password ``PASSWORD``)."""
    from dossier.seed.accounts import load_demo_accounts
    from dossier.stores.issuer import DatabaseIssuerState

    load_demo_accounts(DatabaseIssuerState(app.state.runtime.engine), PASSWORD)
    issuer = app.state.dev_issuer
    admin = Writer(http, issuer.mint("Person/admin", ["admin"], None, 3600))
    admin.put(_with_id(f.organization("Maison médicale du Midi", "health"), "mm-midi"))
    admin.put(_with_id(f.organization("CPAS de Saint-Gilles", "social"), "cpas-saint-gilles"))
    admin.put(_with_id(f.practitioner("Dupont", "Anne"), "dr-dupont"))
    admin.put(_with_id(f.practitioner("Janssens", "Els"), "sw-janssens"))
    admin.put(_with_id(f.practitioner_role(GP, ORG_MM, "persphysician"), "role-dr-dupont"))
    admin.put(_with_id(f.practitioner_role(SW, ORG_CPAS, "perssocialworker"),
                       "role-sw-janssens"))
    sw = Writer(http, issuer.mint(SW, ["practitioner"], None, 3600))
    open_dossier(app.state.runtime, _with_id(
        f.patient(MARTIN_NISS, MARTIN_FAMILY, "Martin", "1965-03-12"), MARTIN))
    open_dossier(app.state.runtime, _with_id(
        f.patient(f.niss("400101", 12), "Wouters", "Simone", "1940-01-01", "nl"), SIMONE))
    martin = Writer(http, issuer.mint(f"Patient/{MARTIN}", ["citizen"], None, 3600))
    martin.post(f.consent(MARTIN, SW, categories=("identity", "demarches", "network",
                                                 "fragility"),
                          actions=("access", "collect")))
    patient = f"Patient/{MARTIN}"
    sw.post(f.task(patient, "cpas-support", "in-progress", owner=ORG_CPAS,
                   authored="2026-10-05T10:00:00+02:00", business="in-review"))
    sw.post(f.task(patient, "unemployment-benefits", "completed",
                   authored="2026-09-01T09:00:00+02:00", business="decision-positive"))
    neighbour = sw.post(f.related_person(MARTIN, NEIGHBOUR_FAMILY, "Marc", "neighbour"))
    sw.post(f.care_team(patient, [(GP, "general-practitioner", True),
                                  (f"RelatedPerson/{neighbour['id']}", "neighbour", False),
                                  (ORG_CPAS, "social-worker", False)]))
    sw.post(f.fragility(patient, housing="none", lives_alone=True, support=False))
    return Seeded(MARTIN, SIMONE, GP, SW, (MARTIN_FAMILY, MARTIN_NISS, NEIGHBOUR_FAMILY,
                                           "Wouters"))
