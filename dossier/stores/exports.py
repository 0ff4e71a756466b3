"""Bulk Data export jobs (table export_jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from dossier.db.models import export_jobs
from dossier.db.tx import Tx

J = export_jobs.c


class ExportJobs:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def get(self, job_id: str) -> Any:
        return self.session.execute(select(export_jobs).where(J.id == job_id)).first()

    def running_for(self, owner: str) -> bool:
        return self.session.execute(select(J.id).where(
            J.owner == owner, J.status == "in-progress")).first() is not None

    def add(self, **values: Any) -> None:
        self.session.execute(insert(export_jobs).values(**values))

    def update(self, job_id: str, **values: Any) -> bool:
        """Update the job; False when it is gone (cancelled or expired)."""
        done = self.session.execute(update(export_jobs).where(J.id == job_id).values(**values))
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def claim(self, job_id: str) -> bool:
        """Take a job that nobody runs yet (progress 'starting'): True for one caller only."""
        done = self.session.execute(update(export_jobs).where(
            J.id == job_id, J.progress == "starting").values(progress="claimed"))
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def starting(self) -> list[str]:
        return list(self.session.execute(select(J.id).where(
            J.status == "in-progress", J.progress == "starting")).scalars())

    def remove(self, job_id: str) -> None:
        self.session.execute(delete(export_jobs).where(J.id == job_id))

    def expired(self, now: datetime) -> list[str]:
        gone = list(self.session.execute(select(J.id).where(J.expires_at < now)).scalars())
        if gone:
            self.session.execute(delete(export_jobs).where(J.id.in_(gone)))
        return gone

    def ids(self) -> set[str]:
        return {str(i) for i in self.session.execute(select(J.id)).scalars()}
