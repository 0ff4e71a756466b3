"""professional inbox notices by e-mail (issue 18 item 4)

`practitioner_email`: the address (and portal language) where a professional wants to be
told that a new message is in their inbox. No personal data goes in those e-mails.

Revision ID: 0020
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import UTCDateTime

revision = "0020"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "practitioner_email",
        sa.Column("practitioner", sa.String(140), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False))


def downgrade() -> None:
    op.drop_table("practitioner_email")
