"""resources.addressee: the one practitioner a server-written message is for (issue 18)

A professional's inbox (SPEC §14) holds Communications in the person's dossier that only
their addressee reads. The column is plain ADD COLUMN (no table copy on SQLite, so the
access index triggers stay). Organizations are indexed again for the new
`address-postalcode` search parameter (directory data, stored in clear).

Revision ID: 0017
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("resources", sa.Column("addressee", sa.String(80), nullable=True))
    op.create_index("ix_resources_addressee", "resources", ["addressee", "res_type"])
    from schemas.search import normalise

    bind = op.get_bind()
    meta = sa.MetaData()
    resources = sa.Table("resources", meta, autoload_with=bind)
    index = sa.Table("search_index", meta, autoload_with=bind)
    rows = bind.execute(sa.select(resources.c.res_id, resources.c.content).where(
        resources.c.res_type == "Organization", resources.c.deleted == sa.false())).all()
    batch: list[dict[str, object]] = []
    for res_id, content in rows:
        for address in (content or {}).get("address") or []:
            code = address.get("postalCode") if isinstance(address, dict) else None
            if isinstance(code, str) and code.strip():
                batch.extend({"res_type": "Organization", "res_id": res_id, "param": param,
                              "system": None, "value": value[:255]}
                             for param, value in (("address-postalcode", normalise(code)),
                                                  ("address-postalcode:exact", code.strip())))
    if batch:
        bind.execute(sa.insert(index), batch)


def downgrade() -> None:
    bind = op.get_bind()
    meta = sa.MetaData()
    index = sa.Table("search_index", meta, autoload_with=bind)
    bind.execute(sa.delete(index).where(index.c.res_type == "Organization",
                                        index.c.param.like("address-postalcode%")))
    op.drop_index("ix_resources_addressee", "resources")
    op.drop_column("resources", "addressee")  # native DROP COLUMN: the triggers stay
