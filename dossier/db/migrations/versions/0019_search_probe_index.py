"""search_index: the owner index covers a probe (res_type, res_id, param, value, system)

A search already bounded to a caseload probes the index once per candidate row
(dossier/search/sql.py `_index_exists`); with the wider owner index the probe is one
seek that never reads the table.

Revision ID: 0019
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0014"
branch_labels = None
depends_on = None

WIDE = ("res_type", "res_id", "param", "value", "system")


def upgrade() -> None:
    op.drop_index("ix_search_index_owner", table_name="search_index")
    op.create_index("ix_search_index_owner", "search_index", list(WIDE))


def downgrade() -> None:
    op.drop_index("ix_search_index_owner", table_name="search_index")
    op.create_index("ix_search_index_owner", "search_index", ["res_type", "res_id"])
