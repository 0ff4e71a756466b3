"""Operations on the content of a person's dossier (SPEC §4, §9, §12):

- `GET  Patient/{id}/$demarches`: the démarche timeline (docs/demarches.md);
- `GET  Patient/{id}/$network`: the network map, ready to draw, and the professionals seen;
- `POST Patient/{id}/$discharge-readiness`: ready or not at a time (docs/fragility.md).

Each reads the dossier through `Repository.compartment` in one unit of work, so consent,
decryption and audit apply exactly as for any read. None of them writes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dossier.core.repository import REF_RE, Repository, Stored
from dossier.domain import discharge_readiness, latest_assessment, readiness_parameters, timeline
from dossier.domain.codes import AVAILABLE_AT_DISCHARGE_URL, NETWORK_ROLE_SYSTEM
from dossier.domain.readiness import LANGUAGES
from dossier.errors import BadRequest, Unprocessable, not_found
from dossier.fhir import operations
from dossier.fhir.bundles import full_url, instant
from dossier.fhir.operations import Call
from schemas import DIRECTORY_TYPES
from schemas.fhirtime import bounds

DB = "https://dossier.brussels/fhir"
_COUNTED_TEAMS = (None, "active")  # the team statuses that make a member current
_HIDDEN_TEAMS = frozenset({"entered-in-error"})
# A full FHIR dateTime; the zone is optional here so a missing one gets its own message.
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<zone>Z|[+-]\d{2}:\d{2})?")
_KINDS = {"Patient": "person", "Practitioner": "professional",
          "PractitionerRole": "professional", "Organization": "organisation",
          "RelatedPerson": "informal"}
_KIND_ORDER = ("person", "professional", "organisation", "informal")


# ---------------------------------------------------------------------- shared

def _no_query(params: list[tuple[str, str]], name: str) -> None:
    for key, _ in params:
        if key != "_format":
            raise BadRequest(f"${name} does not take the URL parameter '{key[:64]}'.")


def _dossier(repo: Repository, patient_id: str, operation: str) -> list[Stored]:
    """Everything of the dossier the caller may see; 404 when that is nothing.

    One compartment read over all types: the dossier exists for the caller exactly when
    some of it is visible (as for $everything), whichever category they were granted, and
    the audit gets one record for the request."""
    items = repo.compartment(patient_id, operation=operation)
    if not items:
        raise not_found("Patient")
    return items


def _of_type(items: list[Stored], resource_type: str) -> list[Stored]:
    return [s for s in items if s.resource_type == resource_type and s.resource is not None]


def _name_display(names: Any) -> str | None:
    for name in names if isinstance(names, list) else []:
        if isinstance(name, dict):
            words = [*(name.get("given") or []), name.get("family") or ""]
            text = " ".join(w for w in words if isinstance(w, str) and w.strip())
            if text:
                return text
    return None


def _directory_display(repo: Repository, reference: str) -> str | None:
    """The name of a directory entry (every authenticated user may read the directory)."""
    rtype, _, rid = reference.partition("/")
    if rtype not in DIRECTORY_TYPES:
        return None
    resource = repo.server_read(rtype, rid)
    if resource is None:
        return None
    if rtype == "Organization":
        name = resource.get("name")
        return name if isinstance(name, str) else None
    if rtype == "PractitionerRole":
        practitioner = (resource.get("practitioner") or {}).get("reference")
        return _directory_display(repo, practitioner) if isinstance(practitioner, str) else None
    return _name_display(resource.get("name"))


def _starts(value: Any) -> datetime | None:
    return bounds(value)[0] if isinstance(value, str) else None


def _ends(value: Any) -> datetime | None:
    return bounds(value)[1] if isinstance(value, str) else None


def _over(period: Any, at: datetime) -> bool:
    """A FHIR Period that ended before `at`."""
    end = _ends(period.get("end")) if isinstance(period, dict) else None
    return end is not None and end <= at


def _covers(period: Any, at: datetime) -> bool:
    """`at` lies in a FHIR Period; a missing bound is open."""
    if not isinstance(period, dict):
        return True
    start, end = _starts(period.get("start")), _ends(period.get("end"))
    return (start is None or start <= at) and (end is None or at < end)


# ---------------------------------------------------------------------- $demarches

def demarches(repo: Repository, call: Call) -> Any:
    """The person's démarches, oldest first (dossier.domain.timeline), as a searchset."""
    ctx = repo.ctx
    rid = call.resource_id
    params = call.params
    assert rid is not None
    _no_query(params, "demarches")
    repo.begin("operation", "Patient", "r")
    repo.policy.gate("Task", "s")
    tasks = {s.id: s for s in _of_type(_dossier(repo, rid, "demarches"), "Task")}
    ordered = [tasks[str(t["id"])] for t in
               timeline([s.resource for s in tasks.values() if s.resource])]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "timestamp": instant(ctx.now), "total": len(ordered)}
    if ordered:
        bundle["entry"] = [{"fullUrl": full_url(ctx.base_url, s), "resource": s.resource,
                            "search": {"mode": "match"}} for s in ordered]
    return bundle


