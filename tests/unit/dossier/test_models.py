"""The schema's fixed lists follow the declarations they index."""

from __future__ import annotations

from dossier.db.models import STRING_PARAMS, STRING_ROWS
from schemas import search


def test_the_pattern_index_covers_every_string_search_parameter() -> None:
    """PostgreSQL's `ix_search_index_prefix` holds the rows of these parameters only
    (migration 0024): a string parameter declared later without being added here would
    search by the general index, reading every value of the parameter."""
    declared = {p.name for params in search._PARAMS.values() for p in params
                if p.type == "string"}
    assert declared and declared <= set(STRING_PARAMS)
    assert "param IN (" + ", ".join(f"'{p}'" for p in STRING_PARAMS) + ")" == STRING_ROWS
