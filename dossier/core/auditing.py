"""The audit sink of the choke point: collects what the Repository did during one request
and appends the records (one per person touched) in the request's own transaction, with
an outbox row for each notification. On failure, the records of the refusal are written
in a fresh transaction; if they cannot be written, the request fails (fail closed)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, union_all
from sqlalchemy.orm import Session

from audit.record import Agent, Event, build_record, is_consultation
from audit.store import AuditStore
from auth.tokenevents import TokenEvent
from dossier.core.context import RequestContext
from dossier.core.repository import AuditNote
from dossier.db.bulk import Shapes, insert_tables, tables_ctes, tables_params
from dossier.db.models import notification_outbox
from dossier.db.prepared import Prepared
from dossier.db.tx import Tx

OUTCOME_BY_STATUS = {401: "denied", 403: "denied", 404: "not-found", 410: "not-found"}


def outcome_for(status: int) -> str:
    if status in OUTCOME_BY_STATUS:
        return OUTCOME_BY_STATUS[status]
    return "invalid" if status < 500 else "error"


def agent_of(ctx: RequestContext, patient: str | None = None) -> Agent:
    """Who acted. In the record of a person they represent, a representative is named by
    the RelatedPerson that makes them one (which carries their NISS) and, when they have a
    dossier of their own, by that too: both people are in the record (SPEC §13)."""
    p = ctx.principal
    rep = p.representation(patient) if patient and p.role == "citizen" else None
    if rep is not None and patient != p.patient:
        return Agent(who=rep.related_person, role=p.role, client=p.client_id,
                     on_behalf_of=p.patient)
    return Agent(who=p.fhir_user or p.patient or (
                     f"Client/{p.client_id}" if p.client_id else None),
                 role=p.role, client=p.client_id, on_behalf_of=p.on_behalf_of,
                 organizations=tuple(sorted(p.organizations)))


class RequestAudit:
    """Implements the Repository's AuditSink for one request."""

    def __init__(self, store: AuditStore, ctx: RequestContext, query_key: bytes) -> None:
        self.store = store
        self.ctx = ctx
        self.query_key = query_key
        self.events: list[Event] = []
        self.intent: tuple[str, str] = ("request", "*")
        self.urgent_patients: set[str] = set()
        self.urgent_notices: set[str] = set()  # told at once, without being BTG reads
        self.written: list[dict[str, Any]] = []

    # called by the Repository
    def record(self, session: Tx, ctx: RequestContext, note: AuditNote) -> None:
        self.events.append(Event(note.action, note.resource_type, note.resource_id,
                                 note.outcome, None, note.query, note.detail,
                                 set(note.patient_ids), tuple(note.reasons)))

    def urgent(self, patient_id: str) -> None:
        """Break-the-glass: the person is notified at once, with urgency."""
        self.urgent_patients.add(patient_id)

    def notify_urgent(self, patient_id: str) -> None:
        """The person is told at once (an assisted consent recorded for them)."""
        self.urgent_notices.add(patient_id)

    def expect(self, action: str, resource_type: str) -> None:
        self.intent = (action, resource_type)

    def fail(self, status: int) -> None:
        """The request failed: mark what it did (or meant to do) with the outcome."""
        outcome = outcome_for(status)
        if not self.events:
            self.events.append(Event(self.intent[0], self.intent[1], outcome=outcome))
        for event in self.events:
            if event.outcome == "success":
                event.outcome = outcome
        # a refused request discloses nothing: it is not a consultation
        self.urgent_patients.clear()
        self.urgent_notices.clear()

    def flush(self, session: Tx, *, alone: Callable[[], None] | None = None,
              held: Sequence[tuple[Table, list[dict[str, Any]]]] = ()) -> None:
        """Append the records (one per person touched) and their outbox rows, each table
        in one multi-row INSERT, after `held`: the unit's new rows not yet written
        (Repository.held_writes), table by table. `alone`, when given, is called right
        before all of it is written if it is written in one statement, and only then
        (the unit may let that statement commit on its own: db/tx.py
        `UnitTx.commit_alone`)."""
        if not self.events:
            insert_tables(session, list(held))
            return
        by_patient: dict[str | None, list[Event]] = {}
        for event in self.events:
            targets: list[str | None] = [*sorted(event.patients)] or [None]
            for pid in targets:
                by_patient.setdefault(pid, []).append(event)
        agent = agent_of(self.ctx)
        now = self.ctx.now
        records: list[tuple[str | None, dict[str, Any]]] = []
        represented: set[str] = set()
        for pid, events in by_patient.items():
            patient = f"Patient/{pid}" if pid else None
            acting = agent_of(self.ctx, patient)
            if acting.who != agent.who and pid:
                represented.add(pid)  # a representative acted: the person is told
            records.append((pid, build_record(
                record_id=str(uuid.uuid4()), recorded=now, request_id=self.ctx.request_id,
                agent=acting, patient=patient, events=events,
                purpose="BTG" if pid in self.urgent_patients else self.ctx.purpose,
                query_key=self.query_key)))
        rows = self.store.rows([(record, pid, record["agent"].get("who"))
                                for pid, record in records], recorded_at=now)
        notices = [(record, pid) for pid, record in records
                   if pid and (is_consultation(record) or pid in self.urgent_patients
                               or pid in represented or pid in self.urgent_notices)]
        outbox = outbox_rows(notices, agent.who, self.urgent_patients | self.urgent_notices,
                             now)
        conn = session.connection()
        if len(rows) <= TOGETHER and len(outbox) <= TOGETHER and \
                conn.dialect.name == "postgresql":
            # records and notices in ONE statement (a data-modifying WITH): one round
            # trip instead of two, for a read of one dossier as for a page of them; a
            # write's records (no notice) in one statement too
            params = {f"r{i}_{k}": v for i, row in enumerate(rows) for k, v in row.items()}
            params.update({f"o{i}_{k}": v for i, row in enumerate(outbox)
                           for k, v in row.items()})
            shapes = tables_params(conn.dialect, held, params)
            if alone is not None:
                alone()
            _records_and_notices(self.store.t.records, len(rows), len(outbox),
                                 shapes).run(conn, params)
        else:
            insert_tables(session, list(held))
            self.store.insert_rows(session, rows)
            if outbox:
                conn.execute(_OUTBOX, outbox)
        self.written.extend(record for _, record in records)
        self.events = []
        self._pending = False

    def keep_pending(self) -> None:
        """The records could not be appended in the request's transaction (SQLite write
        lock taken): they are appended in the next one, before any answer."""
        self._pending = True

    def pending(self) -> bool:
        return bool(getattr(self, "_pending", False)) and bool(self.events)


