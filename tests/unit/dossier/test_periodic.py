"""The audit sequencer runs at a fixed rate: the next start is one period after the
previous one was due, not one period after it ended, and never a burst to catch up."""

from __future__ import annotations

import threading
import time
from typing import Any

from dossier.background import next_start, periodic


def test_next_start_keeps_the_rate() -> None:
    assert next_start(10.0, 10.2, 0.5) == 10.5  # a run of 0.2 s does not shift the rate
    assert next_start(10.0, 10.7, 0.5) == 10.7  # an overlong run: start again now, once
    assert next_start(10.5, 10.7, 0.5) == 11.0


def test_a_fixed_rate_worker_runs_and_stops() -> None:
    ran = threading.Event()
    calls: list[Any] = []

    def job() -> None:
        calls.append(1)
        ran.set()

    stop = periodic("test", 0.01, job, fixed_rate=True)
    assert ran.wait(5)
    stop()
    count = len(calls)
    time.sleep(0.05)
    assert len(calls) == count  # stopped
