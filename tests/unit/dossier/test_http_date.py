"""Last-Modified: RFC 9110 IMF-fixdate, the same string as the standard library's
formatter for every aware moment, in any time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dossier.fhir.wire import http_date

zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30),
                    timezones=zones))
def test_http_date_is_the_imf_fixdate_of_the_moment_in_gmt(moment: datetime) -> None:
    assert http_date(moment) == format_datetime(moment.astimezone(UTC), usegmt=True)


def test_a_known_date() -> None:
    assert http_date(datetime(1994, 11, 6, 8, 49, 37, 999999, tzinfo=UTC)) == \
        "Sun, 06 Nov 1994 08:49:37 GMT"


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        http_date(datetime(2026, 1, 1))