_OUTBOX = insert(notification_outbox)  # built once: most reads add one row
_RECORD_COLUMNS = ("id", "recorded_at", "patient_id", "agent", "action", "outcome", "record",
                   "leaf", "mac")  # AuditStore.rows
_OUTBOX_COLUMNS = ("id", "patient_id", "record_id", "agent", "urgent", "created_at",
                   "channel", "status", "attempts", "next_attempt_at", "digest")  # outbox_rows


TOGETHER = 100  # records and notices written in one statement up to this many of each


@functools.lru_cache(maxsize=256)
def _records_and_notices(records: Table, n: int, m: int, shapes: Shapes = ()) -> Prepared:
    """PostgreSQL: `WITH appended AS (INSERT INTO audit_records SELECT … n rows) INSERT
    INTO notification_outbox SELECT … m rows` (m = 0: the records alone), built once per
    shape (building it cost more than running it) and run on the unit's cursor
    (dossier/db/prepared.py). The rows are SELECTs of bound parameters joined by UNION
    ALL, not a multi-row VALUES: SQLAlchemy does not cache the compiled form of the
    latter and compiled it again at every request (measured: a read's CPU +40 %).
    `shapes`: the unit's held rows go in first, each table a WITH of its own
    (db/bulk.py `tables_params`): a create's rows and its record in one statement."""
    ahead = tables_ctes(shapes)
    if m == 0:  # a write's records: no notice
        return Prepared(_insert(records, _RECORD_COLUMNS, "r", n).add_cte(*ahead))
    appended = _insert(records, _RECORD_COLUMNS, "r", n).cte("appended")
    return Prepared(_insert(notification_outbox, _OUTBOX_COLUMNS, "o", m).add_cte(
        *ahead, appended))


def _insert(table: Table, columns: tuple[str, ...], prefix: str, count: int) -> Any:
    if count == 1:  # the usual case: a plain INSERT … VALUES
        return insert(table).values({c: bindparam(f"{prefix}0_{c}", type_=table.c[c].type)
                                     for c in columns})
    return insert(table).from_select(list(columns), union_all(*[
        select(*[bindparam(f"{prefix}{i}_{c}", type_=table.c[c].type).label(c)
                 for c in columns]) for i in range(count)]))


def outbox_rows(notices: list[tuple[dict[str, Any], str]], agent: str | None,
                urgent: set[str], now: datetime) -> list[dict[str, Any]]:
    """One outbox row per notice, for the portal inbox (always). The delivery worker adds
    the e-mail and webhook rows the person chose when it puts the notice in the inbox
    (dossier/notify/worker.py `fan_out`)."""
    return [{
        "id": str(uuid.uuid4()), "patient_id": pid, "record_id": record["id"],
        "agent": (record.get("agent") or {}).get("who") or agent, "urgent": pid in urgent,
        "created_at": now, "channel": "inbox",
        "status": "pending", "attempts": 0, "next_attempt_at": now, "digest": False}
        for record, pid in notices]


REFUSED_CLIENT = frozenset({"invalid_client", "unauthorized_client", "invalid_grant"})


def record_token_event(store: AuditStore, engine: Any, query_key: bytes,
                       event: TokenEvent) -> None:
    """One record for a token-endpoint decision: every refusal, every backend token issued
    (a hub as an organisation, or acting for a practitioner). A refusal names the client
    it claimed in the detail, never as the agent: it is not authenticated."""
    now = datetime.now(UTC)
    if event.outcome == "success":
        agent = Agent(who=event.fhir_user or (f"Client/{event.client}" if event.client
                                              else None),
                      role=event.role or "hub", client=event.client,
                      on_behalf_of=event.on_behalf_of)
        outcome, detail = "success", f"token {event.grant}"
    else:
        agent = Agent(who=None, role="unauthenticated")
        outcome = "denied" if event.outcome in REFUSED_CLIENT else "invalid"
        detail = f"token {event.grant} refused: {event.outcome}" + (
            f" (claimed client {event.client})" if event.client else "")
    record = build_record(
        record_id=str(uuid.uuid4()), recorded=now, request_id=uuid.uuid4().hex, agent=agent,
        patient=None, events=[Event("token", "OAuth", outcome=outcome, detail=detail)],
        purpose=None, query_key=query_key)
    with Session(engine) as session, session.begin():
        store.append(session, record, recorded_at=now, patient_id=None, agent=agent.who)
