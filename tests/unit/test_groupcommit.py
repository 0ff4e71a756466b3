"""Group commit of SQLite reads' audit records (dossier/core/groupcommit.py): every item
is written exactly once, nobody returns before the batch holding its item is written,
and a failed batch fails every waiter in it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dossier.core.groupcommit import BatchFailed, GroupCommit


def _run(threads: int, write_seconds: float, fail: set[int] | None = None,
         max_batch: int = 500) -> tuple[list[list[int]], dict[int, str]]:
    batches: list[list[int]] = []
    written: set[int] = set()
    outcome: dict[int, str] = {}
    guard = threading.Lock()

    def write(items: Sequence[int]) -> None:
        time.sleep(write_seconds)  # the transaction; others queue meanwhile
        with guard:
            batches.append(list(items))
            if fail and fail & set(items):
                raise RuntimeError("disk full")
            written.update(items)

    group: GroupCommit[int] = GroupCommit(write, max_batch=max_batch)
    start = threading.Barrier(threads)

    def one(n: int) -> None:
        start.wait()
        try:
            group.submit(n)
        except BatchFailed:
            outcome[n] = "failed"
            return
        with guard:  # it returned: its item must already be written
            outcome[n] = "ok" if n in written else "returned early"

    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    return batches, outcome


@settings(max_examples=15, deadline=None)
@given(threads=st.integers(1, 24), max_batch=st.integers(1, 8))
def test_each_item_is_written_once_and_nobody_returns_before_it_is(threads: int,
                                                                    max_batch: int) -> None:
    batches, outcome = _run(threads, 0.002, max_batch=max_batch)
    items = [n for b in batches for n in b]
    assert sorted(items) == list(range(threads))  # once each
    assert all(len(b) <= max_batch for b in batches)
    assert outcome == dict.fromkeys(range(threads), "ok")


def test_waiting_items_share_one_write() -> None:
    batches, outcome = _run(16, 0.05)
    assert set(outcome.values()) == {"ok"}
    assert len(batches) < 16  # the point: one write turn for many reads


def test_a_failed_batch_fails_each_of_its_waiters_and_no_other() -> None:
    batches, outcome = _run(12, 0.02, fail={5})
    failed_batch = next(b for b in batches if 5 in b)
    for n in range(12):
        assert outcome[n] == ("failed" if n in failed_batch else "ok"), (n, batches)


def test_the_error_carries_no_message_from_the_cause() -> None:
    def write(items: Sequence[str]) -> None:
        raise ValueError("Jean Dupont 85.01.01-123.45")  # never repeated

    with pytest.raises(BatchFailed) as caught:
        GroupCommit(write).submit("x")
    assert str(caught.value) == "ValueError"
