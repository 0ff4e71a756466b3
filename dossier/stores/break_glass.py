"""Break-the-glass grants (table break_glass) and their access-index rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from dossier.core import access_index
from dossier.db.models import break_glass
from dossier.db.tx import Tx


class BreakGlassGrants:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def grant(self, grant_id: str, patient_id: str, practitioner: str, now: datetime,
              minutes: int, sealed_reason: dict[str, Any]) -> datetime:
        """Record the grant and index it (same transaction); returns when it expires."""
        expires = now + timedelta(minutes=minutes)
        self.session.execute(insert(break_glass).values(
            id=grant_id, patient_id=patient_id, practitioner=practitioner, granted_at=now,
            minutes=minutes, expires_at=expires, reason=sealed_reason))
        access_index.add_break_glass(self.session, grant_id, patient_id, practitioner, now,
                                     expires)
        return expires
