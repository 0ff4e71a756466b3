"""Invariants of the decision point, checked with hypothesis.

Each property is written once against an `Engine` and run twice: it must hold
for the real engine, and it must FAIL for at least one deliberately broken
engine (a "mutant"), which shows the property can catch the bug it is about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from consent import (
    BREAK_GLASS_CATEGORIES,
    CATEGORIES,
    Actor,
    Provision,
    break_glass_provision,
    break_glass_refused,
    decide,
    granted_categories,
)
from tests.unit.consent.consent_reference import (
    applies,
    reference_break_glass_refused,
    reference_decide,
    reference_granted,
    speaks_about,
)
from tests.unit.consent.consent_strategies import (
    ACTION_LIST,
    INSTANTS,
    actions,
    actors,
    any_provisions,
    category_sets,
    denies,
    in_zone,
    instants,
    permits,
    provision_lists,
    request_purposes,
    request_times,
)

Granted = Callable[..., frozenset[str]]


@dataclass(frozen=True)
class Engine:
    decide: Callable[..., Any]  # returns a Decision or a bool; only truthiness is compared
    granted: Granted
    refused: Callable[[Iterable[Provision], datetime], bool] = break_glass_refused


def real() -> Engine:
    return Engine(decide, granted_categories)


# --- mutants: plausible bugs, each a fresh engine per example -----------------


def decide_via(granted: Granted) -> Callable[..., bool]:
    def decide_fn(
        actor: Actor,
        provs: Iterable[Provision],
        cats: frozenset[str],
        action: str,
        at: datetime,
        purpose: str | None = None,
    ) -> bool:
        return bool(cats) and cats <= granted(actor, provs, action, at, purpose)

    return decide_fn


def from_granted(granted: Granted) -> Engine:
    return Engine(decide_via(granted), granted)


def rewriting(rewrite: Callable[[list[Provision]], list[Provision]]) -> Engine:
    """The real engine, fed a rewritten provision list."""

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        return granted_categories(actor, rewrite(list(provs)), action, at, purpose)

    return from_granted(granted)


def ignore_denies() -> Engine:
    return rewriting(lambda provs: [p for p in provs if p.type == "permit"])


def toggle_denies() -> Engine:
    """A second deny cancels the first."""

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        live = [p for p in provs if applies(p, actor, action, at, purpose)]
        return frozenset(
            c for c in CATEGORIES
            if any(p.type == "permit" and c in p.categories for p in live)
            and sum(p.type == "deny" and speaks_about(p, c) for p in live) % 2 == 0
        )

    return from_granted(granted)


def specific_narrows() -> Engine:
    """A grant naming the practitioner hides their organisation's grants."""

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        provs = list(provs)
        mine = [p for p in provs if p.type == "permit" and actor.practitioner in p.actors]
        if mine:
            provs = mine + [p for p in provs if p.type == "deny"]
        return granted_categories(actor, provs, action, at, purpose)

    return from_granted(granted)


def psy_with_fragility() -> Engine:
    """Treats psy as part of fragility."""
    return rewriting(lambda provs: [
        replace(p, categories=p.categories | {"psy"}) if "fragility" in p.categories else p
        for p in provs
    ])


def ignore_period() -> Engine:
    return rewriting(lambda provs: [replace(p, start=None, end=None) for p in provs])


def end_inclusive() -> Engine:
    return rewriting(lambda provs: [
        replace(p, end=p.end + timedelta(microseconds=1)) if p.end else p for p in provs
    ])


def first_match() -> Engine:
    """The first applicable provision about a category decides it."""

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        result = set()
        provs = list(provs)
        for c in CATEGORIES:
            for p in provs:
                if speaks_about(p, c) and applies(p, actor, action, at, purpose):
                    if p.type == "permit":
                        result.add(c)
                    break
        return frozenset(result)

    return from_granted(granted)


def two_passes() -> Engine:
    """Walks the provisions twice: a generator is empty the second time."""

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        permits = [p for p in provs if p.type == "permit"]
        denies = [p for p in provs if p.type == "deny"]
        return granted_categories(actor, permits + denies, action, at, purpose)

    return from_granted(granted)


