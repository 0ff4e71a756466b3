"""search_index: a pattern index for string searches on PostgreSQL; audit_records by agent

A string search (starts-with: `Practitioner?name=`, `HealthcareService?name=`, the
répertoire's `address-postalcode`) is a prefix LIKE. PostgreSQL bounds an index scan by
a LIKE prefix only with an index in byte order: with `ix_search_index_lookup` (the
database's collation) it read every index value of the parameter — every Practitioner's
names for one `name=` search of the directory. `varchar_pattern_ops` is byte order
whatever the collation (dossier/search/sql.py `StartsWith`). Partial: only the rows of
string parameters (the directory's names and postal codes), so the ten index rows of each
Task a dossier gains do not pay for it. SQLite is given the prefix as a range instead, in
BINARY order, and needs no index.

`AuditEvent?agent=` (an auditor: what did this professional do?) read the whole log, on
both databases: audit_records had no index by agent. `ix_audit_records_agent` (agent,
seq) finds one professional's records newest first.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# the string search parameters when this revision was written (dossier/db/models.py)
STRING_ROWS = "param IN ('address-postalcode', 'name')"


def upgrade() -> None:
    op.create_index("ix_audit_records_agent", "audit_records", ["agent", "seq"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index("ix_search_index_prefix", "search_index", ["res_type", "param", "value"],
                    postgresql_ops={"value": "varchar_pattern_ops"},
                    postgresql_where=sa.text(STRING_ROWS))


def downgrade() -> None:
    op.drop_index("ix_audit_records_agent", table_name="audit_records")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_search_index_prefix", table_name="search_index")
