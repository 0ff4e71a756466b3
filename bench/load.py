"""Load benchmark of the real server: `dossier serve` under wrk, side by side with a bare
baseline endpoint (bench/baseline_app.py) in the same run (issue 13, SPEC §15).

    python bench/load.py                       # PostgreSQL, workers = cores, 3 rounds
    python bench/load.py --workers 1 --rounds 1 --seconds 5
    python bench/load.py --mixed               # the embedded SQLite default, mixed load
    python bench/load.py --mixed --mixed-on postgres --workers 2

Each round runs wrk against the dossier then the baseline (alternating order), 32
connections; we report medians over rounds of requests/s and of wrk's latency
percentiles, errors (non-2xx, socket errors) and the ratio dossier / baseline. After each
dossier round the next round waits until the dossier's background work is done (the
sequencer's queue and the notices: `background_settled`), so neither server's round runs
beside the other's leftovers.
Prints a Markdown section; `--write` replaces that section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from world import throwaway_database as database  # noqa: E402 - one throwaway database helper

from tests import factories as f  # noqa: E402 - the suite's FHIR fixtures, reused

PG_ADMIN_URL = os.environ.get("DOSSIER_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FHIR = "application/fhir+json"
LUA_AUTH = """
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/fhir+json"
{body}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], ready_url: str
            ) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT / "bench")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(ready_url, timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"did not start: {' '.join(args)}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def token(data: Path, env: dict[str, str], fhir_user: str, role: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "dossier", "dev-token", "--data-dir", str(data), "--fhir-user",
         fhir_user, "--roles", role, "--ttl", "86400"], env={**os.environ, **env},
        capture_output=True, text=True, check=True).stdout.strip()


class Seeded:
    """One organisation, a GP, `dossiers` consenting people with `tasks` démarches each."""

    def __init__(self, base: str, data: Path, env: dict[str, str], dossiers: int,
                 tasks: int) -> None:
        admin = httpx.Client(base_url=base, headers={
            "Authorization": f"Bearer {token(data, env, 'Operator/admin', 'admin')}",
            "Content-Type": FHIR}, timeout=60)
        org = admin.post("/fhir/Organization", json=f.organization()).json()
        pract = admin.post("/fhir/Practitioner", json=f.practitioner("Bench")).json()
        self.gp_ref = f"Practitioner/{pract['id']}"
        admin.post("/fhir/PractitionerRole", json=f.practitioner_role(
            self.gp_ref, f"Organization/{org['id']}", "persphysician")).raise_for_status()
        self.gp_token = token(data, env, self.gp_ref, "practitioner")
        gp = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {self.gp_token}",
                                                  "Content-Type": FHIR}, timeout=60)
        self.patients: list[str] = []
        self.tasks: list[str] = []
        for n in range(dossiers):
            pid = gp.post("/fhir/Patient", json=f.patient(ssin=f.niss(serial=100 + n))).json()["id"]
            citizen = httpx.Client(base_url=base, headers={
                "Authorization": f"Bearer {token(data, env, f'Patient/{pid}', 'citizen')}",
                "Content-Type": FHIR}, timeout=60)
            citizen.post("/fhir/Consent", json=f.consent(
                pid, self.gp_ref, categories=("identity", "demarches", "network", "fragility"),
                actions=("access", "collect"))).raise_for_status()
            self.patients.append(pid)
            for _ in range(tasks):
                self.tasks.append(gp.post("/fhir/Task", json=f.task(f"Patient/{pid}"))
                                  .json()["id"])


