"""Growth curves (issue 14, SPEC §15): does a read or a search cost more when the
database holds 10× more dossiers, or when a professional's caseload grows 100×?

    python bench/scale.py --database sqlite --dossiers 10000 100000
    python bench/scale.py --database postgres --dossiers 10000 100000 --caseloads 50 500 5000

Data: generated in bulk DIRECTLY into the database (seeding 100,000 dossiers through the
API would take hours): each dossier is a Patient (every personal element sealed under its
own data key), one Consent and ten Tasks, each row built by the service's own storage
code — `Repository._index_rows` (search index, blind-indexed identifiers),
`FieldSealer.seal`, `access_index.rows_for` — and inserted with multi-row INSERTs. One
template per kind is validated by the service's profile check first. Three practitioners
are granted by `caseloads` dossiers each; the rest grant a crowd of other practitioners.

Timing: in-process through Starlette's TestClient, one request at a time, the median
(p50) and p90 of `--requests` calls per measure, measures interleaved round by round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from world import build_app, throwaway_database  # noqa: E402

import schemas  # noqa: E402
from dossier.core import access_index  # noqa: E402
from dossier.core.auditing import RequestAudit  # noqa: E402,F401 - the app's own wiring
from dossier.core.context import RequestContext  # noqa: E402
from dossier.core.repository import TOTAL_CAP, NullAudit, OpenPolicy, Repository  # noqa: E402
from dossier.db.bulk import insert_rows  # noqa: E402
from dossier.db.engine import refresh_statistics  # noqa: E402
from dossier.db.models import resource_versions, resources, search_index  # noqa: E402
from dossier.seed.groups import SERVER  # noqa: E402
from tests import factories as f  # noqa: E402

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TASKS_PER_DOSSIER = 10
BATCH = 500


class Loader:
    """Rows of many dossiers at once, built by the repository's own code."""

    def __init__(self, app: Any) -> None:
        self.runtime = app.state.runtime
        self.rows: dict[Any, list[dict[str, Any]]] = {}
        self.grants: list[dict[str, Any]] = []

    def _add(self, repo: Repository, resource: dict[str, Any], patient_id: str | None,
             categories: frozenset[str]) -> None:
        clear, sealed = repo.sealer.seal(repo.session, resource, patient_id, 1)
        values = {"res_type": resource["resourceType"], "res_id": resource["id"],
                  "version_id": 1, "last_updated": NOW, "deleted": False,
                  "patient_id": patient_id, "categories": ",".join(sorted(categories)),
                  "cat_mask": access_index.mask_of(categories), "content": clear,
                  "sealed": sealed}
        self.rows.setdefault(resources, []).append(values)
        self.rows.setdefault(resource_versions, []).append({"method": "POST", **values})
        self.rows.setdefault(search_index, []).extend(
            repo._index_rows(resource["resourceType"], resource["id"], resource))

    def dossier(self, repo: Repository, n: int, grantee: str) -> tuple[str, list[str]]:
        pid = uuid.uuid4().hex
        # one national number per dossier (unique up to 717,840 dossiers; the NISS index
        # is unique): birth year, month and serial vary with n
        birth = f"{40 + n // 997 % 60:02d}{1 + n // 59_820 % 12:02d}01"
        person = {**f.patient(ssin=f.niss(birth=birth, serial=n % 997 + 1),
                              family=f"Person{n}"), "id": pid}
        self._add(repo, person, pid, schemas.categories(person))
        consent = {**f.consent(pid, grantee, categories=("identity", "demarches", "network",
                                                         "fragility"),
                               actions=("access", "collect")), "id": uuid.uuid4().hex}
        self._add(repo, consent, pid, frozenset())
        import consent as consent_engine

        self.grants.extend(access_index.rows_for(consent["id"], pid,
                                                 consent_engine.parse_consent(consent)))
        tasks = []
        for t in range(TASKS_PER_DOSSIER):
            task = {**f.task(f"Patient/{pid}"), "id": uuid.uuid4().hex,
                    "authoredOn": f"20{20 + t % 6}-0{1 + t % 9}-15"}
            self._add(repo, task, pid, schemas.categories(task))
            tasks.append(task["id"])
        return pid, tasks

    def flush(self, session: Session) -> None:
        # the service's own bulk insert (PostgreSQL: one statement per table and 5,000
        # rows; the search index has no foreign key to check since migration 0023)
        for table, rows in self.rows.items():
            for start in range(0, len(rows), 5000):
                insert_rows(session, table, rows[start:start + 5000])
        insert_rows(session, access_index.access_grants, self.grants)
        self.rows, self.grants = {}, []


def check_templates() -> None:
    """The generated shapes are what the service itself accepts."""
    pid = "p"
    for resource in (f.patient(), f.consent(pid, "Practitioner/x"), f.task(f"Patient/{pid}")):
        problems = schemas.validate({**resource, "id": "x"})
        assert not problems, problems


def grant_plan(caseloads: dict[str, int], dossiers: int) -> list[str]:
    """Whom each generated dossier grants: caseloads[ref] of them to ref, the rest to a
    crowd of 200 other practitioners."""
    plan: list[str] = []
    for ref, size in caseloads.items():
        plan.extend([ref] * size)
    crowd = [f"Practitioner/crowd-{i}" for i in range(200)]
    while len(plan) < dossiers:
        plan.append(crowd[len(plan) % len(crowd)])
    return plan


