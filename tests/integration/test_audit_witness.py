"""Witnesses (issue 16): the service publishes each signed tree head to a witness — a real
loopback HTTP server or a directory — and `dossier audit verify --since` catches a
superuser who deletes the tail of the log (records, leaves, nodes and heads) or lets the
service rewrite history after it, which `verify` alone cannot see."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from audit.checkpoint import verify_tree_head
from dossier.app import create_app
from tests.integration.conftest import World, make_settings
from tests.integration.test_audit import _unprotect


class WitnessServer:
    """Keeps every head POSTed to it; GET answers the latest."""

    def __init__(self) -> None:
        self.heads: list[dict[str, Any]] = []
        self.refuse = False
        witness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if witness.refuse:
                    self.send_response(503)
                else:
                    witness.heads.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:
                if not witness.heads:
                    self.send_response(404)
                    self.end_headers()
                    return
                latest = max(witness.heads, key=lambda h: h["tree_size"])
                body = json.dumps(latest).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/heads"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def witness() -> Iterator[WitnessServer]:
    server = WitnessServer()
    yield server
    server.close()


def _world(data_dir: Path, database_url: str | None, target: str) -> Iterator[World]:
    app = create_app(make_settings(data_dir, database_url, audit_witness=target))
    try:
        with TestClient(app) as client:
            yield World(app, client)
    finally:
        app.state.runtime.engine.dispose()


def _activity(world: World, reads: int = 4) -> int:
    pid = world.consented()
    for _ in range(reads):
        world.gp.get(f"/fhir/Patient/{pid}")
    return int(world.app.state.runtime.integrate_audit())


def _verify(data_dir: Path, database_url: str | None,
            *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "dossier", "audit", "verify", "--data-dir",
                           str(data_dir), *extra], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def _truncate(world: World, backend: str, keep: int) -> None:
    """What a superuser can do: drop the protection and delete the tail with its leaves,
    nodes and heads, leaving a shorter log that is consistent in itself."""
    with world.app.state.runtime.engine.begin() as conn:
        _unprotect(conn, backend)
        conn.execute(text("DELETE FROM audit_records WHERE id IN (SELECT record_id FROM "
                          "audit_leaves WHERE leaf_index >= :k)"), {"k": keep})
        conn.execute(text("DELETE FROM audit_leaves WHERE leaf_index >= :k"), {"k": keep})
        conn.execute(text("DELETE FROM audit_tree_heads WHERE tree_size > :k"), {"k": keep})
        for level in range(32):
            conn.execute(text("DELETE FROM audit_nodes WHERE level = :l AND node_index >= :i"),
                         {"l": level, "i": keep >> level})


def test_heads_go_to_an_http_witness_and_truncation_is_caught(
        witness: WitnessServer, data_dir: Path, database_url: str | None,
        backend: str) -> None:
    for world in _world(data_dir, database_url, witness.url):
        size = _activity(world)
        assert witness.heads and witness.heads[-1]["tree_size"] == size
        jwk = world.anonymous.get("/audit/public-key").json()
        verify_tree_head(witness.heads[-1], jwk)
        ok = _verify(data_dir, database_url, "--since", witness.url)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"published head of size {size}" in ok.stdout
        _truncate(world, backend, keep=size - 3)
        world.app.state.runtime.integrate_audit()  # the sequencer signs the shorter log
    alone = _verify(data_dir, database_url)
    assert alone.returncode == 0, alone.stdout  # nothing inside the database shows it
    caught = _verify(data_dir, database_url, "--since", witness.url)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "truncated" in caught.stdout and str(size) in caught.stdout


def test_a_directory_witness_catches_a_rewritten_history(
        tmp_path: Path, data_dir: Path, database_url: str | None, backend: str) -> None:
    folder = tmp_path / "witness"
    for world in _world(data_dir, database_url, str(folder)):
        size = _activity(world)
        published = json.loads((folder / "latest.json").read_text())
        assert published["tree_size"] == size
        assert (folder / f"{size:020d}.json").exists()
        more = _activity(world)  # the log grows past the published head: still fine
        assert _verify(data_dir, database_url, "--since", str(folder / f"{size:020d}.json")
                       ).returncode == 0
        _truncate(world, backend, keep=size - 2)
        world.app.state.runtime.integrate_audit()
        _activity(world, reads=more - size + 6)  # history rewritten past the old size
    assert _verify(data_dir, database_url).returncode == 0
    caught = _verify(data_dir, database_url, "--since", str(folder / f"{size:020d}.json"))
    assert caught.returncode == 1
    assert "fork" in caught.stdout, caught.stdout


def test_the_log_keeps_going_when_the_witness_is_away(
        witness: WitnessServer, data_dir: Path, database_url: str | None) -> None:
    witness.refuse = True
    for world in _world(data_dir, database_url, witness.url):
        size = _activity(world)
        assert world.anonymous.get("/audit/tree-head").json()["tree_size"] == size
        assert witness.heads == []
        witness.refuse = False
        assert world.app.state.runtime.integrate_audit() == size  # nothing new to sign…
        assert witness.heads[-1]["tree_size"] == size  # …but the head is published now


def test_a_head_the_log_did_not_sign_is_refused(tmp_path: Path, data_dir: Path,
                                               database_url: str | None) -> None:
    for world in _world(data_dir, database_url, str(tmp_path / "w")):
        _activity(world)
    head = json.loads((tmp_path / "w" / "latest.json").read_text())
    head["checkpoint"] = head["checkpoint"].replace("\n", "\n1", 1)
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps(head))
    r = _verify(data_dir, database_url, "--since", str(bogus))
    assert r.returncode == 1 and "not one this log signed" in r.stdout
    missing = _verify(data_dir, database_url, "--since", "http://127.0.0.1:9/none")
    assert missing.returncode == 2 and "witness unreachable" in missing.stderr
