"""Bulk ingestion (issue 14 item 3): 500 démarches in one transaction Bundle against the
same 500 created one request at a time, on the real server (`dossier serve`).

    python bench/bulk.py                       # SQLite (the embedded default)
    python bench/bulk.py --database postgres --rounds 3
    python bench/bulk.py --type batch          # a batch Bundle (each entry on its own)

Each round creates `--entries` Tasks for one consenting dossier both ways (alternating
which goes first); one client, sequential requests. Reports median creates/s and the
ratio Bundle / one by one. Everything is validated, consented, sealed and audited both
ways (the Bundle writes one audit record per person).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import FHIR, Seeded, database, free_port, process  # noqa: E402

from tests import factories as f  # noqa: E402


def one_by_one(client: httpx.Client, patient: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        client.post("/fhir/Task", json=f.task(patient)).raise_for_status()
    return n / (time.perf_counter() - started)


def bundle(client: httpx.Client, patient: str, n: int, kind: str = "transaction") -> float:
    body = {"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": f.task(patient),
         "request": {"method": "POST", "url": "Task"}} for _ in range(n)]}
    started = time.perf_counter()
    r = client.post("/fhir", json=body)
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    assert len(r.json()["entry"]) == n
    assert all(e["response"]["status"].startswith("201") for e in r.json()["entry"])
    return n / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--entries", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--type", choices=["transaction", "batch"], default="transaction")
    args = p.parse_args()
    rates: dict[str, list[float]] = {"single": [], "bundle": []}
    with database(args.database) as (data, url):
        env = {"DATABASE_URL": url} if url else {}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data), "--port",
                 str(port), "--workers", "1"]
        with process(serve, env, f"{base}/fhir/metadata"):
            world = Seeded(base, data, env, 1, 1)
            patient = f"Patient/{world.patients[0]}"
            with httpx.Client(base_url=base, timeout=300, headers={
                    "Authorization": f"Bearer {world.gp_token}", "Content-Type": FHIR}) as c:
                bundle(c, patient, 10, args.type)  # warm

                def one_bundle(c: httpx.Client, patient: str, n: int) -> float:
                    return bundle(c, patient, n, args.type)

                for n in range(args.rounds):
                    order = [("single", one_by_one), ("bundle", one_bundle)]
                    for name, fn in (order if n % 2 == 0 else order[::-1]):
                        rates[name].append(fn(c, patient, args.entries))
    single, bulk = (statistics.median(rates[k]) for k in ("single", "bundle"))
    print(f"| {args.database} | {args.type} | {args.entries} | {single:,.0f} | {bulk:,.0f} | "
          f"**{bulk / single:.1f}×** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