def load(app: Any, dossiers: int, caseloads: dict[str, int]) -> dict[str, Any]:
    """`dossiers` dossiers; caseloads[practitioner] of them granted to that practitioner."""
    loader = Loader(app)
    engine = app.state.runtime.engine
    plan = grant_plan(caseloads, dossiers)
    sample: dict[str, tuple[str, list[str]]] = {}
    started = time.perf_counter()
    for start in range(0, dossiers, BATCH):
        with Session(engine, expire_on_commit=False) as session, session.begin():
            repo = Repository(session, RequestContext(principal=SERVER, now=NOW),
                              policy=OpenPolicy(), sealer=app.state.runtime.sealer(),
                              audit=NullAudit())
            for n in range(start, min(start + BATCH, dossiers)):
                made = loader.dossier(repo, n, plan[n])
                sample.setdefault(plan[n], made)
            loader.flush(session)
    # what the running service's maintenance does at start and every 10 minutes (SQLite;
    # PostgreSQL: an ANALYZE autovacuum would have run after a bulk load)
    if engine.dialect.name == "sqlite":
        refresh_statistics(engine)
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return {"sample": sample, "seconds": time.perf_counter() - started}


def timed(fn: Callable[[], Any], requests: int) -> list[float]:
    out = []
    for _ in range(requests):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def measure(database: str, dossiers: int, caseloads: list[int],
            requests: int) -> list[tuple[str, float, float]]:
    results = []
    with throwaway_database(database) as (data_dir, url):
        app = build_app(data_dir, url)
        with TestClient(app) as client:
            admin_token = app.state.dev_issuer.mint("Operator/admin", ["admin"], None, 86400)
            admin = {"Authorization": f"Bearer {admin_token}", "Content-Type":
                     "application/fhir+json"}
            org = client.post("/fhir/Organization", json=f.organization(),
                              headers=admin).json()["id"]
            refs = {}
            for size in caseloads:
                pract = client.post("/fhir/Practitioner", json=f.practitioner(f"C{size}"),
                                    headers=admin).json()["id"]
                ref = f"Practitioner/{pract}"
                client.post("/fhir/PractitionerRole", json=f.practitioner_role(
                    ref, f"Organization/{org}", "perssocialworker"), headers=admin)
                refs[size] = ref
            loaded = load(app, dossiers, {refs[s]: s for s in caseloads})
            print(f"  loaded {dossiers} dossiers in {loaded['seconds']:.0f} s", file=sys.stderr)
            for size in caseloads:
                ref = refs[size]
                token = app.state.dev_issuer.mint(ref, ["practitioner"], None, 86400)
                h = {"Authorization": f"Bearer {token}"}
                pid, tasks = loaded["sample"][ref]

                def read(h: dict[str, str] = h, task: str = tasks[3]) -> None:
                    assert client.get(f"/fhir/Task/{task}", headers=h).status_code == 200

                def by_patient(h: dict[str, str] = h, pid: str = pid) -> None:
                    r = client.get("/fhir/Task", params={"patient": f"Patient/{pid}"},
                                   headers=h)
                    assert r.status_code == 200 and r.json()["total"] == TASKS_PER_DOSSIER

                def by_date(h: dict[str, str] = h, size: int = size,
                            total: str = "estimate") -> None:
                    r = client.get("/fhir/Task", params={"authored-on": "ge2020-01-01",
                                                         "_count": "20", "_total": total},
                                   headers=h)
                    bundle = r.json()
                    matches = size * TASKS_PER_DOSSIER
                    assert r.status_code == 200 and len(bundle["entry"]) >= 20
                    # the total is exact up to TOTAL_CAP matches, left out beyond (api.md)
                    assert bundle.get("total") == (
                        matches if total == "accurate" or matches <= TOTAL_CAP else None)

                def by_date_accurate(h: dict[str, str] = h, size: int = size) -> None:
                    by_date(h, size, "accurate")

                for name, fn in (("read Task/{id}", read), ("Task?patient=", by_patient),
                                 ("Task?authored-on=ge…&_count=20", by_date),
                                 ("the same, _total=accurate", by_date_accurate)):
                    fn()  # warm
                    ms = timed(fn, requests)
                    results.append((f"{name} · caseload {size}", statistics.median(ms),
                                    sorted(ms)[int(0.9 * len(ms))]))
        app.state.runtime.engine.dispose()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dossiers", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--caseloads", type=int, nargs="+", default=[50, 500, 5000])
    p.add_argument("--requests", type=int, default=50)
    args = p.parse_args()
    check_templates()
    table: dict[str, dict[int, tuple[float, float]]] = {}
    for size in args.dossiers:
        print(f"{args.database}: {size} dossiers", file=sys.stderr)
        for name, p50, p90 in measure(args.database, size, args.caseloads, args.requests):
            table.setdefault(name, {})[size] = (p50, p90)
    sizes = args.dossiers
    print(f"| {args.database} | " + " | ".join(f"{s:,} dossiers p50 (p90) ms" for s in sizes)
          + " | ratio |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for name, by_size in table.items():
        cells = [f"{by_size[s][0]:.1f} ({by_size[s][1]:.1f})" for s in sizes]
        ratio = by_size[sizes[-1]][0] / by_size[sizes[0]][0]
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
