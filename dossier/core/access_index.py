"""The access index: Consents as rows a search can join (issue 14, SPEC §15).

Each current, active Consent gives one row per actor it names (or one row with grantee
"*" for a deny naming none). Rows are rewritten in the same transaction as every write of
that Consent (Repository), so a revocation is effective on the next request, exactly as
before: the index is derived state, like the search index, not a cache.

`granted()` turns the rows that apply to an actor now into one number per patient: the
bit mask of categories granted for ordinary access (permits minus denies, the engine's
`granted_categories`). A resource is readable when every one of its category bits is
granted. The pure decision point (consent/) still decides each returned row; a property
test proves the two agree (tests/integration/test_access_index.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Subquery,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

import consent
from dossier.db.models import access_grants

G = access_grants.c
BITS = {"identity": 1, "demarches": 2, "network": 4, "fragility": 8, "psy": 16}
ALL = sum(BITS.values())
EVERYONE = "*"


def mask_of(categories: Iterable[str]) -> int:
    """The bits of known categories (unknown ones carry no bit, so grant nothing)."""
    return sum(BITS[c] for c in set(categories) if c in BITS)


def mask_of_text(categories: str | None) -> int:
    return mask_of(c for c in (categories or "").split(",") if c)


def rows_for(consent_id: str, patient_id: str,
             provision: consent.Provision | None) -> list[dict[str, Any]]:
    """The index rows of one Consent (none when it is inactive)."""
    if provision is None:
        return []
    permit = provision.type == "permit"
    covered = provision.categories or (frozenset() if permit else consent.CATEGORIES)
    base = {"consent_id": consent_id, "patient_id": patient_id, "permit": permit,
            "act_access": not provision.actions or "access" in provision.actions,
            "act_collect": not provision.actions or "collect" in provision.actions,
            "cat_mask": mask_of(covered), "period_start": provision.start,
            "period_end": provision.end, "purposed": bool(provision.purposes),
            "btg": consent.BREAK_GLASS_PURPOSE in provision.purposes}
    return [{**base, "grantee": actor} for actor in sorted(provision.actors or {EVERYONE})]


def refresh(session: Session, consent_id: str, patient_id: str | None,
            resource: dict[str, Any] | None) -> None:
    """Rewrite the rows of one Consent after it was written (None: deleted)."""
    session.execute(delete(access_grants).where(G.consent_id == consent_id))
    if resource is None or patient_id is None:
        return
    try:
        provision = consent.parse_consent(resource)
    except consent.ConsentFormatError:
        provision = None  # never stored: writes are validated; fail closed regardless
    rows = rows_for(consent_id, patient_id, provision)
    if rows:
        session.execute(insert(access_grants), rows)


def add_break_glass(session: Session, grant_id: str, patient_id: str, practitioner: str,
                    granted_at: datetime, expires_at: datetime) -> None:
    """A break-the-glass grant as an index row: a permit for one practitioner, for
    break-the-glass requests only, for its minutes (consent.break_glass_provision)."""
    session.execute(insert(access_grants).values(
        consent_id=f"break-glass/{grant_id}"[:64], patient_id=patient_id, grantee=practitioner,
        permit=True, act_access=True, act_collect=False,
        cat_mask=mask_of(consent.BREAK_GLASS_CATEGORIES), period_start=granted_at,
        period_end=expires_at, purposed=True, btg=True))


def _any(bit: int, *conditions: Any) -> Any:
    """1 when an applicable row with all `conditions` covers category `bit`, else 0."""
    return func.max(case((and_(*conditions, G.cat_mask.op("&")(bit) != 0), 1), else_=0))


def granted(references: Iterable[str], now: datetime, action: str = "access", *,
            break_glass: bool = False) -> Subquery:
    """(patient_id, granted, urgent) for every patient where the actor holds a grant now.
    `granted` is the category mask the engine's `granted_categories` gives for an ordinary
    request (permits minus denies; provisions naming purposes left out); `urgent`, when
    `break_glass`, what it gives for a break-the-glass request (BTG permits minus the
    denies that apply to BTG), else 0. A request is one or the other, never both: a row
    is readable when all its categories are in one of the two masks."""
    refs = sorted(set(references) | {EVERYONE})
    acts = G.act_access if action == "access" else G.act_collect
    ordinary, btg = ~G.purposed, G.btg
    urgent_too = break_glass and action == "access"
    plain: Any = literal(0)
    urgent: Any = literal(0)
    for bit in BITS.values():
        plain = plain + _any(bit, G.permit, ordinary) * (
            1 - _any(bit, ~G.permit, ordinary)) * bit
        if urgent_too:
            urgent = urgent + _any(bit, G.permit, btg) * (
                1 - _any(bit, ~G.permit, ordinary | btg)) * bit
    applicable = ordinary | btg if urgent_too else ordinary
    return (select(G.patient_id, plain.label("granted"), urgent.label("urgent"))
            .where(G.grantee.in_(refs), acts == true(), applicable,
                   or_(G.period_start.is_(None), G.period_start <= now),
                   or_(G.period_end.is_(None), G.period_end > now))
            .group_by(G.patient_id)
            .having(plain + urgent > 0)
            .subquery("granted"))


def readable(table_cat_mask: Any, grants: Subquery) -> ColumnElement[bool]:
    """A row with at least one category, all of them granted for an ordinary request, or
    all of them for a break-the-glass one."""
    def within(mask: Any) -> ColumnElement[bool]:
        test: ColumnElement[bool] = table_cat_mask.op("&")(literal(ALL) - mask) == 0
        return test

    return and_(table_cat_mask > 0, or_(within(grants.c.granted), within(grants.c.urgent)))
