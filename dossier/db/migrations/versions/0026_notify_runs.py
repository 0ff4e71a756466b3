"""notify_runs: the notifier's inbox runs without a lease, and the guard after a crash

The notifier leased every inbox row it took (an UPDATE of `attempts` and
`next_attempt_at`, a transaction of its own) and then marked it sent: two updates of each
notice, one per request served (docs/benchmarks.md, "Session 14"). Inbox rows never
attempted are now taken, written to the inbox and marked sent in one transaction, their
row locks the only lease. A row of `notify_runs` is written before that transaction and
deleted in it; one left behind is a run that died mid-batch, and the next run leases what
it takes, as before.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import UTCDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notify_runs"),
    )


def downgrade() -> None:
    op.drop_table("notify_runs")