def wall_clock() -> Engine:
    """Reads the request time's wall clock as if it were UTC."""

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        naive_utc = at.replace(tzinfo=INSTANTS[0].tzinfo)
        return granted_categories(actor, provs, action, naive_utc, purpose)

    return from_granted(granted)


def cached() -> Engine:
    """Remembers a decision per actor and action (revocation would not be immediate)."""
    memory: dict[tuple[Actor, str], frozenset[str]] = {}

    def granted(
        actor: Actor, provs: Iterable[Provision], action: str, at: datetime, purpose: str | None
    ) -> frozenset[str]:
        key = (actor, action)
        if key not in memory:
            memory[key] = granted_categories(actor, provs, action, at, purpose)
        return memory[key]

    return from_granted(granted)


def granted_forgets_denies() -> Engine:
    return Engine(decide, ignore_denies().granted)


def empty_request_permitted() -> Engine:
    def decide_fn(
        actor: Actor,
        provs: Iterable[Provision],
        cats: frozenset[str],
        action: str,
        at: datetime,
        purpose: str | None = None,
    ) -> bool:
        granted = granted_categories(actor, provs, action, at, purpose)
        return all(c in granted for c in cats)

    return Engine(decide_fn, granted_categories)


def refusal_ignored() -> Engine:
    return rewriting(lambda provs: [p for p in provs if not (p.type == "deny" and p.purposes)])


def purpose_ignored() -> Engine:
    return rewriting(lambda provs: [replace(p, purposes=frozenset()) for p in provs])


# --- properties ---------------------------------------------------------------


@st.composite
def aimed_deny(
    draw: st.DrawFn, actor: Actor, action: str, at: datetime, purpose: str | None
) -> Provision:
    """A deny that applies to this request, whatever else it says."""
    names = sorted(actor.references())
    actors_named = draw(st.sampled_from([frozenset(), *(frozenset({n}) for n in names)]))
    before = [i for i in INSTANTS if i <= at]
    after = [i for i in INSTANTS if i > at]
    return Provision(
        consent_id=draw(st.sampled_from(["d1", "d2", None])),
        type="deny",
        actors=actors_named,
        actions=draw(st.sampled_from([frozenset(), frozenset({action}), frozenset(ACTION_LIST)])),
        categories=draw(category_sets),
        start=draw(st.sampled_from([None, *before])),
        end=draw(st.sampled_from([None, *after])),
        purposes=draw(st.sampled_from([frozenset(), frozenset({purpose})] if purpose else
                                      [frozenset()])),
    )


@dataclass(frozen=True)
class Request:
    actor: Actor
    action: str
    at: datetime
    purpose: str | None


def draw_request(data: st.DataObject) -> Request:
    return Request(
        data.draw(actors), data.draw(actions), data.draw(request_times),
        data.draw(request_purposes),
    )


def ask(engine: Engine, provs: Iterable[Provision], cats: frozenset[str], r: Request) -> bool:
    return bool(engine.decide(r.actor, provs, cats, r.action, r.at, r.purpose))


def grants(engine: Engine, provs: Iterable[Provision], r: Request) -> frozenset[str]:
    return engine.granted(r.actor, provs, r.action, r.at, r.purpose)


