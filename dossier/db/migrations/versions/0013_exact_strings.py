"""search index: `name:exact` rows for string parameters (the `:exact` modifier)

A data migration only: for every current, live resource of a type with a string search
parameter, add the rows `schemas.extract_index` now writes for the text as written
(`<param>:exact`). String parameters are declared on directory types only (Practitioner,
Organization, Endpoint): their content is not sealed, so it is read here in clear.

Revision ID: 0013
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0009"
branch_labels = None
depends_on = None

EXACT = ":exact"


def upgrade() -> None:
    from schemas.search import _PARAMS, extract_index  # the rules in force at this step

    bind = op.get_bind()
    meta = sa.MetaData()
    resources = sa.Table("resources", meta, autoload_with=bind)
    index = sa.Table("search_index", meta, autoload_with=bind)
    types = sorted(t for t, params in _PARAMS.items() if any(p.type == "string"
                                                              for p in params))
    if not types:
        return
    rows = bind.execute(sa.select(resources.c.res_type, resources.c.res_id,
                                  resources.c.content).where(
        resources.c.res_type.in_(types), resources.c.deleted == sa.false())).all()
    batch = []
    for res_type, res_id, content in rows:
        if not isinstance(content, dict):
            continue
        for param, system, value in extract_index({**content, "resourceType": res_type}):
            if param.endswith(EXACT):
                batch.append({"res_type": res_type, "res_id": res_id, "param": param,
                              "system": system, "value": value[:255]})
    if batch:
        bind.execute(sa.insert(index), batch)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM search_index WHERE param LIKE '%:exact'"))
