"""Hypothesis strategies over a deliberately small world.

Few practitioners, organisations, professions and instants, so generated
provisions and requests collide often (same actor, boundary instants).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from consent import ACTIONS, CATEGORIES, Actor, Provision

T0 = datetime(2027, 3, 28, 0, 0, tzinfo=UTC)  # a DST change day in Brussels
INSTANTS = tuple(T0 + timedelta(hours=hours) for hours in range(-3, 4))
ZONES = (UTC, ZoneInfo("Europe/Brussels"), timezone(timedelta(hours=-5)),
         timezone(timedelta(hours=5, minutes=30)))

PRACTITIONERS = ("Practitioner/p1", "Practitioner/p2", "Practitioner/p3")
ORGANIZATIONS = ("Organization/o1", "Organization/o2", "Organization/o3")
PROFESSIONS = ("persphysician", "persnurse", "perspsychologist")
REFERENCES = (
    PRACTITIONERS + ORGANIZATIONS + tuple("Group/profession-" + code for code in PROFESSIONS)
)
PURPOSES = ("BTG", "TREAT")
CATEGORY_LIST = tuple(sorted(CATEGORIES))
ACTION_LIST = tuple(sorted(ACTIONS))

# Strategies are built once: building them inside composites is slow.
instants = st.sampled_from(INSTANTS)
zones = st.sampled_from(ZONES)
actions = st.sampled_from(ACTION_LIST)
request_purposes = st.sampled_from((None, *PURPOSES))
category_sets = st.frozensets(st.sampled_from(CATEGORY_LIST))
consent_ids = st.one_of(st.none(), st.sampled_from([f"c{i}" for i in range(8)]))
_maybe_instant = st.one_of(st.none(), instants)
_practitioner = st.one_of(st.none(), st.sampled_from(PRACTITIONERS))
_organizations = st.frozensets(st.sampled_from(ORGANIZATIONS), max_size=2)
_professions = st.frozensets(st.sampled_from(PROFESSIONS), max_size=2)
_others = st.frozensets(st.sampled_from(ORGANIZATIONS), max_size=1)
_kinds = st.sampled_from(("permit", "deny"))
_purpose_sets = st.frozensets(st.sampled_from(PURPOSES), max_size=1)
# (at least one for a permit, maybe none for a deny)
_refs = {1: st.frozensets(st.sampled_from(REFERENCES), min_size=1, max_size=3),
         0: st.frozensets(st.sampled_from(REFERENCES), max_size=3)}
_actions = {n: st.frozensets(st.sampled_from(ACTION_LIST), min_size=n) for n in (0, 1)}
_categories = {n: st.frozensets(st.sampled_from(CATEGORY_LIST), min_size=n) for n in (0, 1)}


def in_zone(instant: datetime) -> st.SearchStrategy[datetime]:
    """The same instant, written in one of several zones."""
    return zones.map(instant.astimezone)


request_times = st.builds(datetime.astimezone, instants, zones)

actors = st.builds(
    Actor,
    practitioner=_practitioner,
    organizations=_organizations,
    professions=_professions,
    other_references=_others,
)


@st.composite
def _periods(draw: st.DrawFn) -> tuple[datetime | None, datetime | None]:
    start, end = draw(_maybe_instant), draw(_maybe_instant)
    if start is not None and end is not None and start > end:
        start, end = end, start
    return start, end


periods = _periods()


@st.composite
def _provisions(draw: st.DrawFn, kind: str | None = None) -> Provision:
    kind = kind or draw(_kinds)
    least = 1 if kind == "permit" else 0
    start, end = draw(periods)
    return Provision(
        consent_id=draw(consent_ids),
        type="permit" if kind == "permit" else "deny",
        actors=draw(_refs[least]),
        actions=draw(_actions[least]),
        categories=draw(_categories[least]),
        start=start,
        end=end,
        purposes=draw(_purpose_sets),
    )


any_provisions = _provisions()
permits = _provisions("permit")
denies = _provisions("deny")
provision_lists = st.lists(any_provisions, max_size=8)
