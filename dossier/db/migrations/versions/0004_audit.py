"""append-only audit log, Merkle nodes, tree heads, notification outbox

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import Bytes, JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_records", "audit_leaves", "audit_nodes", "audit_tree_heads")


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(140), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("record", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
        sa.UniqueConstraint("id", name="uq_audit_records_id"),
    )
    op.create_index("ix_audit_records_patient", "audit_records", ["patient_id", "recorded_at"])
    op.create_index("ix_audit_records_recorded", "audit_records", ["recorded_at"])
    op.create_table(
        "audit_leaves",
        sa.Column("leaf_index", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("leaf_hash", Bytes, nullable=False),
        sa.Column("chain_hash", Bytes, nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name="pk_audit_leaves"),
        sa.UniqueConstraint("record_id", name="uq_audit_leaves_record_id"),
    )
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("node_index", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("hash", Bytes, nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name="pk_audit_nodes"),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("tree_size", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("root_hash", Bytes, nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("checkpoint", sa.String(512), nullable=False),
        sa.Column("signature", Bytes, nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_audit_tree_heads"),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("agent", sa.String(140), nullable=True),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notification_outbox"),
    )
    op.create_index("ix_notification_outbox_due", "notification_outbox",
                    ["status", "next_attempt_at"])
    op.create_table(
        "notification_settings",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("sealed", JSONType, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", name="pk_notification_settings"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("""
            CREATE OR REPLACE FUNCTION dossier_append_only() RETURNS trigger AS $$
            BEGIN
              RAISE EXCEPTION 'the audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
            END $$ LANGUAGE plpgsql""")
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION dossier_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION dossier_append_only()")
    else:
        for table in APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON "
                           f"{table} BEGIN SELECT RAISE(ABORT, 'the audit log is "
                           "append-only'); END")


def downgrade() -> None:
    bind = op.get_bind()
    for table in ("notification_settings", "notification_outbox", *APPEND_ONLY):
        if table in APPEND_ONLY:
            if bind.dialect.name == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        op.drop_table(table)
