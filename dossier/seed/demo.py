"""Demo data for `dossier serve --demo`: Martin, Simone and Ricarda (/work/shared/STORIES.md)
with the services around them, their consents, démarches, networks and fragility.

Loaded on every start, idempotently: every resource has a fixed id and is written only if
it does not exist yet (a resource the person revoked, or a dossier they erased, is never
brought back). Written through the Repository as the server, so validation, the computed
fragility level, the Flag, encryption and the search index apply as to any write. Dates
count from the day of the first load, in Brussels time.

The ids match the embedded dev issuer's demo users (auth/devissuer.py DEMO_USERS):
Patient/martin, Patient/simone, Patient/ricarda, Practitioner/dr-dupont (GP),
Practitioner/sw-janssens (social worker). No real person is described.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from dossier.core.repository import Repository
from dossier.core.runtime import Runtime
from dossier.domain._time import BRUSSELS
from dossier.seed.groups import server_repository

log = logging.getLogger("dossier")

DB = "https://dossier.brussels/fhir"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
HCPARTY = "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty"
AVAILABLE = f"{DB}/StructureDefinition/available-at-discharge"
COMPONENT = f"{DB}/CodeSystem/fragility-component"

Resource = dict[str, Any]


# ---------------------------------------------------------------------- dates

class Days:
    """Dates counted from one day (the day of the first load), in Brussels time."""

    def __init__(self, today: date) -> None:
        self.today = today

    def day(self, offset: int) -> str:
        return (self.today + timedelta(days=offset)).isoformat()

    def at(self, offset: int, hour: int) -> str:
        moment = datetime.combine(self.today + timedelta(days=offset), time(hour),
                                  tzinfo=BRUSSELS)
        return moment.isoformat()


# ---------------------------------------------------------------------- builders

def niss(birth: str, serial: int) -> str:
    """A Belgian national number with a correct check number (born before 2000)."""
    base = f"{birth}{serial:03d}"
    return f"{base}{97 - int(base) % 97:02d}"


def coding(system: str, code: str) -> Resource:
    return {"coding": [{"system": system, "code": code}]}


def organization(oid: str, name: str, sector: str) -> Resource:
    return {"resourceType": "Organization", "id": oid, "active": True, "name": name,
            "type": [coding(f"{DB}/CodeSystem/organisation-sector", sector)]}


def practitioner(pid: str, given: str, family: str) -> Resource:
    return {"resourceType": "Practitioner", "id": pid, "active": True,
            "name": [{"family": family, "given": [given]}]}


def practitioner_role(pid: str, org: str, profession: str) -> Resource:
    return {"resourceType": "PractitionerRole", "id": f"role-{pid}", "active": True,
            "practitioner": {"reference": f"Practitioner/{pid}"},
            "organization": {"reference": f"Organization/{org}"},
            "code": [coding(HCPARTY, profession)], "period": {"start": "2020-01-01"}}


def patient(pid: str, given: str, family: str | None, birth: str, languages: list[str],
            ssin: str | None) -> Resource:
    name: Resource = {"use": "usual", "given": [given]}
    if family:
        name["family"] = family
    res: Resource = {"resourceType": "Patient", "id": pid, "active": True, "name": [name],
                     "birthDate": birth,
                     "communication": [{"language": coding("urn:ietf:bcp:47", code),
                                        "preferred": i == 0}
                                       for i, code in enumerate(languages)]}
    if ssin:
        res["identifier"] = [{"system": SSIN, "value": ssin}]
    return res


def consent(cid: str, pid: str, actor: str | None, categories: tuple[str, ...],
            actions: tuple[str, ...] = ("access", "collect"), kind: str = "permit",
            purpose: str | None = None) -> Resource:
    """One grant or exclusion in the §12 encoding."""
    provision: Resource = {"type": kind}
    if actor:
        provision["actor"] = [{
            "role": coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                           "IRCP"),
            "reference": {"reference": actor}}]
    if actions:
        provision["action"] = [coding("http://terminology.hl7.org/CodeSystem/consentaction", a)
                               for a in actions]
    if categories:
        provision["securityLabel"] = [{"system": f"{DB}/CodeSystem/dossier-category",
                                       "code": c} for c in categories]
    if purpose:
        provision["purpose"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                 "code": purpose}]
    return {"resourceType": "Consent", "id": cid, "status": "active",
            "scope": coding("http://terminology.hl7.org/CodeSystem/consentscope",
                            "patient-privacy"),
            "category": [coding("http://loinc.org", "59284-0")],
            "patient": {"reference": f"Patient/{pid}"},
            "policyRule": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
            "provision": provision}


def task(tid: str, pid: str, code: str, status: str, owner: str, requester: str,
         business: str | None, start: str | None, end: str | None = None,
         authored: str | None = None, part_of: str | None = None) -> Resource:
    res: Resource = {"resourceType": "Task", "id": tid, "status": status, "intent": "order",
                     "code": coding(f"{DB}/CodeSystem/demarche-type", code),
                     "for": {"reference": f"Patient/{pid}"},
                     "authoredOn": authored or start,
                     "owner": {"reference": f"Organization/{owner}"},
                     "requester": {"reference": f"Practitioner/{requester}"}}
    if business:
        res["businessStatus"] = coding(f"{DB}/CodeSystem/demarche-business-status", business)
    if start:
        res["executionPeriod"] = {"start": start, **({"end": end} if end else {})}
    if part_of:
        res["partOf"] = [{"reference": f"Task/{part_of}"}]
    return {k: v for k, v in res.items() if v is not None}


def related_person(rid: str, pid: str, given: str, family: str, role: str) -> Resource:
    return {"resourceType": "RelatedPerson", "id": rid, "active": True,
            "patient": {"reference": f"Patient/{pid}"},
            "relationship": [coding(f"{DB}/CodeSystem/network-role", role)],
            "name": [{"family": family, "given": [given]}]}


def representative(rid: str, pid: str, given: str, family: str, ssin: str,
                   mandate: str) -> Resource:
    """A mandataire (POWATT) the person named (SPEC §13); they sign in with ``ssin``."""
    return {"resourceType": "RelatedPerson", "id": rid, "active": True,
            "patient": {"reference": f"Patient/{pid}"},
            "extension": [{"url": f"{DB}/StructureDefinition/representative-mandate",
                           "valueCode": mandate}],
            "identifier": [{"system": SSIN, "value": ssin}],
            "relationship": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                    "POWATT")],
            "name": [{"family": family, "given": [given]}]}


def member(ref: str, role: str, available: bool = False, start: str | None = None,
           end: str | None = None) -> Resource:
    part: Resource = {"extension": [{"url": AVAILABLE, "valueBoolean": available}],
                      "role": [coding(f"{DB}/CodeSystem/network-role", role)],
                      "member": {"reference": ref}}
    if start or end:
        part["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    return part


def care_team(tid: str, pid: str, participants: list[Resource]) -> Resource:
    return {"resourceType": "CareTeam", "id": tid, "status": "active",
            "subject": {"reference": f"Patient/{pid}"}, "participant": participants}


def fragility(oid: str, pid: str, when: str, performer: str, housing: str,
              **answers: bool) -> Resource:
    components: list[Resource] = [{"code": coding(COMPONENT, "housing"),
                                   "valueCodeableConcept": coding(COMPONENT, housing)}]
    components += [{"code": coding(COMPONENT, name.replace("_", "-")), "valueBoolean": value}
                   for name, value in answers.items()]
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": coding(f"{DB}/CodeSystem/dossier-observation", "social-fragility"),
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "performer": [{"reference": f"Practitioner/{performer}"}],
            "component": components}


# ---------------------------------------------------------------------- the directory

ORGANIZATIONS = [
    ("cpas-midi", "CPAS de Bruxelles-Midi", "social"),
    ("mm-canal", "Maison médicale du Canal", "health"),
    ("hospital-senne", "Hôpital de la Senne", "health"),
    ("prison-social", "Service psychosocial de la prison", "justice"),
    ("centre-tilleuls", "Centre de services Les Tilleuls", "elderly-care"),
    ("debt-service", "Service de médiation de dettes Bruxelles-Sud", "debt"),
    ("housing-canal", "Agence immobilière sociale du Canal", "housing"),
    ("shelter-porte", "Maison d'accueil La Porte", "homelessness"),
    ("mrs-glycines", "MRS Les Glycines", "elderly-care"),
    ("home-care", "Soins à domicile Bruxelles", "health"),
    ("onem", "Office national de l'emploi", "employment"),
    ("spf-finances", "SPF Finances", "public-administration"),
]

PRACTITIONERS = [  # id, given, family, organisation, profession (CD-HCPARTY)
    ("dr-dupont", "Anne", "Dupont", "mm-canal", "persphysician"),
    ("sw-janssens", "Marc", "Janssens", "cpas-midi", "perssocialworker"),
    ("sw-lambert", "Sophie", "Lambert", "prison-social", "perssocialworker"),
    ("psy-claes", "Lucas", "Claes", "mm-canal", "perspsychologist"),
    ("dr-maes", "Hilde", "Maes", "hospital-senne", "persphysician"),
    ("nurse-peeters", "Els", "Peeters", "home-care", "persnurse"),
    ("coord-haddad", "Nadia", "Haddad", "centre-tilleuls", "perssocialworker"),
    ("sw-garcia", "Laura", "Garcia", "debt-service", "perssocialworker"),
]


SERVICES = [  # id, organisation, service type, name, coverage areas, languages, eligibility
    ("svc-debt-sud", "debt-service", "debt-mediation", "Médiation de dettes — Bruxelles-Sud",
     ("bassin-sud",), ("fr", "es", "nl"), ("brussels-resident", "free-of-charge")),
    ("svc-cpas-midi", "cpas-midi", "social-support", "Service social du CPAS",
     ("commune-bruxelles-pentagone", "commune-bruxelles-laeken",
      "commune-bruxelles-neder-over-heembeek", "commune-bruxelles-haren",
      "commune-bruxelles-sud", "commune-bruxelles-nord-est"), ("fr", "nl"),
     ("commune-resident",)),
    ("svc-home-nursing", "home-care", "home-nursing", "Soins infirmiers à domicile",
     ("brussels-region",), ("fr", "nl", "en"), ("brussels-resident",)),
    ("svc-tilleuls", "centre-tilleuls", "elderly-day-centre", "Centre de jour Les Tilleuls",
     ("bassin-sud-est", "bassin-sud"), ("fr", "nl"), ("older-people",)),
    ("svc-mm-canal", "mm-canal", "general-medicine", "Maison médicale du Canal",
     ("quartier-gare-de-l-ouest", "quartier-karreveld", "commune-molenbeek-saint-jean"),
     ("fr", "nl", "ar"), ("commune-resident", "any-residence-status")),
    ("svc-mm-canal-psy", "mm-canal", "mental-health", "Consultations psychologiques",
     ("commune-molenbeek-saint-jean",), ("fr", "ar"), ("on-referral",)),
    ("svc-shelter", "shelter-porte", "emergency-shelter", "Maison d'accueil La Porte",
     ("brussels-region",), ("fr", "nl", "en"), ("homeless", "any-residence-status")),
    ("svc-housing-canal", "housing-canal", "housing-support", "Agence immobilière sociale",
     ("bassin-centre-ouest",), ("fr", "nl"), ("low-income",)),
]


def service(sid: str, org: str, kind: str, name: str, areas: tuple[str, ...],
            languages: tuple[str, ...], eligibility: tuple[str, ...]) -> Resource:
    return {"resourceType": "HealthcareService", "id": sid, "active": True,
            "providedBy": {"reference": f"Organization/{org}"}, "name": name,
            "type": [coding(f"{DB}/CodeSystem/service-type", kind)],
            "coverageArea": [{"reference": f"Location/{a}"} for a in areas],
            "communication": [coding("urn:ietf:bcp:47", c) for c in languages],
            "eligibility": [{"code": coding(f"{DB}/CodeSystem/service-eligibility", e)}
                            for e in eligibility],
            "availableTime": [{"daysOfWeek": ["mon", "tue", "thu"],
                               "availableStartTime": "09:00:00",
                               "availableEndTime": "12:30:00"}],
            "referralMethod": [coding(
                "http://terminology.hl7.org/CodeSystem/service-referral-method", "phone")]}


def directory() -> list[Resource]:
    out = [organization(*o) for o in ORGANIZATIONS]
    for pid, given, family, org, profession in PRACTITIONERS:
        out += [practitioner(pid, given, family), practitioner_role(pid, org, profession)]
    return out + [service(*s) for s in SERVICES]


def simone_discharge(d: Days) -> list[Resource]:
    """Her return home is planned by her case manager for tomorrow 11:00; the network was
    asked ($discharge-plan) and her home nurse confirmed."""
    from dossier.coordination.discharge import PLAN_CODE
    from dossier.coordination.messages import message

    now = datetime.now(BRUSSELS)
    plan = {"resourceType": "Task", "id": "simone-discharge", "status": "in-progress",
            "intent": "plan", "code": coding(f"{DB}/CodeSystem/demarche-type", PLAN_CODE),
            "for": {"reference": "Patient/simone"}, "authoredOn": d.at(-1, 16),
            "requester": {"reference": "Practitioner/coord-haddad"},
            "executionPeriod": {"start": d.at(1, 11)}}
    out: list[Resource] = [plan]
    for who in ("dr-dupont", "sw-janssens", "nurse-peeters", "dr-maes"):
        out.append({**message("simone", f"Practitioner/{who}", "discharge-request",
                              ["Task/simone-discharge"], now,
                              sender="Practitioner/coord-haddad"),
                    "id": f"simone-discharge-ask-{who}"})
    out.append({**message("simone", "Practitioner/coord-haddad", "discharge-confirmation",
                          ["Task/simone-discharge"], now, sender="Practitioner/nurse-peeters",
                          in_response_to="Communication/simone-discharge-ask-nurse-peeters"),
                "id": "simone-discharge-nurse-yes"})
    return out


# ---------------------------------------------------------------------- the three people

ALL = ("identity", "demarches", "network", "fragility", "psy")
NO_PSY = ("identity", "demarches", "network", "fragility")


def martin(d: Days) -> list[Resource]:
    """59, released from pre-trial detention on crutches, locked out, no one at release."""
    p = "martin"
    return [
        patient(p, "Martin", "Lemaire", "1967-03-12", ["fr"], niss("670312", 151)),
        consent("martin-gp", p, "Practitioner/dr-dupont", ALL),
        consent("martin-cpas", p, "Practitioner/sw-janssens", NO_PSY),
        consent("martin-prison", p, "Organization/prison-social",
                ("demarches", "network", "fragility")),
        consent("martin-psy", p, "Practitioner/psy-claes", ("demarches", "network", "psy")),
        consent("martin-hospital", p, "Organization/hospital-senne", ("network", "fragility"),
                ("access",)),
        related_person("martin-brother", p, "Paul", "Lemaire", "family"),
        fragility("martin-fragility-1", p, d.at(-11, 10), "sw-lambert", "none",
                  lives_alone=True, support_on_return=False, mobility_limited=True,
                  language_barrier=False, income_loss=True, institution_exit=True),
        care_team("martin-network", p, [
            member("Practitioner/sw-lambert", "social-worker", start=d.day(-100),
                   end=d.at(-10, 12)),
            member("Practitioner/dr-dupont", "general-practitioner"),
            member("Practitioner/sw-janssens", "case-manager"),
            member("RelatedPerson/martin-brother", "family"),
            member("Organization/mrs-glycines", "care-home", start=d.day(-7)),
        ]),
        care_team("martin-psy-network", p, [  # mental health: a separate, psy-labelled team
            member("Practitioner/psy-claes", "psychologist", start=d.day(-9))]),
        task("martin-benefits", p, "unemployment-benefits", "in-progress", "onem", "sw-lambert",
             "awaiting-documents", d.day(-100)),
        task("martin-shelter", p, "emergency-shelter", "completed", "shelter-porte",
             "sw-janssens", "decision-positive", d.at(-10, 18), d.day(-7)),
        task("martin-housing", p, "housing-application", "on-hold", "housing-canal",
             "sw-janssens", "waiting-list", d.day(-8)),
        task("martin-care-home", p, "care-home-admission", "in-progress", "mrs-glycines",
             "sw-janssens", "appointment-set", d.day(-7)),
        task("martin-cpas", p, "cpas-support", "completed", "cpas-midi", "sw-janssens",
             "decision-positive", d.day(-9), d.day(-2)),
        task("martin-cpas-2", p, "cpas-support", "requested", "cpas-midi", "sw-janssens",
             "awaiting-documents", None, authored=d.at(-1, 9), part_of="martin-cpas"),
        task("martin-mental-health", p, "mental-health-follow-up", "in-progress", "mm-canal",
             "psy-claes", "appointment-set", d.day(-9)),
    ]


def simone(d: Days) -> list[Resource]:
    """83, alone on a third floor without a lift, back from hospital after a fall."""
    p = "simone"
    sons = [("simone-son-jan", "Jan"), ("simone-son-piet", "Piet")]
    return [
        patient(p, "Simone", "Wouters", "1943-05-02", ["nl", "fr"], niss("430502", 84)),
        consent("simone-gp", p, "Practitioner/dr-dupont", NO_PSY),
        consent("simone-cpas", p, "Practitioner/sw-janssens",
                ("identity", "demarches", "network")),
        consent("simone-nurses", p, "Group/profession-persnurse", ("network", "fragility")),
        consent("simone-hospital", p, "Organization/hospital-senne", ("network", "fragility"),
                ("access",)),
        consent("simone-centre", p, "Organization/centre-tilleuls",
                ("demarches", "network", "fragility")),
        *[related_person(rid, p, given, "Wouters", "family") for rid, given in sons],
        related_person("simone-neighbour", p, "Marie", "Dubois", "neighbour"),
        # Piet, far away, decides for her: he signs in with his own national number
        representative("simone-mandate-piet", p, "Piet", "Wouters", niss("700301", 55),
                       "decide"),
        related_person("simone-volunteer", p, "Karim", "Benali", "volunteer"),
        fragility("simone-fragility-1", p, d.at(-5, 11), "dr-maes", "inadequate",
                  lives_alone=True, support_on_return=False, mobility_limited=True,
                  language_barrier=False, income_loss=False, institution_exit=True),
        fragility("simone-fragility-2", p, d.at(-1, 15), "coord-haddad", "inadequate",
                  lives_alone=True, support_on_return=True, mobility_limited=True,
                  language_barrier=False, income_loss=False, institution_exit=True),
        care_team("simone-network", p, [
            member("Practitioner/dr-dupont", "general-practitioner"),
            *[member(f"RelatedPerson/{rid}", "family") for rid, _ in sons],
            member("RelatedPerson/simone-neighbour", "neighbour"),
            member("RelatedPerson/simone-volunteer", "volunteer"),
            member("Organization/centre-tilleuls", "home-help"),
            member("Practitioner/coord-haddad", "case-manager", start=d.day(-2)),
            member("Practitioner/sw-janssens", "social-worker", start=d.day(-2)),
            member("Practitioner/dr-maes", "medical-specialist", start=d.day(-6)),
            member("Practitioner/nurse-peeters", "home-nurse", True, start=d.day(-1)),
        ]),
        task("simone-home-care", p, "home-care", "in-progress", "home-care", "dr-dupont",
             "appointment-set", d.day(-2)),
        task("simone-allowance", p, "disability-allowance", "requested", "cpas-midi",
             "sw-janssens", "submitted", d.day(-1)),
        *simone_discharge(d),
    ]


def ricarda(d: Days) -> list[Resource]:
    """Cleans houses, too much income for the CPAS; a tax demand, debts. No national number:
    she chose a dossier that does not carry it."""
    p = "ricarda"
    return [
        patient(p, "Ricarda", None, "1985-04-12", ["es", "fr"], None),
        consent("ricarda-debt", p, "Practitioner/sw-garcia", ("identity", "demarches")),
        consent("ricarda-cpas", p, "Practitioner/sw-janssens", ("demarches",), ("access",)),
        consent("ricarda-no-btg", p, None, (), (), kind="deny", purpose="BTG"),
        task("ricarda-cpas", p, "cpas-support", "completed", "cpas-midi", "sw-janssens",
             "decision-negative", d.day(-60), d.day(-45)),
        task("ricarda-tax-plan", p, "debt-mediation", "completed", "spf-finances",
             "sw-garcia", "decision-positive", d.day(-40), d.day(-38)),
        task("ricarda-debts", p, "debt-mediation", "in-progress", "debt-service",
             "sw-garcia", "in-review", d.day(-30)),
    ]


PEOPLE: list[Callable[[Days], list[Resource]]] = [martin, simone, ricarda]


# ---------------------------------------------------------------------- loading

def _put(repo: Repository, resource: Resource) -> bool:
    """Write the resource unless its id exists (live, deleted or erased). True if written."""
    if repo.current_row(resource["resourceType"], resource["id"]) is not None:
        return False
    if resource["resourceType"] == "Communication":  # a message to one professional
        repo.create_server_resource(resource,
                                    addressee=resource["recipient"][0]["reference"])
        return True
    repo.update(resource["resourceType"], resource["id"], resource)
    return True


def load_demo(runtime: Runtime, today: date | None = None) -> int:
    """Load the demo directory and people; returns how many resources were written."""
    days = Days(today or datetime.now(BRUSSELS).date())
    written = 0
    with Session(runtime.engine) as session, session.begin():
        repo = server_repository(runtime, session)
        written += sum(_put(repo, r) for r in directory())
    for person in PEOPLE:
        resources = person(days)
        with Session(runtime.engine) as session, session.begin():
            repo = server_repository(runtime, session)
            row = repo.current_row("Patient", resources[0]["id"])
            if row is not None and row.deleted:
                continue  # the person erased or closed their dossier: never bring it back
            written += sum(_put(repo, r) for r in resources)
    if written:
        log.info("demo data: %d resources written", written)
    return written
