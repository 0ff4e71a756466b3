"""The active subscriptions a write is matched against (table subscriptions): read once
per unit (`Repository.memo(ACTIVE_MEMO, …)`), or by a practitioner's create on
PostgreSQL in the statement that resolves the principal (core/repository.py ReadAlong)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select

from dossier.db.models import subscriptions

SUB = subscriptions.c
TOPIC = "https://dossier.brussels/fhir/SubscriptionTopic/dossier-entry"
ACTIVE_MEMO = "active-subscriptions"  # the unit's memo key of the rows below
_LIVE = (SUB.status == "active", SUB.topic == TOPIC, SUB.end_at > bindparam("now"))
ACTIVE = select(SUB.id, SUB.subscriber, SUB.filters).where(*_LIVE)  # bound: now


class Active(NamedTuple):
    """One active subscription: its id, who subscribed, what it filters."""

    id: str
    subscriber: dict[str, Any]
    filters: Any


def active_json() -> Any:
    """ACTIVE as one JSON array of [id, subscriber, filters] (a scalar subquery)."""
    return select(func.json_agg(func.json_build_array(SUB.id, SUB.subscriber, SUB.filters))
                  ).where(*_LIVE).scalar_subquery()


def active_of(found: list[Any] | None) -> list[Active]:
    """The rows of `active_json`'s array."""
    return [Active(i, s, f) for i, s, f in found or []]
