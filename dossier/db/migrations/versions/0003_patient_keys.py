"""per-patient wrapped data keys

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import Bytes, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_keys",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("kek_id", sa.String(128), nullable=True),
        sa.Column("wrapped", Bytes, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", name="pk_patient_keys"),
    )


def downgrade() -> None:
    op.drop_table("patient_keys")
