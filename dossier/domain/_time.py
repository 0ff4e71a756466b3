"""FHIR date/dateTime values as spans of time, read in Europe/Brussels."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.fhirtime import LAST, bounds, in_utc

BRUSSELS = ZoneInfo("Europe/Brussels")

_PARTIAL = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_TICK = timedelta(microseconds=1)


def require_aware(value: datetime, name: str) -> None:
    """Reject naive datetimes: a discharge time is meaningless without a zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def span(value: str) -> tuple[datetime, datetime]:
    """The half-open interval [start, end) a FHIR date or dateTime stands for.

    "2026-03" is the whole of March in Brussels; a full dateTime is one instant.
    A dateTime without an offset (not valid FHIR) is read as Brussels time.
    """
    if _PARTIAL.fullmatch(value):  # a wall-clock day, month or year (schemas/fhirtime.py)
        start, end = bounds(value)
        # UTC, so comparisons never fall back to wall-clock time (same-tzinfo rule)
        return in_utc(start), in_utc(end)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not a FHIR date or dateTime") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=BRUSSELS)
    instant = in_utc(instant)
    return instant, (instant + _TICK if instant < LAST else LAST)


def start_of(value: str) -> datetime:
    """The first instant of a FHIR date or dateTime."""
    return span(value)[0]


def period_covers(period: dict[str, object] | None, at: datetime) -> bool:
    """True when `at` lies in a FHIR Period; a missing bound is open."""
    if not period:
        return True
    start, end = period.get("start"), period.get("end")
    if isinstance(start, str) and at < span(start)[0]:
        return False
    return not (isinstance(end, str) and at >= span(end)[1])
