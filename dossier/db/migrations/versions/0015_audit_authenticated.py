"""audit records: the leaf bytes as written and their HMAC (a key the database lacks);
audit_pending: the records the sequencer has still to place, filled by a trigger

Records written before this revision keep NULL in both: their leaf is the canonical JSON
of `record`, and `verify` accepts them only before the first authenticated record.

Revision ID: 0015
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit.tables import PENDING_TRIGGER
from dossier.db.types import Bytes

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("leaf", Bytes, nullable=True))
        batch.add_column(sa.Column("mac", Bytes, nullable=True))
    op.create_table(
        "audit_pending",
        sa.Column("seq", sa.Integer, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_pending"),
    )
    op.execute("INSERT INTO audit_pending (seq) SELECT seq FROM audit_records r WHERE NOT "
               "EXISTS (SELECT 1 FROM audit_leaves l WHERE l.record_id = r.id)")
    for sql in PENDING_TRIGGER[op.get_bind().dialect.name]:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_records_pending ON audit_records")
        op.execute("DROP FUNCTION IF EXISTS dossier_audit_pending()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_records_pending")
    op.drop_table("audit_pending")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("mac")
        batch.drop_column("leaf")
