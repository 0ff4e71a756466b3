"""Query plans of the main searches (issue 14): what the database does for a consented
search, captured from the real service's own statements (SQLAlchemy cursor events) and
explained on a generated database (bench/scale.py's loader).

    python bench/explain.py --database sqlite --dossiers 3000
    python bench/explain.py --database postgres --dossiers 3000

Prints Markdown: for each request, the statements it ran and the plan of the costly ones.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fastapi.testclient import TestClient
from scale import TASKS_PER_DOSSIER, load
from sqlalchemy import event, text
from world import build_app, throwaway_database

from tests import factories as f

SEARCHES = [
    ("Task?patient=Patient/{pid}", {"patient": "Patient/{pid}"}),
    ("Task?authored-on=ge2020-01-01&_count=20", {"authored-on": "ge2020-01-01",
                                                 "_count": "20"}),
    ("Task?code=…|housing-application&_include=Task:patient",
     {"code": "https://dossier.brussels/fhir/CodeSystem/demarche-type|housing-application",
      "_include": "Task:patient", "_count": "20"}),
]


def abridged(line: str, width: int = 130) -> str:
    """A plan line cut to `width` (PostgreSQL prints the grant mask and the reader's
    references in full)."""
    return line if len(line) <= width else line[:width - 2] + " …"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dossiers", type=int, default=3000)
    p.add_argument("--caseload", type=int, default=500)
    args = p.parse_args()
    out: list[str] = []
    with throwaway_database(args.database) as (data_dir, url):
        app = build_app(data_dir, url)
        engine = app.state.runtime.engine
        with TestClient(app) as client:
            admin = {"Authorization": "Bearer " + app.state.dev_issuer.mint(
                "Operator/admin", ["admin"], None, 3600), "Content-Type": "application/fhir+json"}
            org = client.post("/fhir/Organization", json=f.organization(), headers=admin).json()
            pract = client.post("/fhir/Practitioner", json=f.practitioner("Plan"),
                                headers=admin).json()
            ref = f"Practitioner/{pract['id']}"
            client.post("/fhir/PractitionerRole", json=f.practitioner_role(
                ref, f"Organization/{org['id']}", "perssocialworker"), headers=admin)
            loaded = load(app, args.dossiers, {ref: args.caseload})
            pid = loaded["sample"][ref][0]
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            h = {"Authorization": "Bearer " + app.state.dev_issuer.mint(
                ref, ["practitioner"], None, 3600)}
            out.append(f"### {args.database}: {args.dossiers:,} dossiers "
                       f"({args.dossiers * (TASKS_PER_DOSSIER + 2):,} resources), "
                       f"caseload {args.caseload}\n")
            for title, params in SEARCHES:
                seen: list[tuple[str, Any]] = []

                def capture(conn: Any, cursor: Any, statement: str, parameters: Any,
                            context: Any, executemany: bool,
                            seen: list[tuple[str, Any]] = seen) -> None:
                    seen.append((statement, parameters))

                event.listen(engine, "before_cursor_execute", capture)
                query = {k: v.format(pid=pid) for k, v in params.items()}
                r = client.get("/fhir/Task", params=query, headers=h)
                event.remove(engine, "before_cursor_execute", capture)
                assert r.status_code == 200, r.text
                out.append(f"#### `{title.format(pid='…')}` — {len(seen)} statements, "
                           f"total {r.json().get('total', 'left out')}\n")
                for statement, parameters in seen:
                    head = " ".join(statement.split())
                    if not head.startswith("SELECT count(*)") and "ORDER BY" not in head:
                        continue
                    prefix = ("EXPLAIN QUERY PLAN " if args.database == "sqlite"
                              else "EXPLAIN (COSTS OFF) ")
                    with engine.connect() as conn:
                        raw = conn.connection.driver_connection
                        cur = raw.cursor()
                        cur.execute(prefix + statement, parameters)
                        rows = cur.fetchall()
                    kind = "count" if head.startswith("SELECT count(*)") else "page"
                    plan = "\n".join(abridged(str(r[-1])) for r in rows)
                    out.append(f"{kind}:\n```\n{plan}\n```\n")
        engine.dispose()
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
