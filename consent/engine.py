"""The policy decision point: default deny, deny overrides, psy only when named.

A provision applies to a request when all of these hold:

1. actor   — it names none (deny only) or names one of the actor's references;
2. action  — it names the requested action (a deny naming none covers both);
3. period  — `start <= at < end`, an open side never limits;
4. purpose — a provision naming purposes applies only to a request made with
   one of them; a permit naming none applies to every purpose except
   break-the-glass ("BTG"); a deny naming none applies to every purpose.

A category is granted when an applicable permit names it and no applicable
deny covers it (a deny naming no category covers all). Nothing else grants.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from consent.model import (
    ACTIONS,
    BREAK_GLASS_CATEGORIES,
    BREAK_GLASS_PURPOSE,
    CATEGORIES,
    PRACTITIONER_REF,
    Actor,
    Decision,
    Provision,
    as_utc,
)


def _request_time(action: str, at: datetime) -> datetime:
    if action not in ACTIONS:
        raise ValueError("action must be 'access' or 'collect'")
    return as_utc(at, "at")


def _purpose_matches(provision: Provision, purpose: str | None) -> bool:
    if provision.purposes:
        return purpose in provision.purposes
    return provision.type == "deny" or purpose != BREAK_GLASS_PURPOSE


def _applies(
    provision: Provision, refs: frozenset[str], action: str, at: datetime, purpose: str | None
) -> bool:
    return (
        (not provision.actors or not provision.actors.isdisjoint(refs))
        and (not provision.actions or action in provision.actions)
        and provision.in_period(at)
        and _purpose_matches(provision, purpose)
    )


def _covered(provision: Provision) -> frozenset[str]:
    """The categories a provision speaks about (a deny naming none: all)."""
    return provision.categories or CATEGORIES


def _applicable(
    actor: Actor, provisions: Iterable[Provision], action: str, at: datetime, purpose: str | None
) -> tuple[list[Provision], list[Provision]]:
    """(permits, denies) that apply to this request."""
    refs = actor.references()
    permits: list[Provision] = []
    denies: list[Provision] = []
    for provision in provisions:
        if _applies(provision, refs, action, at, purpose):
            (permits if provision.type == "permit" else denies).append(provision)
    return permits, denies


def granted_categories(
    actor: Actor,
    provisions: Iterable[Provision],
    action: str,
    at: datetime,
    purpose: str | None = None,
) -> frozenset[str]:
    """The categories `decide` would permit one by one (to narrow queries)."""
    permits, denies = _applicable(actor, provisions, action, _request_time(action, at), purpose)
    granted: set[str] = set()
    for permit in permits:
        granted |= permit.categories
    for deny in denies:
        granted -= _covered(deny)
    return frozenset(granted)


def decide(
    actor: Actor,
    provisions: Iterable[Provision],
    categories: frozenset[str],
    action: str,
    at: datetime,
    purpose: str | None = None,
) -> Decision:
    """Permit iff every requested category is granted; an empty request is denied.

    Reasons: on a permit, "permit:Consent/<id>" for each permit used; on a
    deny, "deny:Consent/<id>:<category>", "no-grant:<category>",
    "unknown-category:<category>" or "no-category".
    """
    if isinstance(categories, str):
        raise TypeError("categories must be a set of category codes, not one string")
    permits, denies = _applicable(actor, provisions, action, _request_time(action, at), purpose)
    wanted = frozenset(categories)
    if not wanted:
        return Decision(False, ("no-category",))
    failures: list[str] = []
    for category in sorted(wanted):
        if category not in CATEGORIES:
            failures.append(f"unknown-category:{category}")
            continue
        blocking = sorted({deny.ref for deny in denies if category in _covered(deny)})
        failures.extend(f"deny:{ref}:{category}" for ref in blocking)
        if not blocking and not any(category in permit.categories for permit in permits):
            failures.append(f"no-grant:{category}")
    if failures:
        return Decision(False, tuple(failures))
    used = sorted({permit.ref for permit in permits if not permit.categories.isdisjoint(wanted)})
    return Decision(True, tuple(f"permit:{ref}" for ref in used))


def break_glass_refused(provisions: Iterable[Provision], at: datetime) -> bool:
    """True when, at `at`, denies aimed at everyone block every break-the-glass category.

    That is the citizen's refusal (§12: a deny with purpose BTG and no actor),
    or any other deny for everyone that covers break-the-glass access.
    A refusal limited to some categories leaves the others to break-the-glass.
    """
    everyone = Actor()
    _, denies = _applicable(
        everyone, provisions, "access", _request_time("access", at), BREAK_GLASS_PURPOSE
    )
    refused: set[str] = set()
    for deny in denies:
        refused |= _covered(deny)
    return refused >= BREAK_GLASS_CATEGORIES


def break_glass_provision(
    practitioner: str, start: datetime, minutes: int = 60, grant_id: str | None = None
) -> Provision:
    """The short break-the-glass permit: access to identity, network, fragility.

    It applies only to requests made with purpose "BTG", for `minutes` real
    minutes from `start` (counted in UTC, so a DST change does not stretch it).
    """
    if not PRACTITIONER_REF.fullmatch(practitioner):
        raise ValueError("break-the-glass is granted to one 'Practitioner/<id>'")
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
        raise ValueError("minutes must be a positive whole number")
    begin = as_utc(start, "start")
    return Provision(
        consent_id=grant_id,
        type="permit",
        actors=frozenset({practitioner}),
        actions=frozenset({"access"}),
        categories=BREAK_GLASS_CATEGORIES,
        start=begin,
        end=begin + timedelta(minutes=minutes),
        purposes=frozenset({BREAK_GLASS_PURPOSE}),
    )
