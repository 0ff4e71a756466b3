"""people reach their dossier (SPEC §13): one dossier per national number, assisted
consent refusals, access requests, enrolment codes and the logins they link

A unique partial index on the Patients' NISS blind-index rows of `search_index`: two
dossiers for one person can no longer be written, even by concurrent requests. A
database that already holds two dossiers for one number stops here: they must be merged
first.

Revision ID: 0016
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import UTCDateTime

revision = "0016"
down_revision = "0017"
branch_labels = None
depends_on = None

NISS_ROWS = ("res_type = 'Patient' AND param = 'identifier' AND "
             "system = 'https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin'")


def upgrade() -> None:
    op.create_index("ux_search_index_patient_niss", "search_index", ["value"], unique=True,
                    sqlite_where=sa.text(NISS_ROWS), postgresql_where=sa.text(NISS_ROWS))


    op.create_table(
        "assisted_refusals",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("refused_at", UTCDateTime(), nullable=False))
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("practitioner", sa.String(140), nullable=False),
        sa.Column("categories", sa.String(255), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("communication_id", sa.String(64), nullable=True),
        sa.Column("consent_id", sa.String(64), nullable=True))
    op.create_index("ix_access_requests_practitioner", "access_requests",
                    ["practitioner", "status"])
    op.create_index("ix_access_requests_patient", "access_requests", ["patient_id", "status"])
    op.create_table(
        "enrolment_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(140), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True))
    op.create_index("ix_enrolment_codes_patient", "enrolment_codes", ["patient_id"])
    op.create_table(
        "enrolment_attempts",
        sa.Column("row_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False))
    op.create_index("ix_enrolment_attempts_login", "enrolment_attempts", ["login", "at"])
    op.create_table(
        "login_links",
        sa.Column("login", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("linked_at", UTCDateTime(), nullable=False))


def downgrade() -> None:
    for table in ("login_links", "enrolment_attempts", "enrolment_codes", "access_requests",
                  "assisted_refusals"):
        op.drop_table(table)
    op.drop_index("ux_search_index_patient_niss", table_name="search_index")
