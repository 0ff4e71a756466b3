"""Server-side identities of portal sessions (issue 16, defect 5).

The session cookie carries a random id; the database keeps its SHA-256 until the session
expires or the person signs out. A cookie whose row is gone (logout, expiry) no longer
signs anybody in, in any process of the service."""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import Engine, delete, insert, select

from dossier.db.models import portal_sessions

P = portal_sessions.c


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class PortalSessions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open(self, sid: str, expires_at: int) -> None:
        now = int(time.time())
        with self.engine.begin() as conn:
            conn.execute(delete(portal_sessions).where(P.expires_at < now))
            conn.execute(insert(portal_sessions), {"id_hash": _key(sid),
                                                   "expires_at": expires_at})

    def alive(self, sid: str) -> bool:
        if not sid:
            return False
        with self.engine.connect() as conn:
            found = conn.execute(select(P.expires_at).where(
                P.id_hash == _key(sid))).scalar_one_or_none()
        return found is not None and found >= time.time()

    def end(self, sid: str) -> None:
        if sid:
            with self.engine.begin() as conn:
                conn.execute(delete(portal_sessions).where(P.id_hash == _key(sid)))