WRK_LINE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: str, connections: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        done = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}",
                               f"-d{seconds}s", "--latency", "-s", handle.name, url],
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"wrk failed on {url}: {done.stdout[-500:]} {done.stderr[-500:]}")
        out = done.stdout
    finally:
        os.unlink(handle.name)
    result: dict[str, float] = {"errors": 0.0}
    for line in out.splitlines():
        if m := WRK_LINE.match(line):
            result[f"p{m[1]}"] = _ms(m[2], m[3])
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif "Non-2xx or 3xx responses" in line:
            result["errors"] += float(line.split()[-1])
        elif line.strip().startswith("Socket errors"):
            result["errors"] += sum(float(x) for x in re.findall(r"\d+", line))
    return result


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r.get(key, 0.0) for r in rows)


def background_settled(dsn: str, timeout: float = 120) -> Callable[[], float]:
    """A function that waits until the background work of the rounds so far is done (no
    record waiting for the sequencer, no notice waiting for the notifier) and returns how
    long that took. Each round then starts with both servers idle: the baseline's round
    no longer shares the cores with the notices of the dossier's round before it."""
    import psycopg

    def settle() -> float:
        started = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                (left,) = conn.execute(
                    "SELECT (SELECT count(*) FROM audit_pending) + (SELECT count(*) FROM "
                    "notification_outbox WHERE status = 'pending')").fetchone() or (0,)
                if not left:
                    return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"the background work did not drain in {timeout:.0f} s")
                time.sleep(0.2)

    return settle


def compare(name: str, subject: tuple[str, str], baseline: tuple[str, str], rounds: int,
            connections: int, seconds: int, settle: Callable[[], float] | None = None
            ) -> dict[str, Any]:
    got: dict[str, list[dict[str, float]]] = {"subject": [], "baseline": []}
    drained: list[float] = []
    if settle is not None:
        settle()
    for n in range(rounds):
        order = [("subject", subject), ("baseline", baseline)]
        for label, (url, script) in (order if n % 2 == 0 else order[::-1]):
            got[label].append(wrk(url, script, connections, seconds))
            if label == "subject" and settle is not None:
                drained.append(settle())
    out: dict[str, Any] = {"name": name, "connections": connections, "drained": drained}
    for label, rows in got.items():
        out[label] = {k: median(rows, k) for k in ("rps", "p50", "p90", "p99", "errors")}
    out["ratio"] = statistics.median(
        s["rps"] / b["rps"] for s, b in zip(got["subject"], got["baseline"], strict=True))
    return out


def row(result: dict[str, Any]) -> str:
    s, b = result["subject"], result["baseline"]
    return (f"| {result['name']} | {result['connections']} | {s['rps']:,.0f} | {s['p50']:.1f} "
            f"| {s['p99']:.1f} | {int(s['errors'])} | {b['rps']:,.0f} | {b['p50']:.1f} "
            f"| {b['p99']:.1f} | **{result['ratio']:.2f}×** |")


