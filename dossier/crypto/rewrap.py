"""Key operations across the database: KEK rotation re-wraps every data key."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dossier.crypto import KeyProvider, WrappedKey, rewrap_all
from dossier.db.engine import make_engine
from dossier.db.models import patient_keys
from dossier.settings import Settings

K = patient_keys.c


def rotate(settings: Settings, provider: KeyProvider) -> tuple[str, int]:
    """Make a new KEK and re-wrap every live data key under it, without touching data."""
    kek_id = provider.rotate()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with Session(engine) as session, session.begin():
            rows = session.execute(select(K.patient_id, K.kek_id, K.wrapped).where(
                K.wrapped.is_not(None))).all()
            fresh = rewrap_all(provider, [WrappedKey(r.kek_id, r.wrapped) for r in rows])
            for row, key in zip(rows, fresh, strict=True):
                session.execute(update(patient_keys).where(K.patient_id == row.patient_id)
                                .values(kek_id=key.kek_id, wrapped=key.wrapped))
        return kek_id, len(rows)
    finally:
        engine.dispose()