# ---------------------------------------------------------------------- $network

@dataclass
class _Edge:
    target: str
    roles: list[str]
    available: bool
    period: dict[str, str] | None
    current: bool  # a member now: the team counts and the period covers the present
    ended: bool  # the period (or the team, or the person's part) is over
    care_team: str | None


def _roles(concepts: Any) -> list[str]:
    codes: list[str] = []
    for concept in concepts if isinstance(concepts, list) else []:
        for coding in (concept or {}).get("coding") or []:
            code = coding.get("code")
            if coding.get("system") == NETWORK_ROLE_SYSTEM and isinstance(code, str) \
                    and code not in codes:
                codes.append(code)
    return codes


def _available(participant: dict[str, Any]) -> bool:
    return any(ext.get("url") == AVAILABLE_AT_DISCHARGE_URL and ext.get("valueBoolean") is True
               for ext in participant.get("extension") or [])


def _period(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    period = {k: value[k] for k in ("start", "end") if isinstance(value.get(k), str)}
    return period or None


def _edges(teams: list[Stored], related: list[Stored], now: datetime) -> list[_Edge]:
    """One edge per CareTeam participant, and one per RelatedPerson in no visible team."""
    edges: list[_Edge] = []
    for stored in teams:
        team = stored.resource or {}
        if team.get("status") in _HIDDEN_TEAMS:
            continue
        counted = team.get("status") in _COUNTED_TEAMS and _covers(team.get("period"), now)
        closed = team.get("status") in ("inactive",) or _over(team.get("period"), now)
        for participant in team.get("participant") or []:
            target = (participant.get("member") or {}).get("reference")
            if not isinstance(target, str):
                continue
            period = _period(participant.get("period")) or _period(team.get("period"))
            edges.append(_Edge(target, _roles(participant.get("role")), _available(participant),
                               period, counted and _covers(period, now),
                               closed or _over(period, now), f"CareTeam/{stored.id}"))
    in_teams = {e.target for e in edges}
    for stored in related:
        person = stored.resource or {}
        target = f"RelatedPerson/{stored.id}"
        if target in in_teams:
            continue
        period = _period(person.get("period"))
        active = person.get("active") is not False
        edges.append(_Edge(target, _roles(person.get("relationship")), False, period,
                           active and _covers(period, now), not active or _over(period, now),
                           None))
    return edges


def _span(periods: list[dict[str, str] | None]) -> dict[str, str] | None:
    """The earliest start and the latest end; no end while any period is open-ended."""
    starts = [p["start"] for p in periods if p and "start" in p]
    ends = [p.get("end") if p else None for p in periods]
    span: dict[str, str] = {}
    if starts and all(p and "start" in p for p in periods):
        span["start"] = min(starts, key=lambda v: bounds(v)[0])
    if ends and all(isinstance(e, str) for e in ends):
        span["end"] = max((e for e in ends if e), key=lambda v: bounds(v)[1])
    return span or None


def _reference(reference: str, display: str | None) -> dict[str, str]:
    return {"reference": reference, **({"display": display} if display else {})}


def _role_parts(roles: list[str]) -> list[dict[str, Any]]:
    return [{"name": "role", "valueCoding": {"system": NETWORK_ROLE_SYSTEM, "code": code}}
            for code in roles]


def _node(reference: str, display: str | None, edges: list[_Edge]) -> dict[str, Any]:
    roles: list[str] = []
    for edge in edges:
        roles.extend(r for r in edge.roles if r not in roles)
    parts: list[dict[str, Any]] = [
        {"name": "reference", "valueReference": _reference(reference, display)},
        {"name": "kind", "valueCode": _KINDS.get(reference.split("/", 1)[0], "person")},
        *_role_parts(roles),
    ]
    if not edges:
        return {"name": "node", "part": parts}  # the person at the centre
    parts += [
        # marked available on a part in the network that is not over
        {"name": "available-at-discharge",
         "valueBoolean": any(e.available and not e.ended for e in edges)},
        {"name": "current", "valueBoolean": any(e.current for e in edges)},
    ]
    span = _span([e.period for e in edges])
    if span:
        parts.append({"name": "period", "valuePeriod": span})
    return {"name": "node", "part": parts}


def _edge(source: str, edge: _Edge) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "source", "valueReference": {"reference": source}},
        {"name": "target", "valueReference": {"reference": edge.target}},
        *_role_parts(edge.roles),
        {"name": "available-at-discharge", "valueBoolean": edge.available},
        {"name": "current", "valueBoolean": edge.current},
    ]
    if edge.period:
        parts.append({"name": "period", "valuePeriod": edge.period})
    if edge.care_team:
        parts.append({"name": "care-team", "valueReference": {"reference": edge.care_team}})
    return {"name": "edge", "part": parts}