def run_postgres(args: argparse.Namespace) -> list[str]:
    lines = []
    with database("postgres") as (data, url):
        assert url is not None
        env = {"DATABASE_URL": url}
        port, bare_port = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data), "--port",
                 str(port), "--workers", str(args.workers)]
        bare_dsn = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        bare = [sys.executable, "baseline_app.py", "--port", str(bare_port), "--workers",
                str(args.workers)]
        # the baseline's tables made once here: its workers racing on CREATE TABLE IF NOT
        # EXISTS could lose one of them at start
        import psycopg
        from baseline_app import SCHEMA

        with psycopg.connect(bare_dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)  # type: ignore[arg-type]
        with process(serve, env, f"{base}/fhir/metadata"), \
                process(bare, {"DATABASE": bare_dsn}, f"http://127.0.0.1:{bare_port}/docs"):
            world = Seeded(base, data, env, 1, 50)
            read = (f"{base}/fhir/Task/{world.tasks[7]}",
                    LUA_AUTH.format(token=world.gp_token, body=""))
            bare_read = (f"http://127.0.0.1:{bare_port}/read/task-1", "")
            body = f.task(f"Patient/{world.patients[0]}")
            import json

            create = (f"{base}/fhir/Task", LUA_AUTH.format(
                token=world.gp_token, body='wrk.method = "POST"\nwrk.body = [[' +
                json.dumps(body) + "]]"))
            bare_create = (f"http://127.0.0.1:{bare_port}/write?n={args.create_inserts}",
                           'wrk.method = "POST"')
            settle = background_settled(bare_dsn)
            results = [
                compare("consented read `GET /fhir/Task/{id}`", read, bare_read, args.rounds,
                        args.connections, args.seconds, settle),
                compare("one connection: the same read", read, bare_read, args.rounds, 1,
                        args.seconds, settle),
                compare(f"consented create `POST /fhir/Task` vs {args.create_inserts} INSERTs",
                        create, bare_create, args.rounds, min(args.connections, 8),
                        args.seconds, settle),
            ]
    lines.append("| request | conn. | dossier req/s | p50 ms | p99 ms | errors | baseline "
                 "req/s | p50 ms | p99 ms | ratio |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines.extend(row(r) for r in results)
    lines.append("")
    lines.extend(f"- {r['name']}: the background work of each dossier round drained in "
                 + ", ".join(f"{d:.1f}" for d in r["drained"]) + " s before the next round"
                 for r in results)
    return lines


async def mixed_clients(base: str, world: Seeded, clients: int, seconds: float
                        ) -> dict[str, list[float]]:
    """`clients` concurrent loops: 70 % reads, 20 % searches, 10 % creates."""
    lat: dict[str, list[float]] = {"read": [], "search": [], "create": [], "error": []}
    headers = {"Authorization": f"Bearer {world.gp_token}", "Content-Type": FHIR}
    stop = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient, rng: random.Random) -> None:
        while time.monotonic() < stop:
            pick = rng.random()
            started = time.perf_counter()
            if pick < 0.7:
                kind = "read"
                r = await client.get(f"/fhir/Task/{rng.choice(world.tasks)}")
            elif pick < 0.9:
                kind = "search"
                r = await client.get("/fhir/Task", params={"authored-on": "ge2020-01-01",
                                                            "_count": "20"})
            else:
                kind = "create"
                r = await client.post("/fhir/Task", json=f.task(
                    f"Patient/{rng.choice(world.patients)}"))
            elapsed = (time.perf_counter() - started) * 1000
            lat[kind if r.status_code < 400 else "error"].append(elapsed)

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        await asyncio.gather(*(one(client, random.Random(n)) for n in range(clients)))
    return lat


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_mixed(args: argparse.Namespace) -> list[str]:
    """The mixed load on the embedded SQLite default (one process), or with
    `--mixed-on postgres` on PostgreSQL with `--workers` processes."""
    with database(args.mixed_on) as (data, url):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data), "--port",
                 str(port)]
        env = {}
        if url:
            env["DATABASE_URL"] = url
            serve += ["--workers", str(args.workers)]
        with process(serve, env, f"{base}/fhir/metadata"):
            world = Seeded(base, data, env, args.dossiers, 10)
            lat = asyncio.run(mixed_clients(base, world, args.clients, args.mixed_seconds))
    lines = ["| kind | requests | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for kind in ("read", "search", "create", "error"):
        values = lat[kind]
        lines.append(f"| {kind} | {len(values)} | {pct(values, 0.5):.1f} | "
                     f"{pct(values, 0.99):.1f} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--create-inserts", type=int, default=9,
                   help="INSERTs of the bare create (a Task create's INSERTs)")
    p.add_argument("--mixed", action="store_true", help="the SQLite mixed-load run only")
    p.add_argument("--mixed-on", choices=["sqlite", "postgres"], default="sqlite",
                   help="the database of --mixed (postgres: --workers processes)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--dossiers", type=int, default=100)
    p.add_argument("--mixed-seconds", type=float, default=60)
    args = p.parse_args()
    if shutil.which("wrk") is None and not args.mixed:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    lines = run_mixed(args) if args.mixed else run_postgres(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
