"""resources: the type-and-time index carries the page order's tiebreak (res_id)

A search page is ordered by (last_updated, res_id). With res_id in the index a page of a
large result is read in index order and stops after the page, instead of sorting every
match (dossier/core/repository.py `run_search`, issue 14).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_resources_type_updated", table_name="resources")
    op.create_index("ix_resources_type_updated", "resources",
                    ["res_type", "last_updated", "res_id"])


def downgrade() -> None:
    op.drop_index("ix_resources_type_updated", table_name="resources")
    op.create_index("ix_resources_type_updated", "resources", ["res_type", "last_updated"])
