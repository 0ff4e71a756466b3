"""The bench's dossier: a throwaway database, the apps on it, and realistic data seeded
through the FHIR API (the same path a client takes: validation, consent, sealing, audit).

Apps are driven in-process through Starlette's TestClient (httpx over ASGI, no sockets),
one request at a time, with the audit sequencer and the notifier threads off so that
nothing runs behind the timed requests unless a benchmark runs it on purpose.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_sealer import ClearSealer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dossier.app import create_app
from dossier.notify.worker import run_pending
from dossier.settings import load_settings

PG_ADMIN_URL = os.environ.get("DOSSIER_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FHIR = "application/fhir+json"
DB = "https://dossier.brussels/fhir"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
HCPARTY = "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty"
CATEGORIES = ("identity", "demarches", "network", "fragility", "psy")
FAMILIES = ("Vandenberghe", "Peeters", "Janssens", "Maes", "Dubois", "Lambert", "El Amrani",
            "Nowak", "Diallo", "Rossi")
GIVEN = ("Marie-Claire", "Jean", "Fatima", "Luc", "Aïcha", "Piotr", "Sofia", "Mamadou")
STREETS = ("Rue de la Victoire", "Chaussée de Waterloo", "Avenue Louise", "Rue Haute")
DEMARCHES = ("housing-application", "cpas-support", "health-insurance", "debt-mediation",
             "home-care", "legal-aid")
TASK_STATUSES = ("in-progress", "in-progress", "requested")


# ---------------------------------------------------------------------- databases
def postgres_reachable() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means: not reachable
        return False


@contextmanager
def throwaway_database(kind: str) -> Iterator[tuple[Path, str | None]]:
    """A fresh data directory and, for PostgreSQL, a fresh database dropped at the end.
    Yields (data_dir, database_url); the URL is None for SQLite (the embedded default)."""
    with tempfile.TemporaryDirectory(prefix="dossier-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        if kind == "sqlite":
            yield data_dir, None
            return
        name = f"dossier_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield data_dir, make_url(PG_ADMIN_URL).set(database=name).render_as_string(
                hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def build_app(data_dir: Path, database_url: str | None) -> FastAPI:
    """The app exactly as `dossier serve` builds it, minus the background threads."""
    overrides: dict[str, Any] = {"data_dir": data_dir, "base_url": "http://testserver",
                                 "audit_sequencer_seconds": 0, "notify_worker_seconds": 0,
                                 "maintenance_seconds": 0}
    if database_url:
        overrides["database_url"] = database_url
    return create_app(load_settings(**overrides))


# ---------------------------------------------------------------------- FHIR data
def niss(i: int) -> str:
    """A distinct Belgian national number with a correct check number (born 1940-1989)."""
    base = f"{40 + i % 50:02d}{1 + i % 12:02d}{1 + i % 28:02d}{1 + i // 2100:03d}"
    return f"{base}{97 - int(base) % 97:02d}"


def patient(i: int) -> dict[str, Any]:
    """A Patient with all six elements the dossier seals (identifier … address)."""
    n = niss(i)
    return {
        "resourceType": "Patient", "active": True,
        "identifier": [{"system": SSIN, "value": n}],
        "name": [{"use": "official", "family": FAMILIES[i % len(FAMILIES)],
                  "given": [GIVEN[i % len(GIVEN)], GIVEN[(i + 3) % len(GIVEN)]]}],
        "telecom": [{"system": "phone", "value": f"+32470{i:06d}", "use": "mobile"},
                    {"system": "email", "value": f"person{i}@example.be"}],
        "gender": ("female", "male")[i % 2],
        "birthDate": f"19{n[0:2]}-{n[2:4]}-{n[4:6]}",
        "address": [{"use": "home", "line": [f"{STREETS[i % len(STREETS)]} {1 + i % 200}"],
                     "city": "Saint-Gilles", "postalCode": "1060", "country": "BE"}],
        "communication": [{"language": {"coding": [
            {"system": "urn:ietf:bcp:47", "code": ("fr", "nl")[i % 2]}]}}],
    }


def grant(patient_id: str, actor: str) -> dict[str, Any]:
    """The citizen's grant to one practitioner: every category, access and collect (§12)."""
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]}, "reference": {"reference": actor}}],
            "action": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}]}
                for a in ("access", "collect")],
            "securityLabel": [{"system": f"{DB}/CodeSystem/dossier-category", "code": c}
                              for c in CATEGORIES],
        },
    }


def task(patient_id: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Task", "status": TASK_STATUSES[i % len(TASK_STATUSES)],
        "intent": "order",
        "code": {"coding": [{"system": f"{DB}/CodeSystem/demarche-type",
                             "code": DEMARCHES[i % len(DEMARCHES)]}]},
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00+01:00",
    }


