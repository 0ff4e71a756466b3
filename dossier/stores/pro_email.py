"""Where a professional wants to hear of new inbox messages (issue 18 item 4), table
practitioner_email, and the outbox row a message to them queues when they set one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, insert, literal, select, update

from dossier.db.models import notification_outbox, practitioner_email
from dossier.db.tx import Tx

P = practitioner_email.c
CHANNEL = "pro-email"  # notification_outbox.channel of these rows


class ProEmail:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def get(self, practitioner: str) -> tuple[str, str] | None:
        """(address, language) or None."""
        row = self.session.execute(select(P.email, P.language).where(
            P.practitioner == practitioner)).first()
        return (row.email, row.language) if row else None

    def set(self, practitioner: str, email: str, language: str, now: datetime) -> None:
        values = {"email": email, "language": language, "updated_at": now}
        done = self.session.execute(update(practitioner_email).where(
            P.practitioner == practitioner).values(**values))
        if not done.rowcount:  # type: ignore[attr-defined]
            self.session.execute(insert(practitioner_email).values(
                practitioner=practitioner, **values))

    def clear(self, practitioner: str) -> None:
        self.session.execute(delete(practitioner_email).where(
            P.practitioner == practitioner))

    def enqueue(self, practitioner: str, patient_id: str, message_id: str,
                now: datetime) -> None:
        """One outbox row if the practitioner set an address; one statement either way."""
        at = notification_outbox.c.created_at.type
        chosen = select(
            literal(str(uuid.uuid4())), literal(patient_id), literal(message_id),
            literal(practitioner), literal(False), literal(now, at), literal(CHANNEL),
            literal("pending"), literal(0), literal(now, at), literal(False),
        ).where(P.practitioner == practitioner)
        self.session.execute(insert(notification_outbox).from_select(
            ["id", "patient_id", "record_id", "agent", "urgent", "created_at", "channel",
             "status", "attempts", "next_attempt_at", "digest"], chosen))
