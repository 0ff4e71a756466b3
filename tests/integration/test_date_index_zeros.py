"""Migration 0027: date index rows written without a year's leading zeros (`999-…`,
strftime's %Y) get them back, and nothing else changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import delete, insert, select

from dossier.db.engine import alembic_config, make_engine, upgrade
from dossier.db.models import search_index

S = search_index.c
ROWS = [  # (res_type, param, value before, value after)
    ("Task", "authored-on", "999-04-30T23:42:30.000000Z", "0999-04-30T23:42:30.000000Z"),
    ("Task", "authored-on", "5-01-01T00:00:00.000000Z", "0005-01-01T00:00:00.000000Z"),
    ("Task", "authored-on", "2024-06-01T00:00:00.000000Z", "2024-06-01T00:00:00.000000Z"),
    ("Task", "status", "999-in-progress", "999-in-progress"),  # not a date parameter
    ("Provenance", "recorded", "42-02-02T00:00:00.000000Z", "0042-02-02T00:00:00.000000Z"),
]


def test_short_years_are_padded_and_the_rest_untouched(database_url: str | None,
                                                       data_dir: Path) -> None:
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{data_dir / 'db.sqlite3'}"
    engine: Any = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:  # the database may be fresh or already at the head
            command.downgrade(alembic_config(conn), "0026")
        with engine.begin() as conn:
            conn.execute(delete(search_index))
            conn.execute(insert(search_index), [
                {"res_type": t, "res_id": f"r{n}", "param": p, "system": None, "value": v}
                for n, (t, p, v, _) in enumerate(ROWS)])
        upgrade(engine)
        with engine.connect() as conn:
            found = {r.res_id: r.value for r in conn.execute(select(S.res_id, S.value))}
        assert found == {f"r{n}": after for n, (_, _, _, after) in enumerate(ROWS)}
    finally:
        engine.dispose()
