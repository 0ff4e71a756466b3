"""A Consent whose period reaches the calendar's edges (years 0001 and 9999).

"Until 9999-12-31" is how many systems write "no end". parse_consent raised
OverflowError on it (the day after cannot be held by a datetime): the Consent could not
be created (a 500), and one already stored would have failed every read of the dossier
with a 500 instead of being read. Now such an end is held at the last instant a datetime
holds, and the period means what it says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consent import Actor, parse_consent, render_consent
from consent.engine import decide
from consent.parse import UNSURE, _read, _read_plain
from tests import factories as f

GP = Actor(practitioner="Practitioner/gp-1", professions=frozenset({"persphysician"}))
LAST = datetime.max.replace(tzinfo=UTC)
FIRST = datetime.min.replace(tzinfo=UTC)

PERIODS = [
    ("2020-01-01", "9999-12-31", datetime(2019, 12, 31, 23, tzinfo=UTC), LAST),
    ("2020", "9999", datetime(2019, 12, 31, 23, tzinfo=UTC), LAST),
    ("2020-01-01", "9999-12", datetime(2019, 12, 31, 23, tzinfo=UTC), LAST),
    ("2020-01-01", "9999-12-31T23:59:59-01:00", datetime(2019, 12, 31, 23, tzinfo=UTC), LAST),
    ("0001-01-01T00:00:00+01:00", "2030-01-01", FIRST, datetime(2030, 1, 1, 23, tzinfo=UTC)),
    ("0001", "9999", FIRST, LAST),
]


@pytest.mark.parametrize(("start", "end", "first", "after"), PERIODS)
def test_a_period_at_the_calendars_edges_reads_as_written(
        start: str, end: str, first: datetime, after: datetime) -> None:
    resource = f.consent("p-1", "Practitioner/gp-1", categories=("demarches",),
                         start=start, end=end)
    provision = parse_consent(resource)
    assert provision is not None
    assert (provision.start, provision.end) == (first, after)
    assert parse_consent(render_consent(provision)) == provision  # round trip
    problems, _, full = _read(resource)
    assert not problems and full == provision
    assert _read_plain(resource) in (UNSURE, provision)  # the fast reader agrees or defers


@pytest.mark.parametrize(("start", "end", "first", "after"), PERIODS)
def test_it_grants_inside_and_not_before(start: str, end: str, first: datetime,
                                         after: datetime) -> None:
    provision = parse_consent(f.consent("p-1", "Practitioner/gp-1", categories=("demarches",),
                                        start=start, end=end))
    assert provision is not None
    now = datetime(2026, 12, 8, 12, tzinfo=UTC)
    assert decide(GP, [provision], frozenset({"demarches"}), "access", now).permit == (
        first <= now < after)
    if first > FIRST:
        early = first.replace(year=first.year - 1)
        assert not decide(GP, [provision], frozenset({"demarches"}), "access", early).permit
