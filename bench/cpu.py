"""CPU per request of the real server (issue 13): `dossier serve --workers 1` on
PostgreSQL under wrk, the server's user + system CPU (and its database backends') read
from /proc before and after, divided by the requests wrk completed; and the WAL bytes
PostgreSQL wrote per request (`pg_current_wal_lsn()` before and after). A loaded machine
slows the run down but hardly changes the CPU each request costs, so this is the measure
to compare code versions by.

    python bench/cpu.py                          # read and create, 3 rounds of 5 s
    python bench/cpu.py --quiet                  # background workers off (request alone)
    python bench/cpu.py --only read --pyspy read.txt   # and a py-spy profile (--gil)
    python bench/cpu.py --baseline               # and the bare baseline, the same way

With `--baseline` the bare endpoint of `bench/load.py` (bench/baseline_app.py, one
worker) is measured the same way, alternating, and the report ends with the CPU model of
the load benchmark's ratio: on a machine whose cores are all busy, requests/s go as
1 / (CPU per request), so the ratio wrk measures is about
(bare server + its PostgreSQL) / (dossier server + its PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bulk import TICK, CpuMeter, _cpu, _tree  # noqa: E402
from load import LUA_AUTH, Seeded, database, free_port, process  # noqa: E402
from sqlalchemy import text  # noqa: E402

from tests import factories as f  # noqa: E402

QUIET = {"DOSSIER_AUDIT_SEQUENCER_SECONDS": "0", "DOSSIER_NOTIFY_WORKER_SECONDS": "0",
         "DOSSIER_MAINTENANCE_SECONDS": "0"}


def _sys(pid: int) -> float:
    """System CPU seconds of a process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12]) / TICK
    except OSError:
        return 0.0


