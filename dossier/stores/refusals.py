"""Refused unauthenticated requests, counted per client address and minute (issue 16).

The counts live in the database so every process of the service throttles on the same
numbers; each finished minute becomes ONE audit record per address (written by the
background maintenance), then its row is deleted: anonymous traffic cannot grow the log
or this table without bound (at most MAX_ADDRESSES rows per minute; beyond, the address
is counted as "other")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.record import Agent, Event, build_record
from audit.store import AuditStore
from dossier.db.models import refusal_windows

W = refusal_windows.c
MAX_ADDRESSES = 5000  # distinct addresses counted per minute
OTHER = "other"


def count_refusal(engine: Engine, address: str, minute: int) -> int:
    """Add one refusal for ``address`` in ``minute``; the total counted so far."""
    address = (address or "unknown")[:64]
    for _ in range(3):
        with engine.begin() as conn:
            done = conn.execute(update(refusal_windows).where(
                W.address == address, W.minute == minute).values(
                refusals=W.refusals + 1)).rowcount
            if done:
                return int(conn.execute(select(W.refusals).where(
                    W.address == address, W.minute == minute)).scalar_one())
            crowded = conn.execute(select(func.count()).select_from(refusal_windows).where(
                W.minute == minute)).scalar_one() >= MAX_ADDRESSES
            if crowded and address != OTHER:
                address = OTHER
                continue
            try:
                with conn.begin_nested():
                    conn.execute(insert(refusal_windows), {
                        "address": address, "minute": minute, "refusals": 1,
                        "recorded": False})
                return 1
            except IntegrityError:
                continue  # another process inserted it first: count again
    return 1


def record_finished(engine: Engine, store: AuditStore, query_key: bytes,
                    now: datetime) -> int:
    """One audit record per (address, minute) that has ended; then the row goes."""
    minute = int(now.timestamp() // 60)
    with Session(engine) as session, session.begin():
        rows = session.execute(select(W.address, W.minute, W.refusals).where(
            W.minute < minute, W.recorded.is_(False)).order_by(W.minute, W.address)
            .limit(MAX_ADDRESSES)).all()
        for row in rows:
            agent = Agent(who=None, role="unauthenticated")
            start = datetime.fromtimestamp(row.minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ")
            detail = (f"{row.refusals} unauthenticated request(s) refused from "
                      f"{row.address} in the minute {start}")
            record: Any = build_record(
                record_id=str(uuid.uuid4()), recorded=now, request_id=uuid.uuid4().hex,
                agent=agent, patient=None,
                events=[Event("refusals", "Authentication", outcome="invalid", detail=detail)],
                purpose=None, query_key=query_key)
            store.append(session, record, recorded_at=now, patient_id=None, agent=None)
        if rows:
            session.execute(delete(refusal_windows).where(
                W.minute < minute, W.recorded.is_(False),
                W.address.in_([r.address for r in rows]),
                W.minute.in_(sorted({r.minute for r in rows}))))
    return len(rows)
