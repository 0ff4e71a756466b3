"""FHIR dateTime values as period bounds.

A Period bound may be a year, a month, a day or a full date-time (which FHIR
requires to carry a zone). `parse_bound` reads it as the instants it spans,
[first, after); a Provision then keeps:

- `start` → `first`, the first instant it covers (start inclusive);
- `end`   → `after`, the first instant AFTER it, so a date end covers its whole day
  (end exclusive). A full date-time end is exclusive as written.

Dates without a time are read in Europe/Brussels, the dossier's time zone. The instant
after the calendar's last day (9999-12-31) cannot be written: it is held at `LAST`, the
last instant a datetime holds, so an end of 9999-12-31 means "no end", as written.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

_DATETIME = re.compile(
    r"(?P<y>[0-9]{4})"
    r"(?:-(?P<m>[0-9]{2})"
    r"(?:-(?P<d>[0-9]{2})"
    r"(?:T(?P<H>[0-9]{2}):(?P<M>[0-9]{2}):(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]{1,9}))?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2}))?)?)?"
)


LAST = datetime.max.replace(tzinfo=UTC)


@cache
def local_zone() -> ZoneInfo:
    """The dossier's zone (§12: times are Europe/Brussels)."""
    return ZoneInfo("Europe/Brussels")


@cache  # a pure function of a short text (at most a few thousand offsets exist)
def _zone(text: str) -> timezone:
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        raise ValueError("time-zone offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class Bound(NamedTuple):
    """A dateTime read as the instants it spans: [first, after)."""

    first: datetime
    after: datetime
    precision: str  # "year", "month", "day" or "instant"


def parse_bound(text: str) -> Bound:
    """The instants a FHIR dateTime covers, or ValueError."""
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ValueError("not a FHIR dateTime")
    y, m, d, hour, minute, second, fraction, tz = match.groups()
    year = int(y)
    if hour is not None:
        instant = datetime(
            year, int(m), int(d), int(hour), int(minute), int(second),
            int(fraction.ljust(6, "0")[:6]) if fraction else 0, tzinfo=_zone(tz),
        )
        return Bound(instant, instant, "instant")
    zone = local_zone()
    if d is not None:
        day = date(year, int(m), int(d))
        after = LAST if day == date.max else _midnight(day + timedelta(days=1), zone)
        return Bound(_midnight(day, zone), after, "day")
    if m is not None:
        month = int(m)
        after = LAST if (year, month) == (9999, 12) else _midnight(
            date(year + month // 12, month % 12 + 1, 1), zone)
        return Bound(_midnight(date(year, month, 1), zone), after, "month")
    after = LAST if year == 9999 else _midnight(date(year + 1, 1, 1), zone)
    return Bound(_midnight(date(year, 1, 1), zone), after, "year")


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def format_instant(value: datetime) -> str:
    """A full FHIR dateTime for an aware datetime (round-trips exactly)."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("instant must be timezone-aware")
    if offset % timedelta(minutes=1):  # FHIR offsets have no seconds
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
