"""Instructions per request of the serving process, counted by valgrind (callgrind): the
same count for the same code run after run, whatever else the machine does, so a change
of 1 % shows where timings on a shared 2-core machine drift by 30 % (issue 13).

    python bench/instructions.py                        # read and create, 200 each
    python bench/instructions.py --against /work/wt/base --requests 300
    python bench/instructions.py --only read --keep     # keep the callgrind files
    python bench/instructions.py --only bare            # the bare baseline's read

`bare` counts the bare baseline of `bench/load.py` (`bench/baseline_app.py`, one worker,
`/read/{id}`: one SELECT and two INSERTs in one transaction) the same way, so a read's
count can be set beside what the framework and the driver cost with nothing of ours.

`dossier serve --workers 1` on PostgreSQL runs under `valgrind --tool=callgrind` with
instrumentation off (start-up at a few times native speed), the background workers off
(`bench/cpu.py` QUIET, and no background process) so the process does requests only. The
client warms each request kind up (30 requests), then instrumentation is turned on and
the counters zeroed, `--requests` requests are sent one at a time, and the counters are
dumped: total instructions / requests. PostgreSQL runs natively and is not counted.
`callgrind_annotate` reads a kept file (C-level: the interpreter, cryptography, libc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from cpu import QUIET  # noqa: E402
from load import FHIR, Seeded, database, free_port, process  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests import factories as f  # noqa: E402

WARM_UP = 30


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def total(path: Path) -> int:
    found = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(), re.M)
    if found is None:
        raise SystemExit(f"no instruction total in {path}")
    return int(found[1])


def count(pid: int, send: Callable[[], None], requests: int, label: str, out: Path) -> float:
    """Instructions per request of `send`, in the callgrind process `pid`."""
    for _ in range(WARM_UP):
        send()
    callgrind(pid, "-i", "on")
    callgrind(pid, "-z")
    for _ in range(requests):
        send()
    before = set(out.glob(f"{label}.*"))
    callgrind(pid, "-d")
    callgrind(pid, "-i", "off")
    deadline = time.monotonic() + 30
    while not (dumped := set(out.glob(f"{label}.*")) - before):
        if time.monotonic() > deadline:
            raise SystemExit("callgrind wrote no dump")
        time.sleep(0.2)
    time.sleep(0.5)  # the file is complete once callgrind_control returned
    return total(max(dumped, key=os.path.getmtime)) / requests


def measure_bare(requests: int, out: Path) -> float:
    """The bare baseline's read (bench/baseline_app.py, one worker) per request."""
    with ExitStack() as stack:
        _, url = stack.enter_context(database("postgres"))
        assert url is not None
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        port = free_port()
        serve = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}/bare.%p", sys.executable, "baseline_app.py",
                 "--port", str(port), "--workers", "1"]
        env = {"DATABASE": dsn, "PYTHONMALLOC": "malloc"}
        proc = stack.enter_context(process(serve, env, f"http://127.0.0.1:{port}/docs"))
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}",
                                                  timeout=120))

        def read() -> None:
            assert client.get("/read/task-1").status_code == 200

        return count(proc.pid, read, requests, "bare", out)


def measure(label: str, code: Path | None, kinds: list[str], requests: int,
            out: Path) -> dict[str, float]:
    """Instructions per request of each kind, for the code at `code` (None: this one)."""
    found: dict[str, float] = {}
    with ExitStack() as stack:
        data, url = stack.enter_context(database("postgres"))
        assert url is not None
        env = {"DATABASE_URL": url, **QUIET, "DOSSIER_BACKGROUND_PROCESS": "false",
               "PYTHONMALLOC": "malloc"}  # malloc: valgrind follows it, not pymalloc arenas
        if code is not None:
            env["PYTHONPATH"] = str(code)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}/{label}.%p", sys.executable, "-m", "dossier",
                 "serve", "--data-dir", str(data), "--port", str(port), "--workers", "1"]
        proc = stack.enter_context(process(serve, env, f"{base}/fhir/metadata"))
        world = Seeded(base, data, env, 1, 50)
        body = json.dumps(f.task(f"Patient/{world.patients[0]}"))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=120, headers={
            "Authorization": f"Bearer {world.gp_token}", "Content-Type": FHIR}))

        def read() -> None:
            assert client.get(f"/fhir/Task/{world.tasks[7]}").status_code == 200

        def create() -> None:
            assert client.post("/fhir/Task", content=body).status_code == 201

        def metadata() -> None:  # the framework and middleware alone: no unit, no SQL
            assert client.get("/fhir/metadata").status_code == 200

        for kind in kinds:
            send = {"read": read, "create": create, "metadata": metadata}[kind]
            found[kind] = count(proc.pid, send, requests, label, out)
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--only", choices=["read", "create", "metadata", "bare"], default=None)
    p.add_argument("--against", type=Path, default=None,
                   help="another checkout (e.g. a worktree of main) measured the same way")
    p.add_argument("--keep", action="store_true", help="keep the callgrind files")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    kinds = [args.only] if args.only else ["read", "create"]
    out = Path(tempfile.mkdtemp(prefix="dossier-callgrind-"))
    try:
        if kinds == ["bare"]:
            bare = measure_bare(args.requests, out)
            print(f"  bare: {bare / 1e6:.3f} M instructions/request (bench/baseline_app.py "
                  "/read)", flush=True)
            return 0
        this = measure("this", None, kinds, args.requests, out)
        before = (measure("before", args.against.resolve(), kinds, args.requests, out)
                  if args.against else None)
        for kind in kinds:
            line = f"{kind:>6}: {this[kind] / 1e6:.3f} M instructions/request"
            if before is not None:
                line += (f", before {before[kind] / 1e6:.3f} M "
                         f"({100 * (this[kind] / before[kind] - 1):+.1f} %)")
            print(line, flush=True)
    finally:
        if args.keep:
            print(f"callgrind files in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