# ---------------------------------------------------------------------- apps
class Site:
    """One app on the bench database, with its in-process client."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.runtime = app.state.runtime
        self.client = TestClient(app, base_url="http://testserver")
        self.client.__enter__()  # lifespan: no workers (their periods are 0)

    def auth(self, role: str, fhir_user: str) -> dict[str, str]:
        token = self.app.state.dev_issuer.mint(fhir_user, [role], None, 24 * 3600)
        return {"Authorization": f"Bearer {token}"}

    def create(self, headers: dict[str, str], resource: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(f"/fhir/{resource['resourceType']}", json=resource,
                             headers={**headers, "Content-Type": FHIR})
        if r.status_code != 201:
            raise RuntimeError(f"seeding a {resource['resourceType']} failed: "
                               f"{r.status_code} {r.text[:400]}")
        body: dict[str, Any] = r.json()
        return body

    def get(self, headers: dict[str, str], path: str) -> Any:
        r = self.client.get(path, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path.split('?')[0]} answered {r.status_code}")
        return r

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.runtime.engine.dispose()


@dataclass
class Dossier:
    patient_id: str
    task_ids: list[str] = field(default_factory=list)


@dataclass
class World:
    """The seeded database and the apps on it.

    - `main`: the app as shipped (ConsentPolicy, FieldSealer, audit + notifications).
    - `clear`: the same app with `runtime.sealer` returning ClearSealer (it seeds its own
      patients, `clear_dossiers`).
    Dossiers: `dossiers` grant the GP and hold Tasks; `sealed_dossiers` (written by
    `main`) and `clear_dossiers` (written by `clear`) are Patients only, each set granting
    its own reader, so that each reader's searches see only its own app's rows."""

    kind: str
    database_url: str | None
    data_dir: Path
    main: Site
    clear: Site
    gp: str
    sealed_reader: str
    clear_reader: str
    dossiers: list[Dossier]
    sealed_dossiers: list[Dossier]
    clear_dossiers: list[Dossier]
    extra_sites: list[Site] = field(default_factory=list)

    def site(self, configure: Any = None) -> Site:
        """Another app on the same database (closed with the world)."""
        app = build_app(self.data_dir, self.database_url)
        if configure is not None:
            configure(app.state.runtime)
        made = Site(app)
        self.extra_sites.append(made)
        return made

    def close(self) -> None:
        for s in [self.main, self.clear, *self.extra_sites]:
            s.close()


def _directory(site: Site, name: str, profession: str, org_ref: str,
               admin: dict[str, str]) -> str:
    pract = site.create(admin, {"resourceType": "Practitioner", "active": True,
                                "name": [{"family": name, "given": ["Anne"]}]})
    ref = f"Practitioner/{pract['id']}"
    site.create(admin, {"resourceType": "PractitionerRole", "active": True,
                        "practitioner": {"reference": ref},
                        "organization": {"reference": org_ref},
                        "code": [{"coding": [{"system": HCPARTY, "code": profession}]}],
                        "period": {"start": "2020-01-01"}})
    return ref


def _open(site: Site, opener: str, number: int, grantee: str, tasks: int,
          start: int) -> list[Dossier]:
    """`number` dossiers opened by `opener`, each granting `grantee`, with `tasks` Tasks."""
    as_opener = site.auth("practitioner", opener)
    as_grantee = site.auth("practitioner", grantee)
    out = []
    for i in range(start, start + number):
        pid = str(site.create(as_opener, patient(i))["id"])
        site.create(site.auth("citizen", f"Patient/{pid}"), grant(pid, grantee))
        dossier = Dossier(pid)
        for t in range(tasks):
            made = site.create(as_grantee, task(pid, i * tasks + t))
            dossier.task_ids.append(str(made["id"]))
        out.append(dossier)
    return out


@contextmanager
def world(kind: str, *, dossiers: int, tasks: int, readers: int) -> Iterator[World]:
    """Seed a throwaway database; yield the World; drop everything at the end."""
    with throwaway_database(kind) as (data_dir, url):
        main = Site(build_app(data_dir, url))
        clear_app = build_app(data_dir, url)
        clear_app.state.runtime.sealer = ClearSealer
        clear = Site(clear_app)
        admin = main.auth("admin", "Operator/bench")
        org = main.create(admin, {"resourceType": "Organization", "active": True,
                                  "name": "CPAS de Saint-Gilles"})
        org_ref = f"Organization/{org['id']}"
        gp = _directory(main, "Dupont", "persphysician", org_ref, admin)
        sealed_reader = _directory(main, "Janssens", "perssocialworker", org_ref, admin)
        clear_reader = _directory(main, "Maes", "perssocialworker", org_ref, admin)
        made = World(kind, url, data_dir, main, clear, gp, sealed_reader, clear_reader,
                     dossiers=_open(main, gp, dossiers, gp, tasks, 0),
                     sealed_dossiers=_open(main, gp, readers, sealed_reader, 0, dossiers),
                     clear_dossiers=_open(clear, gp, readers, clear_reader, 0,
                                          dossiers + readers))
        # sequence what seeding logged, so benchmarks start from a settled log
        while main.runtime.integrate_audit() < _records(main):
            pass
        run_pending(main.runtime, max_batches=10_000)
        try:
            yield made
        finally:
            made.close()


def _records(site: Site) -> int:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dossier.db.models import audit_records

    with Session(site.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(audit_records))
                   .scalar_one())


def seeded(kind: str, size: Any) -> Any:
    """The World for one database at a run size (harness.Size)."""
    return world(kind, dossiers=size.dossiers, tasks=size.tasks, readers=size.readers)


def standalone(measure: Any, argv: list[str] | None, description: str) -> Any:
    """Run one HTTP benchmark by itself: `--quick`, `--database sqlite|postgres|both`."""
    import argparse
    import time

    from harness import SIZES

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"],
                        default="sqlite")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    section = None
    for kind in kinds:
        began = time.perf_counter()
        with seeded(kind, size) as w:
            part = measure(w, size)
        part.seconds = time.perf_counter() - began
        if section is None:
            section = part
        else:
            section.extend(part)
    assert section is not None
    print(section.markdown())
    return section