def _practitioner_of(repo: Repository, reference: str) -> str | None:
    """The Practitioner behind a network member, if it is one (directly or by role)."""
    rtype, _, rid = reference.partition("/")
    if rtype == "Practitioner":
        return reference
    if rtype == "PractitionerRole":
        role = repo.server_read("PractitionerRole", rid) or {}
        practitioner = (role.get("practitioner") or {}).get("reference")
        return practitioner if isinstance(practitioner, str) else None
    return None


def _seen(repo: Repository, edges: list[_Edge],
          displays: dict[str, str | None]) -> list[dict[str, Any]]:
    """The professionals the person has seen: practitioners of the care teams, with the
    earliest start and the latest end of their periods (no end while still involved)."""
    by_practitioner: dict[str, list[_Edge]] = {}
    for edge in edges:
        if edge.care_team is None:
            continue
        practitioner = _practitioner_of(repo, edge.target)
        if practitioner is not None:
            by_practitioner.setdefault(practitioner, []).append(edge)
    out = []
    for practitioner in sorted(by_practitioner):
        found = by_practitioner[practitioner]
        roles: list[str] = []
        for edge in found:
            roles.extend(r for r in edge.roles if r not in roles)
        if practitioner not in displays:
            displays[practitioner] = _directory_display(repo, practitioner)
        parts: list[dict[str, Any]] = [
            {"name": "practitioner",
             "valueReference": _reference(practitioner, displays[practitioner])},
            *_role_parts(roles)]
        span = _span([e.period for e in found]) or {}
        if "start" in span:
            parts.append({"name": "first", "valueDateTime": span["start"]})
        if "end" in span:
            parts.append({"name": "last", "valueDateTime": span["end"]})
        out.append({"name": "seen", "part": parts})
    return out


def network(repo: Repository, call: Call) -> Any:
    """The network map as Parameters: `node`, `edge` and `seen` parameters with parts."""
    ctx = repo.ctx
    rid = call.resource_id
    params = call.params
    assert rid is not None
    _no_query(params, "network")
    repo.begin("operation", "Patient", "r")
    repo.policy.gate("CareTeam", "s")
    repo.policy.gate("RelatedPerson", "s")
    items = _dossier(repo, rid, "network")
    related = _of_type(items, "RelatedPerson")
    edges = _edges(_of_type(items, "CareTeam"), related, ctx.now)
    source = f"Patient/{rid}"
    # names of informal helpers only from what the caller may see (compartment)
    displays: dict[str, str | None] = {
        f"RelatedPerson/{s.id}": _name_display((s.resource or {}).get("name"))
        for s in related}
    patient = _of_type(items, "Patient")
    displays[source] = _name_display(patient[0].resource.get("name")) \
        if patient and patient[0].resource else None
    grouped: dict[str, list[_Edge]] = {}
    for edge in edges:
        grouped.setdefault(edge.target, []).append(edge)
    for reference in grouped:
        if reference not in displays:
            displays[reference] = _directory_display(repo, reference)

    def order(reference: str) -> tuple[int, str]:
        return _KIND_ORDER.index(_KINDS.get(reference.split("/", 1)[0], "person")), reference

    parameters = [_node(source, displays[source], grouped.pop(source, []))]
    parameters += [_node(ref, displays.get(ref), grouped[ref])
                   for ref in sorted(grouped, key=order)]
    parameters += [_edge(source, e) for e in sorted(
        (e for e in edges if e.target != source),
        key=lambda e: (order(e.target), e.care_team or ""))]
    parameters += _seen(repo, edges, displays)
    return {"resourceType": "Parameters", "parameter": parameters}


# ---------------------------------------------------------------------- $discharge-readiness

class InvalidParameter(Unprocessable):
    """A $discharge-readiness parameter that is missing or malformed (422, names it)."""

    code = "invalid"


@dataclass(frozen=True)
class ReadinessRequest:
    at: datetime
    destination: str | None
    language: str | None


def _where(name: str) -> list[str]:
    return [f"Parameters.parameter.{name}"]


