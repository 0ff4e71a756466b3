"""`dossier serve --workers N` on PostgreSQL (SPEC §15): every worker answers, the
background workers run in exactly one process (`dossier worker`, which `serve` starts
beside its serving processes), and a serving process takes over when it dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.livesrv import free_port

pytestmark = pytest.mark.postgres
LEAD = re.compile(r"background workers run in process (\d+)")


class Server:
    def __init__(self, pg_url: str, data_dir: Path, workers: int) -> None:
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": pg_url, "DOSSIER_AUDIT_SEQUENCER_SECONDS": "0.5"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dossier", "serve", "--data-dir", str(data_dir),
             "--port", str(self.port), "--workers", str(workers)],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.base = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def leaders(self) -> list[int]:
        return [int(m[1]) for line in list(self.lines) if (m := LEAD.search(line))]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/fhir/metadata").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("server did not start: " + "".join(self.lines[-20:]))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def command_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:  # it has ended
        return []


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_three_workers_run_the_background_once_and_hand_over(pg_url: str,
                                                               tmp_path: Path) -> None:
    server = Server(pg_url, tmp_path / "data", 3)
    try:
        server.wait_ready()
        time.sleep(4)  # every worker has had time to campaign
        assert len(server.leaders()) == 1, server.lines
        token = subprocess.run(
            [sys.executable, "-m", "dossier", "dev-token", "--data-dir",
             str(tmp_path / "data"), "--fhir-user", "Operator/admin", "--roles", "admin"],
            env={**os.environ, "DATABASE_URL": pg_url}, capture_output=True, text=True,
            check=True).stdout.strip()
        with httpx.Client(base_url=server.base,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            size = client.get("/audit/tree-head").json()["tree_size"]
            answers = {client.get("/fhir/Group").status_code for _ in range(30)}
            assert answers == {200}  # whichever worker answers, the token holds
            # the one sequencer keeps integrating what every worker appended
            assert wait_for(lambda: client.get("/audit/tree-head").json()["tree_size"]
                            >= size + 30, 20)
        first = server.leaders()[0]
        assert command_of(first)[-2:] == ["dossier", "worker"]  # serve's background process
        assert parent_of(first) == server.proc.pid
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: len(server.leaders()) == 2, 30), server.lines
        second = server.leaders()[1]
        assert second != first and "worker" not in command_of(second)  # a serving one
        assert any("background process ended" in line for line in server.lines)
        time.sleep(3)
        assert len(server.leaders()) == 2  # and still exactly one at a time
    finally:
        server.stop()


def test_the_background_process_ends_with_serve(pg_url: str, tmp_path: Path) -> None:
    """Stopped with `serve`; and when `serve` is killed outright, it ends by itself."""
    for ending in (signal.SIGINT, signal.SIGKILL):
        server = Server(pg_url, tmp_path / "data", 1)  # started, then started again
        try:
            server.wait_ready()
            assert wait_for(lambda s=server: s.leaders() != [], 10), server.lines
            (worker,) = server.leaders()
            assert command_of(worker)[-2:] == ["dossier", "worker"]
            if ending == signal.SIGKILL:
                server.proc.kill()
                server.proc.wait()
                assert wait_for(  # it ends by itself (gone, or a zombie until reaped)
                    lambda w=worker: command_of(w)[-2:] != ["dossier", "worker"], 20)
            else:
                server.stop()
                assert command_of(worker) == []  # stopped and reaped before serve exits
            assert not any("background process ended" in line for line in server.lines)
        finally:
            server.stop()


def test_dossier_worker_needs_postgresql(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, "-m", "dossier", "worker", "--data-dir",
                           str(tmp_path / "data")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path,
                                                              command: str) -> None:
    """PostgreSQL down (nothing listens on the port) or the database missing: the person
    starting the service reads what is wrong in one line, with no password."""
    closed = free_port()  # bound then released: nothing listens there
    for url, names in ((f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{closed}/dossier",
                        str(closed)),
                       ("postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/no_such_db_x",
                        "no_such_db_x")):
        args = [sys.executable, "-m", "dossier", command, "--data-dir", str(tmp_path / "d")]
        if command == "serve":
            args += ["--port", str(free_port())]
        done = subprocess.run(
            args,
            env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
            timeout=60, check=False)
        assert done.returncode == 3, done.stderr[-400:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the database cannot be "
                                                       "reached"), lines[-3:]
        assert names in lines[0] and "s3cret" not in done.stderr
