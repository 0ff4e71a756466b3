"""FHIR date, dateTime and instant values as instants.

A value covers a span: a year, a month, a day, or (with a time, which FHIR
requires to carry a zone) one instant. `bounds` gives the first instant the
value covers and the first instant after it. Dates without a time are read in
Europe/Brussels (§12).

FHIR allows the years 0001 to 9999, and Python's datetime holds exactly those, so the
calendar's two edges need care: the instant after 9999-12-31 cannot be written, nor
0001-01-01T00:00+01:00 in UTC. Such a bound is held at the first or last instant
Python can hold (`FIRST`, `LAST`): every real instant still compares the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

_DATETIME = re.compile(
    r"(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})"
    r"(?:T(?P<H>[0-9]{2}):(?P<M>[0-9]{2}):(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]{1,9}))?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2}))?)?)?"
)


@cache
def _brussels() -> ZoneInfo:
    return ZoneInfo("Europe/Brussels")


def _zone(text: str) -> timezone:
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)


def in_utc(moment: datetime) -> datetime:
    """An aware instant in UTC, held at FIRST or LAST past the calendar's edges."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return FIRST if moment.year == 1 else LAST


def sortable(moment: datetime) -> str:
    """'YYYY-MM-DDTHH:MM:SS.ffffffZ' in UTC, fixed width (text order = time order, the
    years before 1000 too, which strftime's %Y writes without their zeros)."""
    t = in_utc(moment)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond:06d}Z")


def bounds(text: str) -> tuple[datetime, datetime]:
    """(first instant covered, first instant after), both aware; ValueError if malformed."""
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ValueError("not a FHIR date or dateTime")
    year = int(match["y"])
    if match["H"] is not None:
        fraction = (match["f"] or "").ljust(6, "0")[:6]
        instant = datetime(year, int(match["m"]), int(match["d"]), int(match["H"]),
                           int(match["M"]), int(match["S"]), int(fraction),
                           tzinfo=_zone(match["tz"]))
        return instant, _after(instant, timedelta(microseconds=1))
    zone = _brussels()
    if match["d"] is not None:
        day = datetime(year, int(match["m"]), int(match["d"]), tzinfo=zone)
        return day, _after(day, timedelta(days=1))
    if match["m"] is not None:
        month = int(match["m"])
        first = datetime(year, month, 1, tzinfo=zone)
        if year == 9999 and month == 12:
            return first, LAST
        return first, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    first = datetime(year, 1, 1, tzinfo=zone)
    return first, (LAST if year == 9999 else datetime(year + 1, 1, 1, tzinfo=zone))


def _after(first: datetime, span: timedelta) -> datetime:
    """`first` + `span` on the wall clock of its zone (a day stays a calendar day across a
    change of hour); past the calendar's end, LAST (or `first` itself when it is already
    past LAST: 9999-12-31T23:59:59-14:00 ends where it starts)."""
    try:
        return first + span
    except OverflowError:
        return max(first, LAST)


def start_instant(text: str) -> str:
    """The first instant a value covers, in UTC: 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (sortable)."""
    return sortable(bounds(text)[0])