def parse_at(value: Any) -> datetime:
    """The discharge time: a FHIR dateTime with a time of day and a time zone."""
    if not isinstance(value, str):
        raise InvalidParameter("The parameter 'at' needs valueDateTime (or valueInstant).",
                            expression=_where("at"))
    match = _DATETIME.fullmatch(value)
    if match is None:
        raise InvalidParameter("The parameter 'at' is not a FHIR dateTime with a time of day, "
                            "e.g. 2027-07-21T10:00:00+02:00.", expression=_where("at"))
    if match["zone"] is None:
        raise InvalidParameter("The parameter 'at' has no time zone; add one, e.g. +02:00 "
                            "(times are read in Europe/Brussels).", expression=_where("at"))
    try:
        return bounds(value)[0]
    except ValueError:  # a month 13, a 25th hour ...
        raise InvalidParameter("The parameter 'at' is not a valid date and time.",
                            expression=_where("at")) from None


def readiness_request(body: dict[str, Any] | None) -> ReadinessRequest:
    """Check the Parameters body: `at` (required), `destination`, `language`, once each."""
    if body is None:
        raise InvalidParameter("The parameter 'at' is required: send a Parameters body with the "
                            "planned discharge time.", expression=_where("at"))
    entries = body.get("parameter", [])
    if body.get("resourceType") != "Parameters" or not isinstance(entries, list):
        raise InvalidParameter("$discharge-readiness takes a Parameters resource.",
                            expression=["Parameters"])
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in ("at", "destination", "language"):
            raise InvalidParameter("$discharge-readiness takes the parameters at, destination "
                                "and language only.", expression=["Parameters.parameter"])
        if name in found:
            raise InvalidParameter(f"The parameter '{name}' is given twice.",
                                expression=_where(name))
        found[name] = entry
    if "at" not in found:
        raise InvalidParameter("The parameter 'at' is required: the planned discharge time.",
                            expression=_where("at"))
    at_entry = found["at"]
    at = parse_at(at_entry.get("valueDateTime", at_entry.get("valueInstant")))
    destination = None
    if "destination" in found:
        value = found["destination"].get("valueReference")
        reference = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(reference, str) or not REF_RE.match(reference):
            raise InvalidParameter("The parameter 'destination' needs valueReference with a "
                                "relative reference such as Organization/123.",
                                expression=_where("destination"))
        destination = reference
    language = None
    if "language" in found:
        language = found["language"].get("valueCode")
        if language not in LANGUAGES:
            raise InvalidParameter("The parameter 'language' needs valueCode fr, nl or en.",
                                expression=_where("language"))
    return ReadinessRequest(at, destination, language)


def patient_language(patient: dict[str, Any] | None) -> str | None:
    """The person's first communication language we write in (preferred ones first)."""
    spoken = (patient or {}).get("communication") or []
    for item in sorted(spoken, key=lambda c: c.get("preferred") is not True):
        for coding in (item.get("language") or {}).get("coding") or []:
            primary = str(coding.get("code", "")).split("-")[0].lower()
            if primary in LANGUAGES:
                return primary
    return None


def discharge(repo: Repository, call: Call) -> Any:
    """Ready or not at `at`, from the latest assessment and the network the caller sees."""
    rid = call.resource_id
    params = call.params
    body = call.body
    assert rid is not None
    _no_query(params, "discharge-readiness")
    repo.begin("operation", "Patient", "r")
    repo.policy.gate("Observation", "s")
    repo.policy.gate("CareTeam", "s")
    ask = readiness_request(body)  # inside the unit: a refused input is audited too
    items = _dossier(repo, rid, "discharge-readiness")
    assessment = latest_assessment(s.resource for s in _of_type(items, "Observation")
                                   if s.resource)
    teams = [s.resource for s in _of_type(items, "CareTeam") if s.resource]
    result = discharge_readiness(ask.at, assessment, teams, ask.destination)
    patient = _of_type(items, "Patient")
    language = ask.language or patient_language(
        patient[0].resource if patient else None) or "en"
    answer = readiness_parameters(result, language)
    from dossier.coordination.discharge import readiness_answers  # registers its operations

    answer["parameter"] += readiness_answers(repo, rid, ask.at)  # the plan's confirmations
    return answer


for _op in (
    operations.Operation("demarches", "instance", "Patient", frozenset({"GET"}), demarches,
                         f"{DB}/OperationDefinition/Patient-demarches"),
    operations.Operation("network", "instance", "Patient", frozenset({"GET"}), network,
                         f"{DB}/OperationDefinition/Patient-network"),
    operations.Operation("discharge-readiness", "instance", "Patient", frozenset({"POST"}),
                         discharge, f"{DB}/OperationDefinition/Patient-discharge-readiness",
                         access={"POST": "read"}),
):
    operations.register(_op)
