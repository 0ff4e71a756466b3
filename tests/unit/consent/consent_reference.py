"""A deliberately naive reference for the consent rules, one line per rule.

It shares no code with consent/engine.py: it reads the Provision fields and
re-states docs/consent.md literally, one category at a time. The engine must
agree with it on every input hypothesis can find.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from consent import Actor, Provision

ALL_CATEGORIES = ("identity", "demarches", "network", "fragility", "psy")
BREAK_GLASS = ("identity", "network", "fragility")


def names_of(actor: Actor) -> list[str]:
    """Every reference the actor can be named by."""
    names = [*actor.organizations, *actor.other_references]
    names += ["Group/profession-" + code for code in actor.professions]
    if actor.practitioner is not None:
        names.append(actor.practitioner)
    return names


def names_actor(provision: Provision, actor: Actor) -> bool:
    """No actor named means everyone; otherwise any of the actor's names will do."""
    if len(provision.actors) == 0:
        return True
    return any(name in provision.actors for name in names_of(actor))


def names_action(provision: Provision, action: str) -> bool:
    return len(provision.actions) == 0 or action in provision.actions


def current(provision: Provision, at: datetime) -> bool:
    """Start inclusive, end exclusive."""
    if provision.start is not None and at < provision.start:
        return False
    return not (provision.end is not None and at >= provision.end)


def fits_purpose(provision: Provision, purpose: str | None) -> bool:
    if len(provision.purposes) > 0:
        return purpose in provision.purposes
    if provision.type == "deny":
        return True
    return purpose != "BTG"


def applies(
    provision: Provision, actor: Actor, action: str, at: datetime, purpose: str | None
) -> bool:
    return (
        names_actor(provision, actor)
        and names_action(provision, action)
        and current(provision, at)
        and fits_purpose(provision, purpose)
    )


def speaks_about(provision: Provision, category: str) -> bool:
    if provision.type == "deny" and len(provision.categories) == 0:
        return True
    return category in provision.categories


def category_allowed(
    actor: Actor,
    provisions: Sequence[Provision],
    category: str,
    action: str,
    at: datetime,
    purpose: str | None,
) -> bool:
    permitted = False
    denied = False
    for provision in provisions:
        if not speaks_about(provision, category):
            continue
        if not applies(provision, actor, action, at, purpose):
            continue
        if provision.type == "permit":
            permitted = True
        else:
            denied = True
    return permitted and not denied


def reference_granted(
    actor: Actor, provisions: Sequence[Provision], action: str, at: datetime, purpose: str | None
) -> frozenset[str]:
    return frozenset(
        category
        for category in ALL_CATEGORIES
        if category_allowed(actor, provisions, category, action, at, purpose)
    )


def reference_decide(
    actor: Actor,
    provisions: Sequence[Provision],
    categories: frozenset[str],
    action: str,
    at: datetime,
    purpose: str | None,
) -> bool:
    if len(categories) == 0:
        return False
    return all(
        category_allowed(actor, provisions, category, action, at, purpose)
        for category in categories
    )


def reference_break_glass_refused(provisions: Sequence[Provision], at: datetime) -> bool:
    """Every break-the-glass category is covered by a current deny aimed at everyone."""
    for category in BREAK_GLASS:
        covered = any(
            provision.type == "deny"
            and len(provision.actors) == 0
            and names_action(provision, "access")
            and current(provision, at)
            and fits_purpose(provision, "BTG")
            and speaks_about(provision, category)
            for provision in provisions
        )
        if not covered:
            return False
    return True
