"""Parse FHIR search parameters into a typed query; every unknown or malformed one is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import schemas
import schemas.search
from dossier.errors import BadRequest
from schemas.fhirtime import LAST, bounds, in_utc

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_DATE = re.compile(
    r"^(?P<prefix>eq|ne|lt|le|gt|ge|sa|eb)?"
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,6}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
GENERIC = {"_id", "_lastUpdated", "_count", "_offset", "_sort", "_include", "_revinclude",
           "_format", "_total", "_summary", "_elements", "_totalMethod", "_pretty"}
# accepted and ignored: presentation or counting hints that change nothing we return
# (`_totalMethod` is what fhirpy's count() sends, with _count=0: the total is then exact)
IGNORED = frozenset({"_format", "_pretty", "_totalMethod"})
SUMMARIES = frozenset({"true", "false", "text", "data", "count"})
ELEMENT_NAME = re.compile(r"^(?:[A-Z][A-Za-z]{1,63}\.)?[a-z][A-Za-z0-9]{0,63}$")
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
Prefix = Literal["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb"]


@dataclass(frozen=True)
class DateRange:
    prefix: Prefix
    low: datetime  # inclusive
    high: datetime  # exclusive


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system; "" : no system
    code: str | None  # None: any code in the system


@dataclass(frozen=True)
class Condition:
    """One parameter occurrence: its values are OR-ed; conditions are AND-ed."""

    name: str
    # "id", "lastUpdated", "token", "reference", "date", "identifier", "string:<mode>"
    # (starts, contains, exact) or "missing" (values: one bool)
    kind: str
    values: tuple[object, ...]
    negated: bool = False  # :not — none of the values


@dataclass(frozen=True)
class Include:
    source_type: str
    param: str
    target_type: str | None
    reverse: bool


@dataclass
class SearchQuery:
    resource_type: str
    conditions: list[Condition] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    includes: list[Include] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # lenient handling: what was dropped
    summary: str | None = None  # _summary: true | text | data | count | false
    elements: tuple[str, ...] | None = None  # _elements: top-level element names
    # _total: "accurate" counts every match; "estimate" (the default) counts up to
    # TOTAL_CAP and leaves Bundle.total out beyond; "none" counts nothing
    total: str = "estimate"
    asked_count: int | None = None  # a _count above the largest page, clamped to it

    def canonical_params(self, raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The accepted parameters (without paging), for self/next/prev links."""
        return [(k, v) for k, v in raw if k not in ("_count", "_offset") and k not in self.ignored
                and k.split(":")[0] not in self.ignored]


def parse_date(text: str) -> DateRange:
    m = _DATE.match(text)
    if not m:
        raise BadRequest("A date search value must look like [prefix]YYYY[-MM[-DD[Thh:mm[:ss]]]]"
                         "[Z|+hh:mm], for example ge2026-01-31.")
    g = m.groupdict()
    prefix: Prefix = g["prefix"] or "eq"  # type: ignore[assignment]
    try:
        if g["H"] is None:
            # a date without a time is a local day (month, year) in Brussels
            low, high = bounds(text[len(g["prefix"] or ""):])
            low, high = in_utc(low), in_utc(high)
        else:
            if g["tz"] is None:
                raise BadRequest("A date search value with a time needs a time zone "
                                 "(Z or +hh:mm).")
            tz = UTC if g["tz"] == "Z" else datetime.strptime(g["tz"], "%z").tzinfo
            frac = g["f"] or ""
            micro = int(frac.ljust(6, "0")) if frac else 0
            local = datetime(int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]),
                             int(g["S"] or 0), micro, tzinfo=tz)
            low = in_utc(local)
            step = (timedelta(microseconds=1) if frac else
                    timedelta(seconds=1) if g["S"] else timedelta(minutes=1))
            high = low + step if low < LAST - step else LAST
    except ValueError:
        raise BadRequest("A date search value is not a real calendar date.") from None
    return DateRange(prefix, low, high)


def parse_token(text: str) -> Token:
    if "|" in text:
        system, _, code = text.partition("|")
        return Token(system=system, code=code or None)
    return Token(system=None, code=text)


def parse_reference(text: str, targets: frozenset[str] | None) -> str:
    if "/" in text:
        rtype, _, rid = text.rpartition("/")
        rtype = rtype.rsplit("/", 1)[-1]
    else:
        if not targets or len(targets) != 1:
            raise BadRequest("A reference search value must name the type, e.g. Patient/123.")
        rtype, rid = next(iter(targets)), text
    if targets and rtype not in targets:
        raise BadRequest(f"This reference parameter cannot point to {rtype[:40]}.")
    if not ID_RE.match(rid):
        raise BadRequest("A reference search value has an invalid id.")
    return f"{rtype}/{rid}"


