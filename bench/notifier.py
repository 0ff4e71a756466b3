"""The notifier's cost per notice (issue 13): `--people` consenting dossiers, `--reads`
consultations of their démarches by one GP (in process, the notifier off), then one run
of the notifier over that backlog, as `dossier worker` runs it. Reports the worker's CPU
(this process), its PostgreSQL backends' CPU and the wall time per notice, and how many
inbox messages it wrote.

    python bench/notifier.py                        # PostgreSQL, 100 people, 3,000 reads
    python bench/notifier.py --batch 50             # another batch size
    python bench/notifier.py --database sqlite

A notice costs what the read it reports costs, or more, and the notifier has one thread:
at a sustained rate of reads above 1 / (wall time per notice), the backlog and each
person's wait for their notice grow without bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bulk import _cpu, backend_pids  # noqa: E402
from world import build_app, throwaway_database  # noqa: E402

from dossier.notify.worker import config_from_settings, run_pending  # noqa: E402
from tests import factories as f  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    p.add_argument("--people", type=int, default=100)
    p.add_argument("--reads", type=int, default=3000)
    p.add_argument("--batch", type=int, default=None, help="rows a batch (default: the code's)")
    args = p.parse_args()
    with throwaway_database(args.database) as (data_dir, url):
        app = build_app(data_dir, url)
        runtime = app.state.runtime
        with TestClient(app) as client:
            mint = app.state.dev_issuer.mint
            fhir = "application/fhir+json"
            admin = {"Authorization": "Bearer " + mint("Operator/admin", ["admin"], None, 3600),
                     "Content-Type": fhir}
            org = client.post("/fhir/Organization", json=f.organization(), headers=admin).json()
            pract = client.post("/fhir/Practitioner", json=f.practitioner("Bench"),
                                headers=admin).json()
            gp_ref = f"Practitioner/{pract['id']}"
            client.post("/fhir/PractitionerRole", json=f.practitioner_role(
                gp_ref, f"Organization/{org['id']}", "persphysician"), headers=admin)
            gp = {"Authorization": "Bearer " + mint(gp_ref, ["practitioner"], None, 3600),
                  "Content-Type": fhir}
            tasks = []
            for n in range(args.people):
                pid = client.post("/fhir/Patient", json=f.patient(ssin=f.niss(serial=100 + n)),
                                  headers=gp).json()["id"]
                citizen = {"Authorization": "Bearer " + mint(f"Patient/{pid}", ["citizen"],
                                                             None, 3600), "Content-Type": fhir}
                client.post("/fhir/Consent", json=f.consent(
                    pid, gp_ref, categories=("identity", "demarches"),
                    actions=("access", "collect")), headers=citizen).raise_for_status()
                tasks += [client.post("/fhir/Task", json=f.task(f"Patient/{pid}"),
                                      headers=gp).json()["id"] for _ in range(3)]
            run_pending(runtime)  # the seeding's own notices
            pick = random.Random(1)
            for _ in range(args.reads):
                assert client.get(f"/fhir/Task/{pick.choice(tasks)}", headers=gp
                                  ).status_code == 200
            config = config_from_settings(runtime.settings)
            if args.batch:
                config = dataclasses.replace(config, batch_size=args.batch)
            admin_engine = create_engine(url) if url else None

            def backends() -> float:
                if admin_engine is None:
                    return 0.0
                return sum(_cpu(pid) for pid in backend_pids(admin_engine))

            cpu, db, wall = time.process_time(), backends(), time.perf_counter()
            delivered = run_pending(runtime, config=config)
            cpu, db, wall = (time.process_time() - cpu, backends() - db,
                             time.perf_counter() - wall)
            with runtime.engine.connect() as conn:
                messages = conn.execute(text(
                    "SELECT count(*) FROM resources WHERE res_type = 'Communication'")).scalar()
            if admin_engine is not None:
                admin_engine.dispose()
        runtime.engine.dispose()
    per = max(delivered, 1)
    print(f"{args.database}, batch {config.batch_size}: {delivered} notices delivered, "
          f"worker CPU {1000 * cpu / per:.3f} ms, PostgreSQL {1000 * db / per:.3f} ms, "
          f"wall {1000 * wall / per:.3f} ms per notice; {messages} inbox messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
