"""FHIR dates at the calendar's edges (years 0001 and 9999) and before the year 1000.

A Task authored on 9999-12-31, or a search for it, raised OverflowError (a 500): the
instant after that day cannot be held by a datetime. And the index's text of a date
before the year 1000 lost its leading zero (`999-…`), so it sorted after every other
year: `authored-on=ge2020` matched a Task of the year 999."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dossier.domain._time import period_covers, span
from dossier.search.params import parse_date
from schemas.fhirtime import FIRST, LAST, bounds, in_utc, sortable, start_instant

EDGES = ["0001", "0001-01", "0001-01-01", "0001-01-01T00:00:00+01:00",
         "0001-01-01T00:00:00-14:00", "0999-05-01", "9999", "9999-12", "9999-12-31",
         "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999+14:00",
         "9999-12-31T23:59:59.999999-14:00"]

zones = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)),
                  st.integers(-14 * 60, 14 * 60))
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=zones)


@pytest.mark.parametrize("text", EDGES)
def test_every_fhir_date_has_bounds_in_order_and_a_start_text(text: str) -> None:
    first, after = bounds(text)
    assert first <= after  # equal only for an instant past LAST in UTC
    # an instant past UTC's edge (0001-01-01T00:00+01:00) is held at it, with its end
    assert FIRST <= in_utc(first) <= in_utc(after) <= LAST
    start = start_instant(text)
    assert len(start) == len("2024-01-01T00:00:00.000000Z") and start.endswith("Z")


@pytest.mark.parametrize("text", EDGES)
def test_every_fhir_date_is_a_search_value(text: str) -> None:
    for prefix in ("", "ge", "lt", "ne"):
        found = parse_date(prefix + text)
        assert FIRST <= found.low <= found.high <= LAST


def test_the_last_day_and_the_last_month_and_year_end_with_the_calendar() -> None:
    for text in ("9999-12-31", "9999-12", "9999"):
        assert bounds(text)[1] == LAST
    assert bounds("9998-12-31")[1] == datetime(9999, 1, 1, tzinfo=bounds("9998")[0].tzinfo)


@given(instants, instants)
def test_the_index_text_sorts_as_time_does(a: datetime, b: datetime) -> None:
    assert (sortable(a) < sortable(b)) == (a < b)
    assert (sortable(a) == sortable(b)) == (a == b)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31,
                                                                     23, 59, 59, 999999),
                    timezones=zones))
def test_in_utc_is_the_same_instant_or_the_edge_it_passed(moment: datetime) -> None:
    held = in_utc(moment)
    assert held.tzinfo is UTC
    try:
        exact = moment.astimezone(UTC)
    except OverflowError:
        assert held in (FIRST, LAST)
        assert (held == FIRST) == (moment < FIRST)
    else:
        assert held == exact


def test_a_year_before_1000_keeps_its_zeros() -> None:
    assert start_instant("0999-05-01T12:00:00Z") == "0999-05-01T12:00:00.000000Z"
    assert start_instant("0999-05-01T12:00:00Z") < start_instant("2020-01-01")


@pytest.mark.parametrize("text", [*EDGES, "9999-12-31T23:59:59"])
def test_the_domains_spans_reach_the_edges_too(text: str) -> None:
    """dossier/domain/_time.py (fragility, discharge readiness) reads stored periods."""
    start, end = span(text)
    assert FIRST <= start <= end <= LAST
    if text.startswith("9999"):
        assert period_covers({"start": "2020-01-01", "end": text},
                             datetime(9000, 1, 1, tzinfo=UTC))
