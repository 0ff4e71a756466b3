"""One-time enrolment codes for pseudonymous dossiers (SPEC §13), the logins they link,
and the wrong attempts counted per login. Only keyed hashes of codes and logins are kept."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update

from dossier.db.models import enrolment_attempts, enrolment_codes, login_links
from dossier.db.tx import Tx

C = enrolment_codes.c
A = enrolment_attempts.c
L = login_links.c


class Enrolment:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def issue(self, code_hash: str, patient_id: str, by: str, now: datetime,
              valid: timedelta) -> datetime:
        """A new code for the dossier; earlier unused ones stop working."""
        self.session.execute(delete(enrolment_codes).where(
            C.patient_id == patient_id, C.used_at.is_(None)))
        expires = now + valid
        self.session.execute(insert(enrolment_codes).values(
            code_hash=code_hash, patient_id=patient_id, created_by=by[:140], created_at=now,
            expires_at=expires))
        return expires

    def redeem(self, code_hash: str, now: datetime) -> str | None:
        """The dossier of a live, unused code, marking it used (once); else None."""
        row = self.session.execute(select(C.patient_id).where(
            C.code_hash == code_hash, C.used_at.is_(None), C.expires_at > now)).first()
        if row is None:
            return None
        done = self.session.execute(update(enrolment_codes).where(
            C.code_hash == code_hash, C.used_at.is_(None)).values(used_at=now))
        return str(row.patient_id) if done.rowcount == 1 else None  # type: ignore[attr-defined]

    def wrong_recently(self, login: str, now: datetime) -> int:
        return int(self.session.execute(select(func.count()).where(
            A.login == login, A.at > now - timedelta(hours=1))).scalar_one())

    def count_wrong(self, login: str, now: datetime) -> None:
        self.session.execute(insert(enrolment_attempts).values(login=login, at=now))

    def link(self, login: str, patient_id: str, now: datetime) -> None:
        self.session.execute(delete(login_links).where(L.login == login))
        self.session.execute(insert(login_links).values(login=login, patient_id=patient_id,
                                                        linked_at=now))

    def linked(self, login: str) -> str | None:
        return self.session.execute(select(L.patient_id).where(L.login == login)).scalar()
