"""Group commit for the audit records of SQLite reads.

SQLite has one write lock, and every read appends an audit record. A read that cannot
append in its own transaction (the lock is taken) hands its records here and waits: the
first waiter writes everything queued so far in one transaction, then wakes the others.
One lock turn serves many reads, and no read answers before its record is committed (if
the batch cannot be written, every read in it fails closed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Ticket(Generic[T]):
    __slots__ = ("done", "error", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None


class BatchFailed(Exception):
    """The batch holding this item could not be written (the cause's type is named)."""


class GroupCommit(Generic[T]):
    """`submit(item)` returns once `write` has committed a batch holding `item`, or raises
    BatchFailed when that batch could not be written."""

    def __init__(self, write: Callable[[Sequence[T]], None], max_batch: int = 500) -> None:
        self._write = write
        self._max = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Ticket[T]] = []
        self._writing = False

    def submit(self, item: T) -> None:
        ticket = _Ticket(item)
        with self._cond:
            self._queue.append(ticket)
        while True:
            with self._cond:
                while not ticket.done and self._writing:
                    self._cond.wait()
                if ticket.done:
                    break
                # nobody is writing and this ticket is still queued: lead one batch
                batch, self._queue = self._queue[:self._max], self._queue[self._max:]
                self._writing = True
            error: BaseException | None = None
            try:
                self._write([t.item for t in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter of the batch
                error = exc
            with self._cond:
                for t in batch:
                    t.done, t.error = True, error
                self._writing = False
                self._cond.notify_all()
        if ticket.error is not None:
            raise BatchFailed(type(ticket.error).__name__)