def deny_overrides(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    base = data.draw(provision_lists)
    deny = data.draw(aimed_deny(r.actor, r.action, r.at, r.purpose))
    where = data.draw(st.integers(0, len(base)))
    provs = [*base[:where], deny, *base[where:]]
    covered = deny.categories or CATEGORIES
    assert grants(engine, provs, r).isdisjoint(covered)
    cats = data.draw(category_sets)
    if not cats.isdisjoint(covered):
        assert not ask(engine, provs, cats, r)


def permit_never_removes_access(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    base = data.draw(provision_lists)
    extra = data.draw(permits)
    names = sorted(r.actor.references())
    aimed = data.draw(st.booleans())
    if names and aimed:  # often aimed at this very actor
        extra = replace(extra, actors=extra.actors | {data.draw(st.sampled_from(names))})
    more = [*base, extra]
    assert grants(engine, base, r) <= grants(engine, more, r)
    cats = data.draw(category_sets)
    if ask(engine, base, cats, r):
        assert ask(engine, more, cats, r)


def deny_never_adds_access(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    base = data.draw(provision_lists)
    more = [*base, data.draw(denies)]
    assert grants(engine, more, r) <= grants(engine, base, r)
    cats = data.draw(category_sets)
    if not ask(engine, base, cats, r):
        assert not ask(engine, more, cats, r)


def psy_only_when_named(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    provs = [p for p in data.draw(provision_lists)
             if not (p.type == "permit" and "psy" in p.categories)]
    assert "psy" not in grants(engine, provs, r)
    cats = data.draw(category_sets) | {"psy"}
    assert not ask(engine, provs, cats, r)


@st.composite
def outside(draw: st.DrawFn, provision: Provision, at: datetime) -> Provision:
    """The same provision with a period that does not contain `at` (end exclusive)."""
    later = [i for i in INSTANTS if i > at]
    not_after = [i for i in INSTANTS if i <= at]  # includes `at` itself: end is exclusive
    start: datetime | None
    end: datetime | None
    if later and (not not_after or draw(st.booleans())):
        start = draw(st.sampled_from(later))
        end = draw(st.sampled_from([None, *(i for i in later if i >= start)]))
    else:
        end = draw(st.sampled_from(not_after))
        start = draw(st.sampled_from([None, *(i for i in not_after if i <= end)]))
    return replace(provision, start=start, end=end)


def outside_period_does_nothing(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    base = data.draw(provision_lists)
    extra = data.draw(outside(data.draw(any_provisions), r.at))
    more = [*base, extra]
    assert grants(engine, more, r) == grants(engine, base, r)
    cats = data.draw(category_sets)
    assert engine.decide(r.actor, more, cats, r.action, r.at, r.purpose) == engine.decide(
        r.actor, base, cats, r.action, r.at, r.purpose
    )


def order_and_duplicates_do_not_matter(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    provs = data.draw(provision_lists)
    shuffled = data.draw(st.permutations(provs))
    doubled = [*shuffled, *data.draw(st.lists(st.sampled_from(provs), max_size=4))] if provs \
        else shuffled
    cats = data.draw(category_sets)
    assert grants(engine, doubled, r) == grants(engine, provs, r)
    assert engine.decide(r.actor, doubled, cats, r.action, r.at, r.purpose) == engine.decide(
        r.actor, provs, cats, r.action, r.at, r.purpose
    )


def one_pass_over_provisions(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    provs = data.draw(provision_lists)
    cats = data.draw(category_sets)
    assert grants(engine, iter(provs), r) == grants(engine, tuple(provs), r)
    assert ask(engine, (p for p in provs), cats, r) == ask(engine, provs, cats, r)


def time_zone_does_not_matter(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    elsewhere = replace(r, at=data.draw(in_zone(r.at)))
    provs = data.draw(provision_lists)
    cats = data.draw(category_sets)
    assert grants(engine, provs, r) == grants(engine, provs, elsewhere)
    assert ask(engine, provs, cats, r) == ask(engine, provs, cats, elsewhere)


def no_memory_between_decisions(make: Callable[[], Engine], data: st.DataObject) -> None:
    """Each answer in a sequence equals the answer to that request asked first."""
    actor, action = data.draw(actors), data.draw(actions)
    cats = data.draw(category_sets)
    asks = data.draw(st.lists(
        st.tuples(provision_lists, request_times, request_purposes), min_size=2, max_size=4))
    engine = make()
    for provs, at, purpose in asks:
        r = Request(actor, action, at, purpose)
        assert grants(engine, provs, r) == grants(make(), provs, r)
        assert ask(engine, provs, cats, r) == ask(make(), provs, cats, r)


def granted_agrees_with_decide(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    provs = data.draw(provision_lists)
    cats = data.draw(category_sets)
    expected = bool(cats) and cats <= grants(engine, provs, r)
    assert ask(engine, provs, cats, r) == expected


def matches_reference(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine, r = make(), draw_request(data)
    provs = data.draw(provision_lists)
    cats = data.draw(category_sets)
    assert ask(engine, provs, cats, r) == reference_decide(
        r.actor, provs, cats, r.action, r.at, r.purpose
    )
    assert grants(engine, provs, r) == reference_granted(
        r.actor, provs, r.action, r.at, r.purpose
    )
    assert engine.refused(provs, r.at) == reference_break_glass_refused(provs, r.at)


def break_glass_refusal_is_final(make: Callable[[], Engine], data: st.DataObject) -> None:
    """Refused iff a fresh practitioner's break-the-glass grant opens nothing of it."""
    engine = make()
    provs = data.draw(provision_lists)
    at = data.draw(request_times)
    fresh = Actor(practitioner="Practitioner/fresh")
    glass = break_glass_provision("Practitioner/fresh", data.draw(instants), minutes=600)
    r = Request(fresh, "access", at, "BTG")
    opened = grants(engine, [*provs, glass], r) & BREAK_GLASS_CATEGORIES
    if glass.in_period(at):
        assert engine.refused(provs, at) == (not opened)
    else:
        assert not opened


def break_glass_grant_shape(make: Callable[[], Engine], data: st.DataObject) -> None:
    engine = make()
    who = data.draw(st.sampled_from(["Practitioner/p1", "Practitioner/p2"]))
    start = data.draw(in_zone(data.draw(instants)))
    minutes = data.draw(st.integers(1, 240))
    glass = break_glass_provision(who, start, minutes, grant_id="bg1")
    # Arithmetic in UTC: wall-clock arithmetic is wrong across the DST change.
    begin = start.astimezone(UTC)
    end = begin + timedelta(minutes=minutes)
    me = Actor(practitioner=who)
    inside = Request(me, "access", data.draw(st.sampled_from([start, end - timedelta(seconds=1)])),
                     "BTG")
    assert grants(engine, [glass], inside) == BREAK_GLASS_CATEGORIES
    assert not ask(engine, [glass], frozenset({"psy"}), inside)
    nothing = [
        replace(inside, purpose=data.draw(st.sampled_from([None, "TREAT"]))),
        replace(inside, action="collect"),
        replace(inside, at=end),
        replace(inside, at=begin - timedelta(seconds=1)),
        replace(inside, actor=Actor(practitioner="Practitioner/p3")),
    ]
    for r in nothing:
        assert grants(engine, [glass], r) == frozenset()


Property = Callable[[Callable[[], Engine], st.DataObject], None]

# property -> the mutants it must catch
CATCHES: dict[Property, tuple[Callable[[], Engine], ...]] = {
    deny_overrides: (ignore_denies, toggle_denies, first_match),
    permit_never_removes_access: (specific_narrows,),
    deny_never_adds_access: (toggle_denies,),
    psy_only_when_named: (psy_with_fragility,),
    outside_period_does_nothing: (ignore_period, end_inclusive),
    order_and_duplicates_do_not_matter: (first_match, toggle_denies),
    one_pass_over_provisions: (two_passes,),
    time_zone_does_not_matter: (wall_clock,),
    no_memory_between_decisions: (cached,),
    granted_agrees_with_decide: (granted_forgets_denies, empty_request_permitted),
    matches_reference: (
        ignore_denies, toggle_denies, specific_narrows, psy_with_fragility, ignore_period,
        end_inclusive, first_match, wall_clock, refusal_ignored, purpose_ignored,
        empty_request_permitted, granted_forgets_denies,
    ),
    break_glass_refusal_is_final: (refusal_ignored,),
    break_glass_grant_shape: (purpose_ignored,),
}

HOLDS = settings(max_examples=200, deadline=None)
# Deterministic, and stop at the first counterexample: no need to shrink it.
MUST_FAIL = settings(
    max_examples=3000,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    phases=(Phase.generate,),
)


def run(prop: Property, make: Callable[[], Engine], config: settings) -> None:
    @config
    @given(st.data())
    def check(data: st.DataObject) -> None:
        prop(make, data)

    check()


@pytest.mark.parametrize("prop", list(CATCHES), ids=lambda p: p.__name__)
def test_property_holds(prop: Property) -> None:
    run(prop, real, HOLDS)


@pytest.mark.parametrize(
    ("prop", "mutant"),
    [(prop, mutant) for prop, mutants in CATCHES.items() for mutant in mutants],
    ids=lambda f: f.__name__,
)
def test_property_catches_mutant(prop: Property, mutant: Callable[[], Engine]) -> None:
    with pytest.raises(AssertionError):
        run(prop, mutant, MUST_FAIL)

