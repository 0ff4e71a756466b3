"""Professionals' requests for access (SPEC §13), table access_requests.

A request is kept whether or not the dossier it names exists: the professional's list of
open requests looks the same either way. Requests stay open OPEN_DAYS, then expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from dossier.db.models import access_requests
from dossier.db.tx import Tx

A = access_requests.c
OPEN_DAYS = 30


@dataclass(frozen=True)
class AccessRequest:
    id: str
    patient_id: str
    practitioner: str
    categories: tuple[str, ...]
    period_end: datetime | None
    status: str
    created_at: datetime
    communication_id: str | None

    def open_at(self, now: datetime) -> bool:
        return self.status == "open" and now < self.created_at + timedelta(days=OPEN_DAYS)


def _request(row: Any) -> AccessRequest:
    return AccessRequest(row.id, row.patient_id, row.practitioner,
                         tuple(c for c in row.categories.split(",") if c), row.period_end,
                         row.status, row.created_at, row.communication_id)


class AccessRequests:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def add(self, request_id: str, patient_id: str, practitioner: str,
            categories: list[str], period_end: datetime | None, now: datetime,
            communication_id: str | None) -> None:
        self.session.execute(insert(access_requests).values(
            id=request_id, patient_id=patient_id, practitioner=practitioner,
            categories=",".join(sorted(set(categories))), period_end=period_end,
            status="open", created_at=now, communication_id=communication_id))

    def get(self, request_id: str) -> AccessRequest | None:
        row = self.session.execute(select(access_requests).where(A.id == request_id)).first()
        return _request(row) if row is not None else None

    def for_patient(self, patient_id: str, now: datetime) -> list[AccessRequest]:
        rows = self.session.execute(select(access_requests).where(
            A.patient_id == patient_id, A.status == "open").order_by(A.created_at)).all()
        return [r for r in map(_request, rows) if r.open_at(now)]

    def by_practitioner(self, practitioner: str, now: datetime) -> list[AccessRequest]:
        rows = self.session.execute(select(access_requests).where(
            A.practitioner == practitioner, A.status == "open").order_by(
                A.created_at.desc()).limit(200)).all()
        return [r for r in map(_request, rows) if r.open_at(now)]

    def decide(self, request_id: str, status: str, now: datetime,
               consent_id: str | None) -> None:
        self.session.execute(update(access_requests).where(
            A.id == request_id, A.status == "open").values(
                status=status, decided_at=now, consent_id=consent_id))
