"""notification_outbox: the notifier's claim reads its batch from a partial index

The claim (`dossier/notify/worker.py` `claim`) took the due rows in the order urgent
first, then by `next_attempt_at`, `created_at` and `id`, through `(status,
next_attempt_at)`: it read and sorted every due row to keep 50. Under sustained load the
backlog grew (measured: 2,254 due rows after 10 s of reads, 3.8 ms a claim), and each
claim cost more. `ix_notification_outbox_pending` holds only pending rows, in the claim's
order after `urgent`: a claim takes the urgent rows, then the others, each an index range
scan that stops at its batch or at the first row not yet due.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index("ix_notification_outbox_pending", "notification_outbox",
                    ["urgent", "next_attempt_at", "created_at", "id"],
                    postgresql_where=PENDING, sqlite_where=PENDING)
    op.drop_index("ix_notification_outbox_due", table_name="notification_outbox")


def downgrade() -> None:
    op.create_index("ix_notification_outbox_due", "notification_outbox",
                    ["status", "next_attempt_at"])
    op.drop_index("ix_notification_outbox_pending", table_name="notification_outbox")
