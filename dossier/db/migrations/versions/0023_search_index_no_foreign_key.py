"""search_index: no foreign key to the resources (issue 13)

The search index is derived data: each row is written by the same unit, in the same
transaction, as the resource it indexes, and a search reads its results from `resources`
itself, so an index row without its resource can never surface. The foreign key guarded
nothing a person could see, and PostgreSQL checked it row by row with a row lock on the
resource (a WAL record each): ~0.06 ms per index row, 0.58 ms of a Task's create with its
ten index rows (measured on this machine kind, docs/benchmarks.md). Resources are never
deleted (a deletion is a version; an erasure empties the rows), so its ON DELETE CASCADE
never ran.

On a partitioned database (`dossier db partition`) the key pointed at `resource_ids`,
which stays: it keeps each resource id unique across the hash partitions.

Downgrade restores the key (against `resources`, or `resource_ids` when partitioned).

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

NAMES = ("fk_search_index_res_type_resources", "fk_search_index_res_type_resource_ids")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in NAMES:
            op.execute(f"ALTER TABLE search_index DROP CONSTRAINT IF EXISTS {name}")
        return
    with op.batch_alter_table("search_index") as batch:
        batch.drop_constraint(NAMES[0], type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    partitioned = bind.dialect.name == "postgresql" and bind.execute(sa.text(
        "SELECT to_regclass('resource_ids')")).scalar() is not None
    target = "resource_ids" if partitioned else "resources"
    if bind.dialect.name == "postgresql":
        op.create_foreign_key(f"fk_search_index_res_type_{target}", "search_index", target,
                              ["res_type", "res_id"], ["res_type", "res_id"],
                              ondelete="CASCADE")
        return
    with op.batch_alter_table("search_index") as batch:
        batch.create_foreign_key(NAMES[0], "resources", ["res_type", "res_id"],
                                 ["res_type", "res_id"], ondelete="CASCADE")
