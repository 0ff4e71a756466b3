"""FHIR date, dateTime and instant values as instants.

A value covers a span: a year, a month, a day, or (with a time, which FHIR
requires to carry a zone) one instant. `bounds` gives the first instant the
value covers and the first instant after it. Dates without a time are read in
Europe/Brussels (§12).
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
        return instant, instant + timedelta(microseconds=1)
    zone = _brussels()
    if match["d"] is not None:
        day = datetime(year, int(match["m"]), int(match["d"]), tzinfo=zone)
        after = day.date() + timedelta(days=1)
        return day, datetime(after.year, after.month, after.day, tzinfo=zone)
    if match["m"] is not None:
        month = int(match["m"])
        first = datetime(year, month, 1, tzinfo=zone)
        return first, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


def start_instant(text: str) -> str:
    """The first instant a value covers, in UTC: 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (sortable)."""
    return bounds(text)[0].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