def parse_search(resource_type: str, raw: list[tuple[str, str]], *, lenient: bool,
                 default_count: int, max_count: int) -> SearchQuery:
    params = schemas.search_parameters(resource_type)
    q = SearchQuery(resource_type=resource_type, count=default_count)

    def refuse(message: str, key: str) -> None:
        if lenient:
            q.ignored.append(key)
        else:
            raise BadRequest(message)

    for key, value in raw:
        name, _, modifier = key.partition(":")
        if name in IGNORED and not modifier:
            continue
        if name == "_total":
            if value not in ("accurate", "estimate", "none"):
                refuse("_total must be accurate, estimate or none.", key)
            else:
                q.total = value
            continue
        if name == "_count":
            if not (value.isascii() and value.isdigit()) or len(value) > 9:
                raise BadRequest("_count must be a whole number.")
            q.count = min(int(value), max_count)
            q.asked_count = int(value) if int(value) > max_count else None
            continue
        if name == "_offset":
            if not (value.isascii() and value.isdigit()) or len(value) > 9 \
                    or int(value) > 1_000_000:
                raise BadRequest("_offset must be a whole number.")
            q.offset = int(value)
            continue
        if name == "_summary" and not modifier:
            if value not in SUMMARIES:
                raise BadRequest("_summary must be true, text, data, count or false.")
            q.summary = None if value == "false" else value
            continue
        if name == "_elements" and not modifier:
            q.elements = parse_elements(value)
            continue
        if name == "_sort":
            for part in value.split(","):
                desc = part.startswith("-")
                pname = part[1:] if desc else part
                ok = pname == "_lastUpdated" or (
                    pname in params and params[pname].type == "date")
                if not ok:
                    raise BadRequest("_sort supports _lastUpdated and date parameters of "
                                     f"{resource_type}.")
                q.sort.append((pname, desc))
            continue
        if name in ("_include", "_revinclude"):
            q.includes.append(_parse_include(resource_type, name, value, modifier))
            continue
        if name not in params and name not in ("_id", "_lastUpdated"):
            refuse(f"The search parameter '{name[:64]}' is not supported for {resource_type}.",
                   key)
            continue
        ptype = params[name].type if name in params else ("token" if name == "_id" else "date")
        if modifier == "missing":
            if value not in ("true", "false") or name in ("_id", "_lastUpdated"):
                raise BadRequest(f"{name[:64]}:missing takes true or false.")
            q.conditions.append(Condition(name, "missing", (value == "true",)))
            continue
        allowed = MODIFIERS.get(ptype, frozenset()) if name in params else frozenset()
        targets = frozenset(params[name].target_types) if ptype == "reference" else None
        if modifier and ptype == "reference" and RESOURCE_TYPE.match(modifier) and (
                not targets or modifier in targets):
            targets = frozenset({modifier})  # subject:Patient=123
        elif modifier and modifier not in allowed:
            refuse(f"The search modifier ':{modifier[:32]}' is not supported here.", key)
            continue
        values = value.split(",")
        if any(v == "" for v in values):
            raise BadRequest(f"The search parameter '{name[:64]}' has an empty value.")
        negated = modifier == "not"
        if name == "_id":
            for v in values:
                if not ID_RE.match(v):
                    raise BadRequest("_id values must be FHIR ids.")
            q.conditions.append(Condition(name, "id", tuple(values)))
        elif name == "_lastUpdated":
            q.conditions.append(Condition(name, "lastUpdated",
                                          tuple(parse_date(v) for v in values)))
        elif ptype == "token":
            kind = "identifier" if name == "identifier" else "token"
            q.conditions.append(Condition(name, kind, tuple(parse_token(v) for v in values),
                                          negated=negated))
        elif ptype == "reference":
            q.conditions.append(Condition(name, "reference",
                                          tuple(parse_reference(v, targets) for v in values)))
        elif ptype == "date":
            q.conditions.append(Condition(name, "date", tuple(parse_date(v) for v in values)))
        elif ptype == "string":
            mode = modifier or "starts"
            clean = (tuple(v.strip() for v in values) if mode == "exact" else
                     tuple(schemas.search.normalise(v) for v in values))
            q.conditions.append(Condition(name, f"string:{mode}", clean))
        else:
            refuse(f"The search parameter '{name}' is not supported.", key)
    if q.summary == "count":
        q.count = 0
    if q.count == 0:  # only the number was asked for: count it
        q.total = "accurate"
    return q


# the modifiers each parameter type takes besides :missing (and :Type on references);
# anything else is refused (400) or, under Prefer: handling=lenient, dropped and listed
MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not"}),
    "string": frozenset({"contains", "exact"}),
    "reference": frozenset(),
    "date": frozenset(),
}


def parse_elements(value: str) -> tuple[str, ...]:
    """`_elements`: comma-separated top-level element names (a `Type.` prefix is allowed)."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names or any(not ELEMENT_NAME.match(n) for n in names):
        raise BadRequest("_elements takes a comma-separated list of element names.")
    return tuple(dict.fromkeys(n.rsplit(".", 1)[-1] for n in names))


def _parse_include(resource_type: str, name: str, value: str, modifier: str) -> Include:
    if modifier:
        raise BadRequest(f"{name}:{modifier[:32]} is not supported.")
    parts = value.split(":")
    if len(parts) not in (2, 3) or "*" in parts:
        raise BadRequest(f"{name} must look like Type:parameter[:TargetType].")
    source, pname = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in schemas.SUPPORTED_TYPES and source not in schemas.SERVER_WRITTEN_TYPES:
        raise BadRequest(f"{name} names an unsupported resource type.")
    if name == "_include" and source != resource_type:
        raise BadRequest("_include must start with the searched resource type.")
    params = schemas.search_parameters(source)
    p = params.get(pname)
    if p is None or p.type != "reference":
        raise BadRequest(f"{name} must name a reference parameter of {source}.")
    if target is not None and p.target_types and target not in p.target_types:
        raise BadRequest(f"{name} names a target type the parameter cannot point to.")
    if name == "_revinclude" and p.target_types and resource_type not in p.target_types:
        raise BadRequest("_revinclude parameter does not point to the searched type.")
    return Include(source, pname, target, reverse=(name == "_revinclude"))
