"""issuer accounts, codes and jti memory; portal sessions; refusal windows (issue 16)

Revision ID: 0014
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import JSONType, UTCDateTime

revision = "0014"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issuer_accounts",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("fhir_user", sa.String(255), nullable=False),
        sa.Column("roles", JSONType, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("demo", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_issuer_accounts"),
    )
    op.create_table(
        "issuer_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("entry", JSONType, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name="pk_issuer_codes"),
    )
    op.create_index("ix_issuer_codes_expires", "issuer_codes", ["expires_at"])
    op.create_table(
        "issuer_jti",
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_issuer_jti"),
    )
    op.create_index("ix_issuer_jti_expires", "issuer_jti", ["expires_at"])
    op.create_table(
        "portal_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_portal_sessions"),
    )
    op.create_index("ix_portal_sessions_expires", "portal_sessions", ["expires_at"])
    op.create_table(
        "refusal_windows",
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("minute", sa.Integer, nullable=False),
        sa.Column("refusals", sa.Integer, nullable=False),
        sa.Column("recorded", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("address", "minute", name="pk_refusal_windows"),
    )


def downgrade() -> None:
    for table in ("refusal_windows", "portal_sessions", "issuer_jti", "issuer_codes",
                  "issuer_accounts"):
        op.drop_table(table)
