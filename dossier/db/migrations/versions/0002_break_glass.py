"""break-the-glass grants

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "break_glass",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("practitioner", sa.String(140), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("reason", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_break_glass"),
    )
    op.create_index("ix_break_glass_patient", "break_glass", ["patient_id", "expires_at"])
    op.create_index("ix_break_glass_practitioner", "break_glass",
                    ["practitioner", "expires_at"])


def downgrade() -> None:
    op.drop_table("break_glass")
