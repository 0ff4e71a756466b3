"""topic-based subscriptions

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import Bytes, JSONType, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("subscriber", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("filters", JSONType, nullable=False),
        sa.Column("endpoint", sa.String(2000), nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("resource", JSONType, nullable=False),
        sa.Column("kek_id", sa.String(128), nullable=False),
        sa.Column("wrapped_key", Bytes, nullable=False),
        sa.Column("sealed", Bytes, nullable=False),
        sa.Column("events_sent", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_status", "subscriptions", ["status", "topic"])
    op.create_table(
        "subscription_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("event_number", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_events"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name="fk_subscription_events_subscription_id_subscriptions",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_subscription_events_due", "subscription_events",
                    ["subscription_id", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("subscription_events")
    op.drop_table("subscriptions")
