"""Alembic environment: the connection is handed in by dossier.db.engine.upgrade()."""

from __future__ import annotations

from alembic import context

from dossier.db.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through dossier.db.engine
    raise RuntimeError("run migrations through `dossier db upgrade`")
dialect = connection.dialect.name



def include_object(obj: object, name: str | None, kind: str, reflected: bool,
                   compare_to: object) -> bool:
    """An index the models declare for one database only (`info["only_dialect"]`) is
    compared on that database only."""
    only = getattr(obj, "info", {}).get("only_dialect") if kind == "index" else None
    return only is None or only == dialect


context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True, include_object=include_object)
with context.begin_transaction():
    context.run_migrations()
