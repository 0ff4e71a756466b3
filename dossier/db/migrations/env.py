"""Alembic environment: the connection is handed in by dossier.db.engine.upgrade()."""

from __future__ import annotations

from alembic import context

from dossier.db.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through dossier.db.engine
    raise RuntimeError("run migrations through `dossier db upgrade`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
