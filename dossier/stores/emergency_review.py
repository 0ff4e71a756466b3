"""The auditor's review of emergency access (SPEC §6, issue 19): every break-the-glass
record of the log, the reviews already written to the log, and the sealed reason a
professional gave (opened only for an auditor, and that reading is audited by the caller).

Reviews are audit records themselves (`operation` on `AuditEvent/<id>`, detail
`break-glass-review:<decision>`), so the log stays the one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dossier.db.models import audit_records, break_glass
from dossier.db.tx import Tx

A = audit_records.c
B = break_glass.c
REVIEW = "break-glass-review:"
ASSISTED = "assisted-consent"
DECISIONS = ("approved", "flagged")


@dataclass(frozen=True)
class Grant:
    id: str
    patient_id: str
    practitioner: str
    granted_at: datetime
    expires_at: datetime
    sealed_reason: dict[str, Any] | None


class EmergencyReview:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def emergency_ids(self) -> list[str]:
        """Every record made under break-the-glass, and every assisted consent (SPEC §13),
        newest first (ids only)."""
        btg = [(seq, rid) for seq, rid in self.session.execute(select(A.seq, A.id).where(
            A.record["purpose"].as_string() == "BTG"))]
        return [i for _, i in sorted(btg + self._assisted(), reverse=True)]

    def _assisted(self) -> list[tuple[int, str]]:
        """Records of a professional's assisted consent: a Consent create with the
        `assisted-consent` event (scanned among professionals' multi-event records)."""
        rows = self.session.execute(select(A.seq, A.id, A.record).where(
            A.action == "multiple", A.outcome == "success", A.patient_id.is_not(None),
            A.agent.like("Practitioner/%"))).all()
        return [(seq, rid) for seq, rid, record in rows
                if any(e.get("detail") == ASSISTED for e in record.get("events") or ())]

    def decisions(self) -> dict[str, str]:
        """Reviewed record id → the latest decision written to the log."""
        rows = self.session.execute(select(A.record).where(
            A.action.in_(("operation", "multiple")), A.patient_id.is_(None))
            .order_by(A.seq)).scalars()
        out: dict[str, str] = {}
        for record in rows:
            for event in record.get("events") or ():
                detail = str(event.get("detail") or "")
                decision = detail[len(REVIEW):]
                if detail.startswith(REVIEW) and decision in DECISIONS and event.get("id"):
                    out[str(event["id"])] = decision
        return out

    def dossiers(self, limit: int = 500) -> list[str]:
        """The dossiers most recently in the log (pseudonymous ids), to pick from."""
        rows = self.session.execute(select(A.patient_id).where(A.patient_id.is_not(None))
                                    .order_by(A.seq.desc()).limit(limit * 20)).scalars()
        return sorted(dict.fromkeys(rows))[:limit]

    def grant_for(self, patient_id: str, practitioner: str, at: datetime) -> Grant | None:
        """The grant under which `practitioner` acted on `patient_id` at `at`."""
        row = self.session.execute(select(break_glass).where(
            B.patient_id == patient_id, B.practitioner == practitioner,
            B.granted_at <= at, B.expires_at >= at).order_by(B.granted_at.desc())).first()
        if row is None:
            return None
        return Grant(row.id, row.patient_id, row.practitioner, row.granted_at,
                     row.expires_at, row.reason)