def wrk_count(url: str, script: str, connections: int,
              seconds: int) -> tuple[int, float, float]:
    """(requests completed, requests/s, p99 latency ms); non-2xx responses fail the run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(["wrk", "--latency", f"-t{min(2, connections)}",
                              f"-c{connections}",
                              f"-d{seconds}s", "-s", handle.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(handle.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"errors under load:\n{out}")
    done = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert done and rate and p99, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99[2]]
    return int(done[1]), float(rate[1]), float(p99[1]) * scale


class Server:
    """One `dossier serve --workers 1` on its own throwaway database, seeded."""

    def __init__(self, stack: ExitStack, label: str, code: Path | None,
                 quiet: bool) -> None:
        self.label = label
        data, url = stack.enter_context(database("postgres"))
        assert url is not None
        env = {"DATABASE_URL": url, **(QUIET if quiet else {})}
        if code is not None:  # another checkout's packages first (the code before a change)
            env["PYTHONPATH"] = str(code)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data), "--port",
                 str(port), "--workers", "1"]
        self.proc = stack.enter_context(process(serve, env, f"{base}/fhir/metadata"))
        world = Seeded(base, data, env, 1, 50)
        self.kinds = {
            "read": (f"{base}/fhir/Task/{world.tasks[7]}",
                     LUA_AUTH.format(token=world.gp_token, body="")),
            "create": (f"{base}/fhir/Task", LUA_AUTH.format(
                token=world.gp_token, body='wrk.method = "POST"\nwrk.body = [[' +
                json.dumps(f.task(f"Patient/{world.patients[0]}")) + "]]")),
            "search": (f"{base}/fhir/Task?authored-on=ge2020-01-01&_count=20",
                       LUA_AUTH.format(token=world.gp_token, body="")),
        }
        self.meter = CpuMeter(self.proc.pid, url)
        self.rows: dict[str, list[tuple[float, ...]]] = {
            "read": [], "create": [], "search": []}

    def server(self) -> tuple[float, float, float]:
        """CPU seconds of the server and its children; of those, system; of the
        children alone (`dossier worker`: the sequencer and the notifier)."""
        pids = _tree(self.proc.pid)
        return (sum(_cpu(pid) for pid in pids), sum(_sys(pid) for pid in pids),
                sum(_cpu(pid) for pid in pids if pid != self.proc.pid))

    def round(self, kind: str, connections: int, seconds: int,
              pyspy: Path | None = None) -> None:
        target, script = self.kinds[kind]
        spy = None
        if pyspy is not None:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                 str(self.proc.pid), "--gil", "--rate", "500", "--duration", str(seconds),
                 "--format", "raw", "--output", str(pyspy), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (s0, k0, w0), t0, lsn = self.server(), self.meter(), self.wal()
        count, rate, p99 = wrk_count(target, script, connections, seconds)
        (s1, k1, w1), t1 = self.server(), self.meter()
        wal = self.wal(since=lsn)
        if spy is not None:
            spy.wait()
        self.rows[kind].append(((s1 - s0) / count * 1000, (k1 - k0) / count * 1000,
                                (t1 - t0 - (s1 - s0)) / count * 1000, rate, p99,
                                (w1 - w0) / count * 1000, float(wal) / count))

    def wal(self, since: str | None = None) -> str:
        """The cluster's WAL position now or, with `since`, the bytes written after it
        (by everything on the cluster: the other server is idle while this one runs)."""
        assert self.meter.admin is not None
        with self.meter.admin.connect() as conn:
            if since is None:
                return str(conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one())
            return str(conn.execute(text("SELECT pg_current_wal_lsn() - CAST(:since AS "
                                         "pg_lsn)"), {"since": since}).scalar_one())

    def report(self, kind: str) -> str:
        rows = self.rows[kind]
        med = [statistics.median(r[i] for r in rows) for i in range(7)]
        return (f"{self.label:>6} {kind:>6}: server CPU {med[0]:.2f} ms/request "
                f"(min {min(r[0] for r in rows):.2f}) "
                f"({', '.join(f'{r[0]:.2f}' for r in rows)}; system {med[1]:.2f}; "
                f"background process {med[5]:.3f}), "
                f"PostgreSQL {med[2]:.2f} ms, WAL {med[6]:,.0f} bytes, "
                f"{med[3]:.0f} req/s, p99 {med[4]:.1f} ms "
                f"({', '.join(f'{r[4]:.0f}' for r in rows)})")


class Bare(Server):
    """bench/baseline_app.py, one worker, on its own throwaway database: a primary-key
    SELECT and two INSERTs per read, 9 INSERTs per create (as `bench/load.py`)."""

    def __init__(self, stack: ExitStack) -> None:
        import psycopg
        from baseline_app import SCHEMA
        from sqlalchemy.engine import make_url

        self.label = "bare"
        _, url = stack.enter_context(database("postgres"))
        assert url is not None
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)  # type: ignore[arg-type]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        self.proc = stack.enter_context(process(
            [sys.executable, "baseline_app.py", "--port", str(port), "--workers", "1"],
            {"DATABASE": dsn}, f"{base}/docs"))
        self.kinds = {"read": (f"{base}/read/task-1", ""),
                      "create": (f"{base}/write?n=9", 'wrk.method = "POST"')}
        self.meter = CpuMeter(self.proc.pid, url)
        self.rows = {"read": [], "create": []}


def model(servers: list[Server], kind: str) -> str | None:
    """The ratio the CPU per request predicts: bare total / dossier total."""
    totals = {s.label: statistics.median(r[0] + r[2] for r in s.rows[kind])
              for s in servers if s.rows.get(kind)}
    if "bare" not in totals or "this" not in totals:
        return None
    return (f"  model {kind:>6}: CPU per request (server + PostgreSQL) this "
            f"{totals['this']:.2f} ms, bare {totals['bare']:.2f} ms: expected ratio "
            f"{totals['bare'] / totals['this']:.2f}×")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--only", choices=["read", "create", "search"], default=None)
    p.add_argument("--quiet", action="store_true", help="background workers off")
    p.add_argument("--against", type=Path, default=None,
                   help="another checkout (e.g. a worktree of main) measured alternately")
    p.add_argument("--pyspy", type=Path, default=None,
                   help="write a py-spy --gil profile of the first round (of --only, else read)")
    p.add_argument("--baseline", action="store_true",
                   help="measure the bare baseline endpoint too (read and create)")
    args = p.parse_args()
    with ExitStack() as stack:
        servers = [Server(stack, "this", None, args.quiet)]
        if args.against is not None:
            servers.append(Server(stack, "before", args.against.resolve(), args.quiet))
        if args.baseline:
            servers.append(Bare(stack))
        for kind in [args.only] if args.only else ["read", "create"]:  # search: --only
            measured = [s for s in servers if kind in s.kinds]
            for server in measured:
                target, script = server.kinds[kind]
                wrk_count(target, script, args.connections, 2)  # warm up
            for n in range(args.rounds):
                for server in (measured if n % 2 == 0 else measured[::-1]):
                    spy = args.pyspy if (n == 0 and kind == (args.only or "read") and
                                         server is servers[0]) else None
                    server.round(kind, args.connections, args.seconds, spy)
            for server in measured:
                print(server.report(kind), flush=True)
            line = model(servers, kind)
            if line:
                print(line, flush=True)
        print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
