"""The access index: Consents as rows a search can join (issue 14, SPEC §15).

Each current, active Consent gives one row per actor it names (or one row with grantee
"*" for a deny naming none). Rows are rewritten in the same transaction as every write of
that Consent (Repository), so a revocation is effective on the next request, exactly as
before: the index is derived state, like the search index, not a cache.

A search asks two things of the rows (`candidates`, `readable_now`): the patients where
the actor holds an applicable permit now, a plain index range a statement can start from
or test against; and, per candidate row, that patient's few rows folded into the bit mask
of categories granted (permits minus denies, the engine's `granted_categories`). A
resource is readable when every one of its category bits is granted. Neither grows with
the caseload per row, so a search can stop after one page. The pure decision point
(consent/) still decides each returned row; a property test proves the two agree
(tests/integration/test_access_index.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

import consent
from dossier.db.models import access_grants
from dossier.db.tx import Tx

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


def refresh(session: Tx, consent_id: str, patient_id: str | None,
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


def add_break_glass(session: Tx, grant_id: str, patient_id: str, practitioner: str,
                    granted_at: datetime, expires_at: datetime) -> None:
    """A break-the-glass grant as an index row: a permit for one practitioner, for
    break-the-glass requests only, for its minutes (consent.break_glass_provision)."""
    session.execute(insert(access_grants).values(
        consent_id=f"break-glass/{grant_id}"[:64], patient_id=patient_id, grantee=practitioner,
        permit=True, act_access=True, act_collect=False,
        cat_mask=mask_of(consent.BREAK_GLASS_CATEGORIES), period_start=granted_at,
        period_end=expires_at, purposed=True, btg=True))


def _int(value: int) -> Any:
    """A constant written into the SQL (the fold holds no bound parameter)."""
    return literal_column(str(int(value)), Integer)


def _any(A: Any, bit: int, *conditions: Any) -> Any:
    """1 when an applicable row with all `conditions` covers category `bit`, else 0."""
    return func.max(case((and_(*conditions, A.cat_mask.op("&")(_int(bit)) != _int(0)),
                          _int(1)), else_=_int(0)))


def _applicable(A: Any, refs: list[str], now: datetime, action: str,
                urgent_too: bool) -> list[Any]:
    acts = A.act_access if action == "access" else A.act_collect
    ordinary = ~A.purposed
    return [A.grantee.in_(refs), acts == true(), ordinary | A.btg if urgent_too else ordinary,
            or_(A.period_start.is_(None), A.period_start <= now),
            or_(A.period_end.is_(None), A.period_end > now)]


def _refs(references: Iterable[str]) -> list[str]:
    return sorted(set(references) | {EVERYONE})


def candidates(references: Iterable[str], now: datetime, action: str = "access", *,
               break_glass: bool = False) -> Any:
    """The patients where one of the actor's references holds an applicable permit now:
    a superset of those whose rows `readable_now` admits (nothing is readable without a
    permit). A plain index range on (grantee, patient_id), no aggregate, so a statement can
    start from it (a small caseload) or test each row against it (a large one)."""
    urgent_too = break_glass and action == "access"
    return select(G.patient_id).where(
        *_applicable(G, _refs(references), now, action, urgent_too), G.permit == true(),
    ).with_hint(access_grants, "INDEXED BY ix_access_grants_grantee", "sqlite")


def _fold(A: Any) -> dict[str, Any]:
    """The categories a patient's applicable rows leave out, as masks: "plain" for an
    ordinary request, "urgent" for a break-the-glass one. Fixed SQL over the alias `A`
    (the request's values are in the WHERE), with no bound parameter."""
    ordinary, btg = ~A.purposed, A.btg
    plain: Any = _int(0)
    urgent: Any = _int(0)
    for bit in BITS.values():
        plain = plain + _any(A, bit, A.permit, ordinary) * (
            _int(1) - _any(A, bit, ~A.permit, ordinary)) * _int(bit)
        urgent = urgent + _any(A, bit, A.permit, btg) * (
            _int(1) - _any(A, bit, ~A.permit, ordinary | btg)) * _int(bit)
    return {"plain": _int(ALL) - plain, "urgent": _int(ALL) - urgent}


_ROW_GRANTS = access_grants.alias("grant_of_row")
_FOLDS = _fold(_ROW_GRANTS.c)


class _Missing(ColumnElement[int]):
    """One of `_FOLDS` in a statement. Its cache key is its name: SQLAlchemy otherwise
    built the fold and walked its few hundred nodes for every search (a fifth, then a
    quarter of a search's CPU under the mixed load, docs/benchmarks.md); the SQL is
    compiled once per statement shape, like any other."""

    inherit_cache = True
    _traverse_internals = [("name", InternalTraversal.dp_string)]  # noqa: RUF012 - SQLAlchemy
    type = Integer()

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def _from_objects(self) -> list[Any]:
        return [_ROW_GRANTS]


@compiles(_Missing)
def _compile_missing(element: _Missing, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(_FOLDS[element.name], **kw))


def readable_now(table_cat_mask: Any, table_patient_id: Any, references: Iterable[str],
                 now: datetime, action: str = "access", *,
                 break_glass: bool = False) -> ColumnElement[bool]:
    """Whether a row (its category mask and patient) is readable by the actor now: the
    grants of that one patient folded into the category mask the engine's
    `granted_categories` gives for an ordinary request (permits minus denies; provisions
    naming purposes left out), and, when `break_glass`, what it gives for a
    break-the-glass request (BTG permits minus the denies that apply to BTG). A request is
    one or the other, never both: a row is readable when it has a category and all of its
    categories are in one of the two masks. One probe of the patient's few index rows per
    candidate row, whatever the caseload."""
    A = _ROW_GRANTS.c
    urgent_too = break_glass and action == "access"

    def within(name: str) -> ColumnElement[bool]:
        test: ColumnElement[bool] = table_cat_mask.op("&")(_Missing(name)) == _int(0)
        return test

    covered = or_(within("plain"), within("urgent")) if urgent_too else within("plain")
    probe = (select(literal(1))
             .where(A.patient_id == table_patient_id,
                    *_applicable(A, _refs(references), now, action, urgent_too))
             .group_by(A.patient_id)  # one group, or none (then nothing is readable)
             .having(covered))
    return and_(table_cat_mask > 0, probe.exists())
