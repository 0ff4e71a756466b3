"""Bulk ingestion (issue 14 item 3): 500 démarches in one transaction Bundle against the
same 500 created one request at a time, on the real server (`dossier serve`).

    python bench/bulk.py                       # SQLite (the embedded default)
    python bench/bulk.py --database postgres --rounds 3
    python bench/bulk.py --type batch          # a batch Bundle (each entry on its own)

Each round creates `--entries` Tasks for one consenting dossier both ways (alternating
which goes first); one client, sequential requests. Reports median creates/s and the
ratio Bundle / one by one. Everything is validated, consented, sealed and audited both
ways (the Bundle writes one audit record per person).

Also the CPU time per create (the server's processes, plus PostgreSQL's backends for its
database; read from /proc), which a shared, loaded machine disturbs much less than the
rates: the last column is the ratio of CPU per create, one by one / in a Bundle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text

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


TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _tree(root: int) -> list[int]:
    """The process and its descendants."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


class CpuMeter:
    """CPU seconds used so far by the server and, on PostgreSQL, its database's backends."""

    def __init__(self, server: int, url: str | None) -> None:
        self.server = server
        self.admin = create_engine(url) if url else None

    def __call__(self) -> float:
        pids = _tree(self.server)
        if self.admin is not None:
            pids += backend_pids(self.admin)
        return sum(_cpu(pid) for pid in pids)


def backend_pids(admin: Engine) -> list[int]:
    """The PostgreSQL backends of `admin`'s database, but its own."""
    with admin.connect() as conn:
        return list(conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")).scalars())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--entries", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--type", choices=["transaction", "batch"], default="transaction")
    args = p.parse_args()
    rates: dict[str, list[float]] = {"single": [], "bundle": []}
    cpu: dict[str, list[float]] = {"single": [], "bundle": []}
    with database(args.database) as (data, url):
        env = {"DATABASE_URL": url} if url else {}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data), "--port",
                 str(port), "--workers", "1"]
        with process(serve, env, f"{base}/fhir/metadata") as server:
            meter = CpuMeter(server.pid, url)
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
                        before = meter()
                        rates[name].append(fn(c, patient, args.entries))
                        cpu[name].append((meter() - before) / args.entries * 1000)
            if meter.admin is not None:
                meter.admin.dispose()
    single, bulk = (statistics.median(rates[k]) for k in ("single", "bundle"))
    cpu_single, cpu_bulk = (statistics.median(cpu[k]) for k in ("single", "bundle"))
    print("| database | Bundle | entries | one by one /s | one Bundle /s | ratio "
          "| CPU ms/create one by one | in a Bundle | CPU ratio |")
    print(f"| {args.database} | {args.type} | {args.entries} | {single:,.0f} | {bulk:,.0f} | "
          f"**{bulk / single:.1f}×** | {cpu_single:.2f} | {cpu_bulk:.2f} | "
          f"{cpu_single / cpu_bulk:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
