"""The wiring of one running service: engine, keys, audit log, and the unit of work that
builds the per-request Repository (the choke point).

Only this module opens request transactions. Routes and operations get a Repository
already inside its unit (`fhir/routes.py` `in_unit`); they never see the Runtime.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlalchemy.util.concurrency import in_greenlet

from audit.checkpoint import Signer, TreeHeadJSON
from audit.store import AuditStore
from auth import resolve_principal
from dossier.core.auditing import RequestAudit
from dossier.core.context import UNRESOLVED, RequestContext
from dossier.core.directory import StoreDirectory
from dossier.core.groupcommit import GroupCommit
from dossier.core.repository import ReadAlong, Repository, Sealer, Services
from dossier.core.sealing import FieldSealer
from dossier.crypto import KeyProvider
from dossier.crypto.errors import KeyUnavailable
from dossier.db.engine import take_writer
from dossier.db.tx import Tx, UnitTx
from dossier.errors import DossierError, ServiceUnavailable
from dossier.settings import Settings
from dossier.telemetry import span_factory

log = logging.getLogger("dossier")


class StaleConnection(Exception):
    """The pooled connection was dead before the unit did anything: safe to run again."""


def _lost(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    tracer_provider: TracerProvider
    tracer: Tracer
    key_provider: KeyProvider
    audit_store: AuditStore
    signer: Signer
    query_key: bytes
    policy_factory: Any
    extras: dict[str, Any] = field(default_factory=dict)
    on_change: Any = None  # (Repository, Stored) -> None, for every write (subscriptions)
    # post-commit actions a unit may ask for by name (wake a worker, checkpoint the WAL)
    after_commit: dict[str, Callable[[], None]] = field(default_factory=dict)
    # publishes a signed tree head to the witness (DOSSIER_AUDIT_WITNESS), or None
    publish_head: Callable[[TreeHeadJSON], None] | None = None
    published_size: int = -1
    read_audits: GroupCommit[RequestAudit] | None = None  # SQLite: see _write_pending
    # PostgreSQL: the engine of the units run on the event loop (`on_loop`), or None
    loop_engine: AsyncEngine | None = None
    _read_binds: dict[int, Engine] = field(default_factory=dict, init=False, repr=False)
    _spawned: list[threading.Thread] = field(default_factory=list, init=False, repr=False)
    _spawn_lock: threading.Lock = field(default_factory=threading.Lock, init=False,
                                        repr=False)
    _search_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
        field(default_factory=weakref.WeakKeyDictionary)
    _unit_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                              anyio.CapacityLimiter] = \
        field(default_factory=weakref.WeakKeyDictionary)
    _unit_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
        field(default_factory=weakref.WeakKeyDictionary)

    def spawn(self, name: str, target: Callable[[], Any]) -> None:
        """Run `target()` in a daemon thread that `settle` waits for at shutdown."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._spawn_lock:  # started inside: never pruned nor joined before its start
            self._spawned[:] = [t for t in self._spawned if t.is_alive()]
            self._spawned.append(thread)
            thread.start()

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait, `timeout` seconds at most in all, for the threads `spawn` started (an
        export job), so that none holds a pooled connection when the engines are disposed
        (a connection checked out then would be dropped unclosed). True when all ended."""
        deadline = time.monotonic() + timeout
        with self._spawn_lock:
            threads = list(self._spawned)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def search_gate(self) -> asyncio.Semaphore | None:
        """The turn a search waits for (settings.search_concurrency), or None (no limit).
        One process on SQLite serves every request with one interpreter lock: without a
        limit a few costly searches take the processor from every cheap read. One at a
        time there: with two, a read's p99 under the mixed load was twice as long
        (docs/benchmarks.md, "Session 14")."""
        limit = self.settings.search_concurrency
        if limit is None:
            limit = 1 if self.engine.dialect.name == "sqlite" else 0
        if limit == 0:
            return None
        return _loop_semaphore(self._search_gates, limit)

    def unit_limiter(self) -> anyio.CapacityLimiter:
        """The turns of reads and writes (not searches) on SQLite: settings.unit_threads
        worker threads per process. A unit is mostly interpreter work, and with 16
        requests in 16 threads they took the interpreter lock from each other and from
        the event loop in turns, the slowest answers waiting longest (docs/benchmarks.md,
        "Turns")."""
        loop = asyncio.get_running_loop()
        limiter = self._unit_limiters.get(loop)
        if limiter is None:
            limiter = self._unit_limiters[loop] = anyio.CapacityLimiter(
                self.settings.unit_threads)
        return limiter

    def unit_gate(self) -> asyncio.Semaphore:
        """The turns of reads and writes on PostgreSQL: settings.unit_threads units in
        flight on the event loop per process, each holding a pooled connection. An
        asyncio semaphore: a free turn is taken without giving the loop away, where
        anyio's limiter yields once on every acquisition (an extra pass of the loop per
        request: docs/benchmarks.md, "Session 14"). Waiters are served in order."""
        return _loop_semaphore(self._unit_gates, self.settings.unit_threads)

    def sealer(self) -> Sealer:
        """A fresh sealer per request: data keys never outlive the request."""
        return FieldSealer(self.key_provider)

    def services(self) -> Services:
        return Services(settings=self.settings, key_provider=self.key_provider,
                        audit_store=self.audit_store, issuer=self.extras.get("dev_issuer"),
                        is_sqlite=self.engine.dialect.name == "sqlite")

    @property
    def on_loop(self) -> bool:
        """Units run on the event loop (PostgreSQL), not on worker threads."""
        return self.loop_engine is not None

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine a unit may run on: the threads' and the event loop's."""
        if self.loop_engine is None:
            return (self.engine,)
        return (self.engine, self.loop_engine.sync_engine)

    def _bind(self) -> Engine:
        """The engine of this unit: the event loop's inside a unit run there
        (fhir/routes.py `in_unit`), else the threads' one."""
        if self.loop_engine is not None and in_greenlet():
            return self.loop_engine.sync_engine
        return self.engine

    def _session(self, writes: bool) -> UnitTx:
        """The unit's transaction: a Core connection (dossier/db/tx.py), not an ORM
        Session, whose bookkeeping the stores never use."""
        engine = self._bind()
        # PostgreSQL: a unit opens its transaction only when it needs one (UnitTx)
        deferred = engine.dialect.name == "postgresql"
        if writes:
            return UnitTx(engine, deferred=deferred)
        bind = self._read_binds.get(id(engine))
        if bind is None:  # made once: an option engine per unit cost ~1 %
            bind = self._read_binds[id(engine)] = engine.execution_options(dossier_read=True)
        return UnitTx(bind, deferred=deferred)

    @contextmanager
    def unit(self, ctx: RequestContext, *, writes: bool = True,
             read_along: tuple[str, str] | None = None) -> Iterator[Repository]:
        """One transaction, one Repository, its audit records in the same transaction.

        The principal is resolved first, inside this transaction. On a refusal or an error
        the work is rolled back and the audit records of the failure are written in a fresh
        transaction. If no audit record can be written the request fails and returns
        nothing (fail closed). A read unit (`writes=False`) on SQLite reads without the
        write lock; its audit records are appended in the same transaction when the lock
        is free, else in the next one before anything is returned. `read_along` (type,
        id): the unit's work is that one read, or a write in that dossier; on PostgreSQL
        a practitioner's principal and that row are read in one statement (ReadAlong),
        with the active subscriptions for a write."""
        audit = RequestAudit(self.audit_store, ctx, self.query_key)
        services = self.services()
        repo: Repository | None = None
        along = ReadAlong(*read_along, writes_at=ctx.now if writes else None) \
            if read_along and not services.is_sqlite else None
        try:
            with self._session(writes) as session, session.begin():
                if ctx.claims is not None:  # a token: who it names, from this snapshot
                    ctx.principal = UNRESOLVED
                    try:
                        directory = StoreDirectory(
                            None, session, self.sealer().blind,
                            along.practitioner_rows if along is not None else None)
                        ctx.principal = resolve_principal(ctx.claims, directory, ctx.now)
                    except DBAPIError as exc:
                        if _lost(exc):  # the first statement met a dead connection
                            raise StaleConnection from None
                        raise
                # PostgreSQL: the principal (with the row read or the dossier written
                # along) was a statement on its own; what follows opens the transaction
                session.begin_on_next()
                policy = self.policy_factory(session, ctx)
                repo = Repository(
                    session, ctx, policy=policy, sealer=self.sealer(), audit=audit,
                    page_size=self.settings.page_size_default,
                    max_page_size=self.settings.page_size_max,
                    tracer=span_factory(self.tracer), on_change=self.on_change,
                    services=services, read_along=along)
                if writes and session.deferred:  # its rows go in with its audit records
                    repo.hold_writes()
                yield repo
                # reads made under a break-the-glass grant: purpose BTG, urgent notice
                for patient_id in getattr(policy, "break_glass_used", ()):
                    audit.urgent(patient_id)
                if writes or not services.is_sqlite:
                    # the rows held (a create's) and the audit records: when that is one
                    # statement and nothing else ran since the principal, it commits on
                    # its own (no BEGIN, no COMMIT round trip)
                    audit.flush(session, alone=session.commit_alone,
                                held=repo.held_writes())
                else:
                    self._flush_read(session, audit)
        except DossierError as exc:
            audit.fail(exc.status)
            self._write_failure(audit)
            raise
        except StaleConnection:
            raise
        except KeyUnavailable:
            audit.fail(503)
            self._write_failure(audit)
            raise ServiceUnavailable("A key this request needs is unavailable; nothing was "
                                     "changed or returned. Try again later.") from None
        except Exception as exc:
            if ctx.principal is UNRESOLVED and ctx.claims is not None:
                raise  # the token names nobody valid (401): nothing was touched
            audit.fail(503 if _lost(exc) else 500)
            self._write_failure(audit)
            if _lost(exc):
                raise ServiceUnavailable("The connection to the database was lost; nothing "
                                         "was changed or returned. Try again.") from None
            raise
        if audit.pending():  # a SQLite read whose records wait for the write lock
            self._write_pending(audit)
        for name in repo.post_commit if repo is not None else ():
            action = self.after_commit.get(name)
            if action is not None:
                action()

    def _flush_read(self, session: Tx, audit: RequestAudit) -> None:
        """SQLite read unit: append in this transaction when the write lock is free now;
        else (taken, or moved on since this snapshot: SQLITE_BUSY) right after, in the
        group commit of the reads that are waiting (core/groupcommit.py)."""
        if not take_writer(session.connection(), wait=False):  # released at this end
            audit.keep_pending()
            return
        try:
            with session.begin_nested():
                audit.flush(session)
        except OperationalError:
            audit.keep_pending()

    def _write_pending(self, audit: RequestAudit) -> None:
        try:
            if self.read_audits is None:
                self.read_audits = GroupCommit(self._write_audits)
            self.read_audits.submit(audit)
        except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
            log.error("audit record could not be written (%s): request refused",
                      type(exc).__name__)
            raise ServiceUnavailable("The access log cannot be written, so the request was "
                                     "refused. Nothing was returned.") from None

    def _write_audits(self, audits: Sequence[RequestAudit]) -> None:
        with UnitTx(self.engine) as tx, tx.begin():
            for audit in audits:
                audit.flush(tx)

    def _write_failure(self, audit: RequestAudit) -> None:
        try:
            with UnitTx(self._bind()) as tx, tx.begin():
                audit.flush(tx)
        except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
            log.error("audit record could not be written (%s): request refused",
                      type(exc).__name__)
            raise ServiceUnavailable("The access log cannot be written, so the request was "
                                     "refused. Nothing was changed or returned.") from None

    @contextmanager
    def system_session(self) -> Iterator[Tx]:
        """A transaction for the service's own background work (never a request's)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def integrate_audit(self) -> int:
        """Run the sequencer once: sequence pending records and sign a tree head."""
        with Session(self.engine) as session, session.begin():
            size = self.audit_store.integrate(session, self.signer, datetime.now(UTC))
        if self.publish_head is not None and size != self.published_size:
            self._publish()
        return size

    def _publish(self) -> None:
        """Give the latest signed head to the witness; on failure retry on the next run."""
        with self.system_session() as session:
            head = self.audit_store.tree_head(session)
        if head is None or self.publish_head is None:
            return
        try:
            self.publish_head(head)
        except Exception as exc:  # noqa: BLE001 - the witness is outside; keep sequencing
            log.warning("tree head %d not published to the witness: %s", head["tree_size"],
                        exc)
            return
        self.published_size = head["tree_size"]


def _loop_semaphore(gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                     asyncio.Semaphore],
                    limit: int) -> asyncio.Semaphore:
    """The running loop's semaphore of `limit` turns in `gates` (one per event loop: a
    semaphore belongs to the loop it was made on)."""
    loop = asyncio.get_running_loop()
    gate = gates.get(loop)
    if gate is None:
        gate = gates[loop] = asyncio.Semaphore(limit)
    return gate
