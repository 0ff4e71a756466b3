"""people reach their dossier (SPEC §13): one dossier per national number

A unique partial index on the Patients' NISS blind-index rows of `search_index`: two
dossiers for one person can no longer be written, even by concurrent requests. A
database that already holds two dossiers for one number stops here: merge them first
(docs/operations.md).

Revision ID: 0016
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None

NISS_ROWS = ("res_type = 'Patient' AND param = 'identifier' AND "
             "system = 'https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin'")


def upgrade() -> None:
    op.create_index("ux_search_index_patient_niss", "search_index", ["value"], unique=True,
                    sqlite_where=sa.text(NISS_ROWS), postgresql_where=sa.text(NISS_ROWS))


def downgrade() -> None:
    op.drop_index("ux_search_index_patient_niss", table_name="search_index")
