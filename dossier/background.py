"""Background work, once per deployment: the audit sequencer, the notifier, subscription
deliveries and maintenance (expired exports, export jobs nobody took).

With several server processes on PostgreSQL, each process runs a `Leadership` thread that
tries to hold a session-level advisory lock on a connection of its own; the one holder
runs the workers. When its connection or process dies, PostgreSQL releases the lock and
another process takes over within `RETRY_SECONDS`. On SQLite there is one process, and
it leads."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

log = logging.getLogger("dossier")

LEADER_LOCK = 0x646F7377  # "dosw": PostgreSQL advisory lock key of the background leader
RETRY_SECONDS = 2.0


def next_start(due: float, now: float, seconds: float) -> float:
    """Fixed rate: the start after the one due at `due`, `seconds` later — or now, when a
    run took longer than that (no burst of runs to catch up)."""
    return max(due + seconds, now)


def periodic(name: str, seconds: float, job: Callable[[], Any], *,
             fixed_rate: bool = False) -> Callable[[], None]:
    """Run `job` every `seconds` in a daemon thread; returns the stop function. By default
    `seconds` pass between the end of a run and the next start; with `fixed_rate`, between
    starts (the audit sequencer: a head signed at most about `seconds` plus one run after
    a commit, not two runs)."""
    stop = threading.Event()

    def loop() -> None:
        due = time.monotonic() + seconds
        while not stop.wait(max(0.0, due - time.monotonic()) if fixed_rate else seconds):
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - a worker must keep running
                log.error("%s failed: %s", name, type(exc).__name__)
            due = next_start(due, time.monotonic(), seconds)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=10)

    return halt


def announce(pid: int) -> None:
    """One line for the operator (and the tests) each time a process takes the lead."""
    print(f"background workers run in process {pid}", file=sys.stderr, flush=True)


class Leadership:
    """Runs `start()` (which returns stop functions) only while this process holds the
    leader lock; `on_lead(pid)` is told each time it takes over (for logs and tests)."""

    def __init__(self, engine: Any, start: Callable[[], list[Callable[[], None]]],
                 on_lead: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.start_workers = start
        self.on_lead = on_lead or announce
        self._stop = threading.Event()
        self._workers: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self.tried = threading.Event()  # set once the first campaign has been decided

    def start(self) -> None:
        if self.engine.dialect.name != "postgresql":
            self._lead()
            self.tried.set()
            return
        self._thread = threading.Thread(target=self._campaign, name="leadership",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._halt()

    def _lead(self) -> None:
        self._workers = self.start_workers()
        self.on_lead(os.getpid())

    def _halt(self) -> None:
        for halt in self._workers:
            halt()
        self._workers = []

    def _campaign(self) -> None:
        while not self._stop.is_set():
            try:
                with self.engine.connect() as conn:
                    held = conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                        {"k": LEADER_LOCK}).scalar()
                    conn.commit()
                    if held:
                        self._lead()
                        self.tried.set()
                        try:
                            while not self._stop.wait(RETRY_SECONDS):
                                conn.execute(text("SELECT 1"))  # still holding it?
                                conn.commit()
                        finally:
                            self._halt()
                            if not conn.invalidated:
                                conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                             {"k": LEADER_LOCK})
                                conn.commit()
            except Exception as exc:  # noqa: BLE001 - a lost connection: campaign again
                log.warning("background leadership: %s", type(exc).__name__)
                self._halt()
            self.tried.set()
            self._stop.wait(RETRY_SECONDS)
