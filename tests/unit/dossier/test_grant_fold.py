"""The grant fold of a consented search (dossier/core/access_index.py) is one fixed piece
of SQL: SQLAlchemy's cache key of a narrowed statement does not walk it, and it carries no
bound value, so the statement compiled once serves every reader and every moment. What
the fold decides is tested against the consent engine in
tests/integration/test_access_index.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from dossier.core import access_index
from dossier.db.models import resources

R = resources.c


def _narrowed(refs: list[str], now: datetime, glass: bool) -> object:
    return select(R.res_id).where(access_index.readable_now(
        R.cat_mask, R.patient_id, refs, now, break_glass=glass))


def test_the_fold_holds_no_bound_value() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        for name in ("plain", "urgent"):
            compiled = access_index._FOLDS[name].compile(dialect=dialect)
            assert compiled.params == {}, name
            assert "grant_of_row.cat_mask" in str(compiled)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["Practitioner/a", "Organization/b", "Group/c"]),
                min_size=1, max_size=3),
       st.integers(min_value=0, max_value=10**6), st.booleans())
def test_one_cache_key_whatever_the_reader_and_the_moment(refs: list[str], seconds: int,
                                                          glass: bool) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    key = _narrowed(refs, now, glass)._generate_cache_key()  # type: ignore[attr-defined]
    other = _narrowed(["Practitioner/z"], datetime(2020, 5, 5, tzinfo=UTC), glass)
    other_key = other._generate_cache_key()  # type: ignore[attr-defined]
    assert key is not None and other_key is not None  # cacheable
    assert key.key == other_key.key  # the same compiled statement
    # the values travel as parameters, the fold's SQL is in the statement
    sql = str(_narrowed(refs, now, glass).compile(dialect=sqlite.dialect()))  # type: ignore[attr-defined]
    assert sql.count("max(CASE WHEN") == (20 if glass else 10)
    assert ("grant_of_row.btg" in sql) is glass
