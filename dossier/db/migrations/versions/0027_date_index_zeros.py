"""search_index: a date before the year 1000 gets its leading zeros back

The index text of a date value is fixed-width UTC (`0999-05-01T00:00:00.000000Z`), so
its text order is its time order. It was written with strftime's `%Y`, which drops a
year's leading zeros (`999-05-01T…`): such a date sorted after every other year, and
`authored-on=ge2020` found a Task authored in 999 (or on `0202-05-01`, a slip for 2020).
schemas/fhirtime.py `sortable` writes the zeros now; this pads the rows already written.
Only rows of date parameters are read, and only those whose year is short.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def _date_params() -> list[tuple[str, str]]:
    from schemas import SERVER_WRITTEN_TYPES, SUPPORTED_TYPES
    from schemas.search import search_parameters

    return sorted({(rtype, name)
                   for rtype in set(SUPPORTED_TYPES) | set(SERVER_WRITTEN_TYPES)
                   for name, param in search_parameters(rtype).items()
                   if param.type == "date"})


def padded(value: str) -> str:
    """'999-05-01T…Z' → '0999-05-01T…Z'; a value with a four-digit year as it is."""
    dash = value.find("-")
    return value if not 0 < dash < 4 else "0" * (4 - dash) + value


def upgrade() -> None:
    index = sa.table("search_index", sa.column("row_id", sa.Integer),
                     sa.column("res_type", sa.String), sa.column("param", sa.String),
                     sa.column("value", sa.String))
    bind = op.get_bind()
    for rtype, param in _date_params():
        short = bind.execute(sa.select(index.c.row_id, index.c.value).where(
            index.c.res_type == rtype, index.c.param == param,
            sa.func.substr(index.c.value, 1, 4).like("%-%"))).all()  # a short year
        for row_id, value in short:
            if padded(value) != value:
                bind.execute(sa.update(index).where(index.c.row_id == row_id).values(
                    value=padded(value)))


def downgrade() -> None:
    """Nothing to undo: the zeros stay (the older code sorted these dates wrongly either
    way)."""
