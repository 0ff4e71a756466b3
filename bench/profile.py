"""Where a consented read's time goes in the real server (issue 13): `dossier serve`
(one worker) under wrk while py-spy samples it, then inclusive shares by phase.

    python bench/profile.py                    # PostgreSQL
    python bench/profile.py --database sqlite --seconds 20

py-spy samples every thread of the server process 200 times a second; a sample whose
leaf frame waits (for the database, a socket, a queue) is wall time, the others are CPU
time. A sample counts towards a phase when any frame of its stack matches the
phase's pattern, so shares overlap (inclusive time). The raw collapsed stacks are kept
for a flame graph (`--keep FILE`).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import LUA_AUTH, Seeded, database, free_port, process  # noqa: E402

# (phase, pattern over "function (file:line)" frames), in the order printed.
PHASES = [
    ("the request's unit (in a worker thread)", r"in_unit\.<locals>\.run"),
    ("  actor resolution (token + directory, in the unit)", r"resolve_principal"),
    ("  consent (access.py + consent/)", r"(core/access\.py|/consent/)"),
    ("  opening sealed fields", r"(/crypto/|sealing\.py)"),
    ("  audit record", r"auditing\.py"),
    ("  commit", r"(do_commit|Connection\.commit)"),
    ("  waiting for PostgreSQL/SQLite answers", r"(Connection\.wait \(psycopg|sqlite3)"),
    ("  SQLAlchemy compile + result handling",
     r"sqlalchemy/(sql/compiler|engine/result|orm/loading)"),
    ("HTTP + ASGI on the event loop (not idle)", r"^(?!.*WorkerThread)(?!.*EpollSelector).*"
                                                 r"(uvicorn/|starlette/|fastapi/)"),
    ("event loop idle (epoll)", r"EpollSelector\.select"),
    ("idle worker threads", r"Queue\.get"),
]


# A leaf frame that waits (for the database, a socket or a queue): not CPU.
WAITING = re.compile(r"^(Connection\.wait|EpollSelector\.select|Condition\.wait|Queue\.get|"
                     r"Event\.wait|Lock\.acquire)")


def sample(pid: int, seconds: int, out: Path) -> None:
    subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                    "--subprocesses", "--duration", str(seconds),
                    "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"],
                   check=True, capture_output=True)


Shares = tuple[int, list[tuple[str, float]], list[tuple[str, float]]]


def shares(collapsed: Path, cpu_only: bool) -> Shares:
    total = 0
    by_phase: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        if cpu_only and WAITING.match(stack.split(";")[-1]):
            continue
        total += n
        for name, pattern in PHASES:
            if re.search(pattern, stack):
                by_phase[name] += n
        leaves[stack.split(";")[-1]] += n
    phase = [(name, 100 * by_phase[name] / max(total, 1)) for name, _ in PHASES]
    top = [(leaf, 100 * n / max(total, 1)) for leaf, n in leaves.most_common(12)]
    return total, phase, top


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--keep", type=Path, help="write the collapsed stacks here")
    args = p.parse_args()
    with database(args.database) as (data, url):
        env = {"DATABASE_URL": url} if url else {}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data), "--port",
                 str(port), "--workers", "1"]
        with process(serve, env, f"{base}/fhir/metadata") as proc:
            world = Seeded(base, data, env, 1, 50)
            script = LUA_AUTH.format(token=world.gp_token, body="")
            with tempfile.TemporaryDirectory() as tmp:
                lua = Path(tmp) / "read.lua"
                lua.write_text(script)
                raw = args.keep or Path(tmp) / "stacks.txt"
                load = subprocess.Popen(
                    ["wrk", f"-t{min(2, args.connections)}", f"-c{args.connections}",
                     f"-d{args.seconds + 4}s", "-s", str(lua),
                     f"{base}/fhir/Task/{world.tasks[7]}"],
                    stdout=subprocess.PIPE, text=True)
                time.sleep(2)
                sample(proc.pid, args.seconds, raw)
                wall, gil = shares(raw, cpu_only=False), shares(raw, cpu_only=True)
                wrk_out = load.communicate()[0]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
    print(f"{args.database}: {rps[1] if rps else '?'} requests/s under {args.connections} "
          f"connections; {wall[0]} wall samples, {gil[0]} of them on CPU (leaf not waiting)\n")
    print("| phase (inclusive) | share of wall samples | share of on-CPU samples |")
    print("|---|---:|---:|")
    for (name, w), (_, g) in zip(wall[1], gil[1], strict=True):
        print(f"| {name} | {w:.0f} % | {g:.0f} % |")
    print("\n| hottest on-CPU leaf frame | share |\n|---|---:|")
    for leaf, pct in gil[2]:
        print(f"| `{leaf[:90]}` | {pct:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
