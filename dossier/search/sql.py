"""Turn a parsed SearchQuery into SQL over resources + search_index (bound parameters only)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from dossier.db.models import resources, search_index
from dossier.search.params import Condition, DateRange, SearchQuery, Token
from schemas.fhirtime import LAST, sortable
from schemas.search import compartment_params, search_parameters

Blind = Callable[[str, str], str]
R = resources.c
S = search_index.c


def _index_exists(rtype: str, param: str, clause: ColumnElement[bool],
                  probe: bool) -> ColumnElement[bool]:
    """The resource has an index row of `param` matching `clause`.

    `probe`: the statement already starts from a bounded set of dossiers (the actor's
    grants, a citizen's own dossier, a compartment), so each candidate row probes the index
    by its owner (res_type, res_id) — a cost that follows the candidates, never the size
    of the database. Otherwise an uncorrelated IN, so the database starts from the index
    (res_type, param, value) rather than scan every resource of the type. (SQLite
    materialises an uncorrelated IN whole: with `authored-on=ge…` over 100,000 Tasks that
    list alone took seconds.)"""
    if probe:
        return exists(select(1).where(S.res_type == rtype, S.res_id == R.res_id,
                                      S.param == param, clause))
    return R.res_id.in_(
        select(S.res_id).where(S.res_type == rtype, S.param == param, clause)
    )


def _date_clause(column: ColumnElement[object], rng: DateRange,
                 convert: Callable[[datetime], object]) -> ColumnElement[bool]:
    low, high = convert(rng.low), convert(rng.high)
    col = column
    # A range that runs to the calendar's end (9999-12-31) has no end: a value held at its
    # last instant (schemas/fhirtime.py LAST) is inside, and nothing is after it.
    to_the_end = rng.high >= LAST
    before_high = true() if to_the_end else col < high
    after_high = false() if to_the_end else col >= high
    if rng.prefix == "eq":
        return and_(col >= low, before_high)
    if rng.prefix == "ne":
        return or_(col < low, after_high)
    if rng.prefix in ("lt", "eb"):
        return col < low
    if rng.prefix == "le":
        return before_high
    if rng.prefix in ("gt", "sa"):
        return after_high
    return col >= low  # ge


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _after(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, in code point order
    (None when there is none: the prefix is empty or ends with the last code point)."""
    if not prefix:
        return None
    point = ord(prefix[-1]) + 1
    if 0xD800 <= point <= 0xDFFF:  # surrogates are no characters: skip them
        point = 0xE000
    return prefix[:-1] + chr(point) if point <= 0x10FFFF else None


class StartsWith(ColumnElement[bool]):
    """`column` starts with `prefix`, in a form each database finds by index.

    A prefix LIKE alone read every index value of the parameter: PostgreSQL bounds an
    index scan by a LIKE prefix only with a pattern index (`ix_search_index_prefix`,
    varchar_pattern_ops: byte order whatever the database's collation, migration 0024),
    and SQLite's case-insensitive LIKE never with a BINARY index. SQLite is given the
    prefix as a range too (BINARY order is code point order, so the range holds exactly
    the strings that start with the prefix; the LIKE stays as the filter)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition: no "= 1" appended where booleans are ints
    _traverse_internals = [("pattern", InternalTraversal.dp_clauseelement),  # noqa: RUF012
                           ("bounds", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any], prefix: str) -> None:
        self.pattern = column.like(f"{_like_escape(prefix)}%", escape="\\")
        after = _after(prefix)
        self.bounds = and_(column >= prefix, column < after) if after is not None else \
            and_(column >= prefix)


@compiles(StartsWith)
def _starts_with(element: StartsWith, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.pattern, **kw))


@compiles(StartsWith, "sqlite")
def _starts_with_sqlite(element: StartsWith, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(and_(element.bounds, element.pattern).self_group(), **kw))


LOCATION = "Location/"
_CTE_NAMES = itertools.count()


def _territory_clause(rtype: str, cond: Condition, how: str,
                      probe: bool) -> ColumnElement[bool]:
    """The territory's containment (SPEC §14), in one statement: "below" — the resource
    points (by `cond.name`) to a given Location or any Location inside it; "serves" — by
    its coverage area, to a given Location or one inside or above it; "served" — to a
    Location whose postal code starts with a given value, or one inside or above it."""
    T = search_index.alias("territory")
    if how in ("below", "serves"):
        place_ids = [str(v)[len(LOCATION):] for v in cond.values]
        seed = select(cast(resources.c.res_id, String).label("id")).where(
            resources.c.res_type == "Location", resources.c.deleted == false(),
            resources.c.res_id.in_(place_ids))
    else:
        seed = select(cast(T.c.res_id, String).label("id")).where(
            T.c.res_type == "Location", T.c.param == "address-postalcode",
            or_(*(StartsWith(T.c.value, str(v)) for v in cond.values)))
    n = next(_CTE_NAMES)
    below = seed.cte(f"below_{n}", recursive=True)
    step = search_index.alias("step")
    below = below.union_all(select(cast(step.c.res_id, String)).where(
        step.c.res_type == "Location", step.c.param == "partof",
        step.c.value == literal(LOCATION) + below.c.id))
    places: Select[tuple[str]] | CompoundSelect[tuple[str]] = select(
        literal(LOCATION) + below.c.id)
    if how in ("served", "serves"):
        above = seed.cte(f"above_{n}", recursive=True)
        up = search_index.alias("up")
        parent = cast(func.substr(up.c.value, len(LOCATION) + 1), String)
        above = above.union_all(select(parent).where(
            up.c.res_type == "Location", up.c.param == "partof", up.c.res_id == above.c.id))
        places = union_all(places, select(literal(LOCATION) + above.c.id))
    return _index_exists(rtype, cond.name if how == "below" else "coverage-area",
                         S.value.in_(places), probe)


def condition_clause(rtype: str, cond: Condition, blind: Blind,
                     probe: bool = False) -> ColumnElement[bool]:
    declared = search_parameters(rtype).get(cond.name)
    if declared is not None and declared.territory is not None and cond.kind != "missing":
        clause = _territory_clause(rtype, cond, declared.territory, probe)
        return not_(clause) if cond.negated else clause
    if cond.kind == "missing":  # :missing=true → no index row for the parameter
        present = exists(select(1).where(S.res_type == rtype, S.res_id == R.res_id,
                                         S.param == cond.name))
        return not_(present) if cond.values[0] else present
    clause = _values_clause(rtype, cond, blind, probe)
    return not_(clause) if cond.negated else clause  # :not — none of the values


def _values_clause(rtype: str, cond: Condition, blind: Blind,
                   probe: bool) -> ColumnElement[bool]:
    ors: list[ColumnElement[bool]] = []
    for value in cond.values:
        if cond.kind == "id":
            ors.append(R.res_id == value)
        elif cond.kind == "lastUpdated":
            assert isinstance(value, DateRange)
            ors.append(_date_clause(R.last_updated, value, lambda d: d))
        elif cond.kind == "date":
            assert isinstance(value, DateRange)
            ors.append(_index_exists(rtype, cond.name, _date_clause(S.value, value, sortable),
                                     probe))
        elif cond.kind.startswith("string:"):
            assert isinstance(value, str)
            mode = cond.kind.split(":", 1)[1]
            if mode == "exact":  # the whole value as written (schemas.search: `name:exact`)
                ors.append(_index_exists(rtype, f"{cond.name}:exact", S.value == value[:255],
                                         probe))
                continue
            # the index holds the normalised form (casefolded, no accents): starts-with
            # by default, anywhere with :contains
            matches: ColumnElement[bool] = (
                S.value.like(f"%{_like_escape(value)}%", escape="\\") if mode == "contains"
                else StartsWith(S.value, value))
            ors.append(_index_exists(rtype, cond.name, matches, probe))
        elif cond.kind == "reference":
            ors.append(_index_exists(rtype, cond.name, S.value == value, probe))
        elif cond.kind == "identifier":
            assert isinstance(value, Token)
            if value.code is None or not value.system:
                # a blind index needs both parts: anything else could only match by scanning
                ors.append(false())
            else:
                ors.append(_index_exists(rtype, cond.name, and_(
                    S.system == value.system, S.value == blind(value.system, value.code)), probe))
        else:  # token
            assert isinstance(value, Token)
            parts: list[ColumnElement[bool]] = []
            if value.code is not None:
                parts.append(S.value == value.code)
            if value.system == "":
                parts.append(S.system.is_(None))
            elif value.system is not None:
                parts.append(S.system == value.system)
            ors.append(_index_exists(rtype, cond.name, and_(*parts), probe))
    return or_(*ors)


def names_people(q: SearchQuery) -> bool:
    """Whether a compartment parameter names only Patients (`Task?patient=Patient/x`)."""
    compartment = compartment_params(q.resource_type)
    return any(c.kind == "reference" and c.name in compartment and not c.negated and c.values
               and all(isinstance(x, str) and x.startswith("Patient/") for x in c.values)
               for c in q.conditions)


def build_search(q: SearchQuery, blind: Blind, bounded: bool) -> Select[tuple[object, ...]]:
    """`bounded`: the caller narrows the statement to a bounded set of dossiers (see
    `_index_exists`)."""
    stmt = select(resources).where(R.res_type == q.resource_type, R.deleted == false())
    compartment = compartment_params(q.resource_type)
    probe = bounded or names_people(q)
    for cond in q.conditions:
        stmt = stmt.where(condition_clause(q.resource_type, cond, blind, probe))
        people = [v for v in cond.values if isinstance(v, str) and v.startswith("Patient/")]
        if cond.kind == "reference" and cond.name in compartment and \
                len(people) == len(cond.values) and not cond.negated:
            # the same rows, said so that the database starts from the dossier itself
            stmt = stmt.where(R.patient_id.in_([p.split("/", 1)[1] for p in people]))
    return stmt


def ordered(stmt: Select[tuple[object, ...]], q: SearchQuery) -> Select[tuple[object, ...]]:
    order: list[ColumnElement[object]] = []
    for name, desc in q.sort:
        if name == "_lastUpdated":
            col: ColumnElement[object] = R.last_updated
        else:
            col = (select(func.min(S.value))
                   .where(S.res_type == q.resource_type, S.res_id == R.res_id, S.param == name)
                   .scalar_subquery())
        order.append(col.desc() if desc else col.asc())
    if not q.sort:
        order.append(R.last_updated.asc())
    # the tiebreak follows a sort by time alone, so the page order is one index's order
    order.append(R.res_id.desc() if _by_time(q) and q.sort and q.sort[0][1]
                 else R.res_id.asc())
    return stmt.order_by(*order)


def _by_time(q: SearchQuery) -> bool:
    return [name for name, _ in q.sort] in ([], ["_lastUpdated"])


def few_sorted(stmt: Select[tuple[object, ...]], q: SearchQuery, limit: int, offset: int
               ) -> tuple[Select[tuple[object, ...]], Any] | None:
    """PostgreSQL, few matches (counted up to the cap), sorted by time: the matching rows
    found as the count found them — from the people — in a materialized CTE, sorted, and
    the page cut there; returns that page and its subquery (the data keys are then
    joined to the page's rows alone: joined to every match, the planner merged them with
    every key of the region). Asked to order `resources` by time, the planner walked the
    type's rows in page order and probed each one's grants: at 100,000 dossiers and a
    caseload of 50 that was 58,480 probes and 285 ms for a page of 20
    (docs/benchmarks.md). None when the order is by something else (left to `ordered`)."""
    if not _by_time(q):
        return None
    desc = bool(q.sort and q.sort[0][1])

    def order(t: Any) -> list[Any]:
        return [t.c.last_updated.desc(), t.c.res_id.desc()] if desc else \
            [t.c.last_updated.asc(), t.c.res_id.asc()]

    m = stmt.cte("matches").prefix_with("MATERIALIZED")
    page = select(*m.c).order_by(*order(m)).limit(limit).offset(offset).subquery("page")
    return select(*page.c).order_by(*order(page)), page


def planned(stmt: Select[tuple[object, ...]], q: SearchQuery, start: str | None
            ) -> Select[tuple[object, ...]]:
    """Where the database starts a search (SQLite is told; PostgreSQL's planner chooses
    as much from its statistics):

    - "people": from the dossiers the statement is narrowed to (ix_resources_patient),
      then sort what they hold — a few people, or a caseload when matches are few;
    - "time": in page order (ix_resources_type_updated, when the order is by time alone),
      testing each row (filters, grant probe) and stopping after the page — many matches
      over a large caseload, where sorting them all would cost their number.

    Told nothing, SQLite prefers an index that avoids the sort, and walks every row of the
    type to find one person's few."""
    if start == "time" and _by_time(q):
        return stmt.with_hint(resources, "INDEXED BY ix_resources_type_updated", "sqlite")
    if start in ("people", "time") and compartment_params(q.resource_type):
        return stmt.with_hint(resources, "INDEXED BY ix_resources_patient", "sqlite")
    return stmt
