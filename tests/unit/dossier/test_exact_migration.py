"""Migration 0013 backfills the `name:exact` index rows of resources written before it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, column, insert, select, table

from dossier.db.engine import make_engine, upgrade
from dossier.db.models import search_index

# The resources table as it stood at 0009, so later columns do not leak into the old schema.
OLD_RESOURCES = table("resources", *(column(name) for name in (
    "res_type", "res_id", "version_id", "last_updated", "deleted", "patient_id",
    "categories", "sealed")), column("content", JSON))


def test_exact_rows_are_backfilled(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        upgrade(engine, "0009")  # the revision just before 0013
        now = datetime(2027, 3, 5, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(OLD_RESOURCES).values(
                res_type="Practitioner", res_id="p1", version_id=1, last_updated=now,
                deleted=False, patient_id=None, categories="", sealed=None,
                content={"resourceType": "Practitioner", "id": "p1", "active": True,
                         "name": [{"family": "Van Damme", "given": ["Élise"]}]}))
        upgrade(engine)
        with engine.begin() as conn:
            rows = conn.execute(select(search_index.c.param, search_index.c.value).where(
                search_index.c.res_id == "p1")).all()
        assert set(rows) == {("name:exact", "Van Damme"), ("name:exact", "Élise")}
    finally:
        engine.dispose()
