"""audit records: the leaf bytes as written and their HMAC (a key the database lacks)

Records written before this revision keep NULL in both: their leaf is the canonical JSON
of `record`, and `verify` accepts them only before the first authenticated record.

Revision ID: 0015
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import Bytes

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("leaf", Bytes, nullable=True))
        batch.add_column(sa.Column("mac", Bytes, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("mac")
        batch.drop_column("leaf")
