"""resources, versions and search index

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", UTCDateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("categories", sa.String(128), nullable=False),
        sa.Column("content", JSONType, nullable=False),
        sa.Column("sealed", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("res_type", "res_id", name="pk_resources"),
    )
    op.create_index("ix_resources_type_updated", "resources", ["res_type", "last_updated"])
    op.create_index("ix_resources_patient", "resources", ["patient_id", "res_type"])
    op.create_table(
        "resource_versions",
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", UTCDateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("categories", sa.String(128), nullable=False),
        sa.Column("content", JSONType, nullable=False),
        sa.Column("sealed", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("res_type", "res_id", "version_id", name="pk_resource_versions"),
    )
    op.create_index("ix_resource_versions_type_updated", "resource_versions",
                    ["res_type", "last_updated"])
    op.create_table(
        "search_index",
        sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.String(255), nullable=True),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("row_id", name="pk_search_index"),
        sa.ForeignKeyConstraint(["res_type", "res_id"], ["resources.res_type", "resources.res_id"],
                                ondelete="CASCADE",
                                name="fk_search_index_res_type_resources"),
    )
    op.create_index("ix_search_index_lookup", "search_index", ["res_type", "param", "value"])
    op.create_index("ix_search_index_owner", "search_index", ["res_type", "res_id"])


def downgrade() -> None:
    op.drop_table("search_index")
    op.drop_table("resource_versions")
    op.drop_table("resources")
