"""notifications: e-mail immediately or as a daily digest (the citizen's choice)

`notification_settings.email_digest`: the person asked for one e-mail a day;
`notification_outbox.digest`: this e-mail row waits for the day's digest (urgent rows never).

Revision ID: 0018
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notification_settings") as batch:
        batch.add_column(sa.Column("email_digest", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("notification_outbox") as batch:
        batch.add_column(sa.Column("digest", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("notification_outbox") as batch:
        batch.drop_column("digest")
    with op.batch_alter_table("notification_settings") as batch:
        batch.drop_column("email_digest")
