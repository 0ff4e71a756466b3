"""The person's advance refusal of assisted consent (SPEC §13), table assisted_refusals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select

from dossier.db.models import assisted_refusals
from dossier.db.tx import Tx

A = assisted_refusals.c


class AssistedRefusals:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def refused(self, patient_id: str) -> bool:
        return self.session.execute(select(A.patient_id).where(
            A.patient_id == patient_id)).first() is not None

    def set(self, patient_id: str, refuse: bool, now: datetime) -> None:
        self.session.execute(delete(assisted_refusals).where(A.patient_id == patient_id))
        if refuse:
            self.session.execute(insert(assisted_refusals).values(
                patient_id=patient_id, refused_at=now))
