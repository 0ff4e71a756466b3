"""Key operations across the database: KEK rotation re-wraps every wrapped data key —
patients' keys, subscriptions' keys (their channel headers) and export jobs' keys — in
one transaction, so an old KEK can then be retired without losing anything."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from dossier.crypto import KeyProvider, WrappedKey, rewrap_all
from dossier.db.engine import make_engine
from dossier.db.models import export_jobs, patient_keys, subscriptions
from dossier.db.tx import Tx
from dossier.settings import Settings

# every table holding a data key wrapped by the KEK: (table, its key column, the KEK id
# column, the wrapped key column). A new one must be added here (tests/integration/
# test_key_rotation.py checks every table with a `kek_id` column is listed).
WRAPPED_KEYS: list[tuple[Table, str, str, str]] = [
    (patient_keys, "patient_id", "kek_id", "wrapped"),
    (subscriptions, "id", "kek_id", "wrapped_key"),
    (export_jobs, "id", "kek_id", "wrapped_key"),
]


def rewrap_tables(session: Tx, provider: KeyProvider) -> int:
    """Re-wrap, in ``session``, every wrapped key not under the current KEK."""
    count = 0
    for table, key_col, kek_col, wrapped_col in WRAPPED_KEYS:
        c: Any = table.c
        rows = session.execute(select(c[key_col], c[kek_col], c[wrapped_col]).where(
            c[wrapped_col].is_not(None))).all()
        fresh = rewrap_all(provider, [WrappedKey(r[1], r[2]) for r in rows])
        for row, key in zip(rows, fresh, strict=True):
            if key.kek_id != row[1]:
                session.execute(update(table).where(c[key_col] == row[0]).values(
                    {kek_col: key.kek_id, wrapped_col: key.wrapped}))
                count += 1
    return count


def rotate(settings: Settings, provider: KeyProvider) -> tuple[str, int]:
    """Make a new KEK and re-wrap every live data key under it, without touching data."""
    kek_id = provider.rotate()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with Session(engine) as session, session.begin():
            count = rewrap_tables(session, provider)
        return kek_id, count
    finally:
        engine.dispose()


def retire(settings: Settings, provider: KeyProvider, kek_id: str) -> None:
    """Destroy an old KEK, refusing while any wrapped key still depends on it."""
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with Session(engine) as session:
            for table, _, kek_col, wrapped_col in WRAPPED_KEYS:
                c: Any = table.c
                if session.execute(select(c[kek_col]).where(
                        c[kek_col] == kek_id, c[wrapped_col].is_not(None)).limit(1)).first():
                    raise ValueError(f"{table.name} still has keys under {kek_id}; run "
                                     "`dossier keys rotate` first")
    finally:
        engine.dispose()
    provider.retire(kek_id)
