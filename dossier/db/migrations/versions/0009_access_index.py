"""access index: categories as bits on every version; one row per (Consent, actor)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dossier.db.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BITS = {"identity": 1, "demarches": 2, "network": 4, "fragility": 8, "psy": 16}


def upgrade() -> None:
    for table in ("resources", "resource_versions"):
        op.add_column(table, sa.Column("cat_mask", sa.Integer(), nullable=False,
                                       server_default="0"))
        for name, bit in BITS.items():  # categories are a fixed, comma-joined vocabulary
            op.execute(sa.text(
                f"UPDATE {table} SET cat_mask = cat_mask + {bit} "  # noqa: S608 - constants
                f"WHERE ',' || categories || ',' LIKE '%,{name},%'"))
    op.create_index("ix_resource_versions_patient", "resource_versions",
                    ["patient_id", "res_type"])
    op.create_table(
        "access_grants",
        sa.Column("row_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("consent_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("grantee", sa.String(128), nullable=False),
        sa.Column("permit", sa.Boolean(), nullable=False),
        sa.Column("act_access", sa.Boolean(), nullable=False),
        sa.Column("act_collect", sa.Boolean(), nullable=False),
        sa.Column("cat_mask", sa.Integer(), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=True),
        sa.Column("period_end", UTCDateTime(), nullable=True),
        sa.Column("purposed", sa.Boolean(), nullable=False),
        sa.Column("btg", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_access_grants_grantee", "access_grants", ["grantee", "patient_id"])
    op.create_index("ix_access_grants_consent", "access_grants", ["consent_id"])
    op.create_index("ix_access_grants_patient", "access_grants", ["patient_id"])
    _backfill()
    _guard()


# A Consent changed or removed by anything but the service (in place, in the database)
# must close the dossier at once, as the per-row decision does (an unreadable Consent
# denies everything): the index then holds a deny-all row for that person. The service's
# own writes replace those rows with the Consent's real ones in the same transaction.
SQLITE_GUARD = [
    """CREATE TRIGGER access_grants_consent_changed AFTER UPDATE OF content ON resources
    WHEN NEW.res_type = 'Consent'
    BEGIN
      DELETE FROM access_grants WHERE consent_id = NEW.res_id;
      INSERT INTO access_grants (consent_id, patient_id, grantee, permit, act_access,
        act_collect, cat_mask, period_start, period_end, purposed, btg)
      SELECT NEW.res_id, NEW.patient_id, '*', 0, 1, 1, 31, NULL, NULL, 0, 0
      WHERE NEW.patient_id IS NOT NULL;
    END""",
    """CREATE TRIGGER access_grants_consent_removed AFTER DELETE ON resources
    WHEN OLD.res_type = 'Consent'
    BEGIN
      DELETE FROM access_grants WHERE consent_id = OLD.res_id;
    END""",
]
POSTGRES_GUARD = [
    """CREATE FUNCTION access_grants_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        DELETE FROM access_grants WHERE consent_id = OLD.res_id;
        RETURN OLD;
      END IF;
      DELETE FROM access_grants WHERE consent_id = NEW.res_id;
      IF NEW.patient_id IS NOT NULL THEN
        INSERT INTO access_grants (consent_id, patient_id, grantee, permit, act_access,
          act_collect, cat_mask, period_start, period_end, purposed, btg)
        VALUES (NEW.res_id, NEW.patient_id, '*', false, true, true, 31, NULL, NULL, false,
          false);
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER access_grants_consent_changed AFTER UPDATE OF content ON resources
    FOR EACH ROW WHEN (NEW.res_type = 'Consent') EXECUTE FUNCTION access_grants_guard()""",
    """CREATE TRIGGER access_grants_consent_removed AFTER DELETE ON resources
    FOR EACH ROW WHEN (OLD.res_type = 'Consent') EXECUTE FUNCTION access_grants_guard()""",
]


def _guard() -> None:
    for statement in (POSTGRES_GUARD if op.get_bind().dialect.name == "postgresql"
                      else SQLITE_GUARD):
        op.execute(sa.text(statement))


def _backfill() -> None:
    """Index the Consents already stored (read with the consent engine's own parser)."""
    from dossier.core.access_index import refresh

    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT res_id, patient_id, content FROM resources "
        "WHERE res_type = 'Consent' AND deleted = :no"), {"no": False}).all()
    from sqlalchemy.orm import Session

    session = Session(bind=bind)
    for res_id, patient_id, content in rows:
        if isinstance(content, str):
            import json

            content = json.loads(content)
        refresh(session, res_id, patient_id, content)
    from datetime import UTC, datetime

    from dossier.core.access_index import add_break_glass

    for grant in bind.execute(sa.text(
            "SELECT id, patient_id, practitioner, granted_at, expires_at FROM break_glass "
            "WHERE expires_at > :now"), {"now": datetime.now(UTC)}).all():
        add_break_glass(session, grant.id, grant.patient_id, grant.practitioner,
                        grant.granted_at, grant.expires_at)
    session.flush()


def downgrade() -> None:
    op.execute(sa.text("DROP TRIGGER IF EXISTS access_grants_consent_changed"
                       + (" ON resources" if op.get_bind().dialect.name == "postgresql"
                          else "")))
    op.execute(sa.text("DROP TRIGGER IF EXISTS access_grants_consent_removed"
                       + (" ON resources" if op.get_bind().dialect.name == "postgresql"
                          else "")))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("DROP FUNCTION IF EXISTS access_grants_guard()"))
    op.drop_table("access_grants")
    op.drop_index("ix_resource_versions_patient", "resource_versions")
    for table in ("resources", "resource_versions"):
        op.drop_column(table, "cat_mask")
