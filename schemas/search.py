"""Search parameters per resource type, and the index rows a resource yields for them.

`_id` and `_lastUpdated` are generic and handled by the server. Identifiers
are never indexed in clear: `extract_index` skips the `identifier` parameter
and `identifiers()` hands (system, value) pairs to the server's blind index.
Patient has no name, birthdate or address parameter: those are encrypted (§7).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from schemas import fhirtime, terminology
from schemas.paths import codings, reference_of, values_at
from schemas.profiles import BOUND_BY_RULE, element_at

ParamType = Literal["token", "reference", "date", "string"]
EXACT_SUFFIX = ":exact"  # index rows of a string parameter's text as written
Row = tuple[str, str | None, str]


@dataclass(frozen=True)
class SearchParam:
    """name as used in the query; paths relative to the resource; target_types for references
    (empty: any type)."""

    name: str
    type: ParamType
    paths: tuple[str, ...]
    target_types: frozenset[str] = frozenset()
    # "below": a Location value also finds what points to any Location inside it (partOf);
    # "serves": also what points to a Location inside or above it (coverage-area);
    # "served": a postal code finds what covers a Location with it, inside or above it
    territory: Literal["below", "serves", "served"] | None = None


def _token(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "token", paths)


def _ref(name: str, path: str, *targets: str) -> SearchParam:
    return SearchParam(name, "reference", (path,), frozenset(targets))


def _date(name: str, path: str) -> SearchParam:
    return SearchParam(name, "date", (path,))


_PROFESSIONALS = ("Practitioner", "PractitionerRole", "Organization")
_MEMBERS = ("Practitioner", "PractitionerRole", "RelatedPerson", "Organization", "Patient")

_PARAMS: Mapping[str, tuple[SearchParam, ...]] = {
    "Patient": (_token("identifier", "identifier"), _token("active", "active"),
                _token("language", "communication.language")),
    "Practitioner": (_token("identifier", "identifier"), _token("active", "active"),
                     SearchParam("name", "string", ("name",))),
    "PractitionerRole": (
        _ref("practitioner", "practitioner", "Practitioner"),
        _ref("organization", "organization", "Organization"),
        _token("role", "code"), _token("active", "active"), _token("identifier", "identifier"),
    ),
    "Organization": (
        _token("identifier", "identifier"), _token("active", "active"),
        SearchParam("name", "string", ("name",)), _token("type", "type"),
        _ref("partof", "partOf", "Organization"),
        SearchParam("address-postalcode", "string", ("address.postalCode",)),
    ),
    "Location": (
        _token("identifier", "identifier"), _token("status", "status"),
        SearchParam("name", "string", ("name", "alias")), _token("type", "type"),
        _ref("partof", "partOf", "Location"),
        SearchParam("address-postalcode", "string", ("address.postalCode",)),
    ),
    "HealthcareService": (
        _token("identifier", "identifier"), _token("active", "active"),
        SearchParam("name", "string", ("name",)),
        _token("type", "type"), _token("service-type", "type"),
        _ref("organization", "providedBy", "Organization"),
        _ref("location", "location", "Location"),
        SearchParam("coverage-area", "reference", ("coverageArea",), frozenset({"Location"}),
                    territory="below"),
        SearchParam("serves", "reference", (), frozenset({"Location"}), territory="serves"),
        SearchParam("address-postalcode", "string", (), territory="served"),
        _token("language", "communication"), _token("eligibility", "eligibility.code"),
    ),
    "Group": (
        _ref("member", "member.entity", "Practitioner", "PractitionerRole"),
        _token("code", "code"), _token("type", "type"), _token("actual", "actual"),
    ),
    "Endpoint": (
        _token("identifier", "identifier"), _token("status", "status"),
        SearchParam("name", "string", ("name",)),
        _ref("organization", "managingOrganization", "Organization"),
        _token("connection-type", "connectionType"), _token("payload-type", "payloadType"),
        _token("address", "address"),  # exact match on the whole URL
    ),
    "RelatedPerson": (
        _ref("patient", "patient", "Patient"), _token("identifier", "identifier"),
        _token("relationship", "relationship"), _token("active", "active"),
    ),
    "CareTeam": (
        _ref("patient", "subject", "Patient"), _ref("subject", "subject", "Patient"),
        _ref("participant", "participant.member", *_MEMBERS),
        _token("status", "status"), _token("role", "participant.role"),
        _date("date", "period"),
    ),
    "Task": (
        _ref("patient", "for", "Patient"), _ref("subject", "for", "Patient"),
        _ref("for", "for", "Patient"),
        _ref("owner", "owner", "Organization"), _ref("requester", "requester", *_PROFESSIONALS),
        _ref("part-of", "partOf", "Task"),
        _token("status", "status"), _token("code", "code"),
        _token("business-status", "businessStatus"), _token("intent", "intent"),
        _token("priority", "priority"),
        _date("authored-on", "authoredOn"), _date("period", "executionPeriod"),
        _date("modified", "lastModified"),
    ),
    "Observation": (
        _ref("patient", "subject", "Patient"), _ref("subject", "subject", "Patient"),
        _ref("performer", "performer", *_PROFESSIONALS),
        _token("code", "code"), _token("status", "status"), _token("category", "category"),
        _token("component-code", "component.code"), _token("value-concept",
                                                          "valueCodeableConcept"),
        _date("date", "effectiveDateTime"),
    ),
    "Flag": (
        _ref("patient", "subject", "Patient"), _ref("subject", "subject", "Patient"),
        _ref("author", "author", *_PROFESSIONALS),
        _token("status", "status"), _token("code", "code"), _date("date", "period"),
    ),
    "Consent": (
        _ref("patient", "patient", "Patient"),
        _ref("actor", "provision.actor.reference", "Practitioner", "Organization", "Group"),
        _token("status", "status"), _token("action", "provision.action"),
        _token("security-label", "provision.securityLabel"),
        _token("purpose", "provision.purpose"), _token("scope", "scope"),
        _token("category", "category"),
        _date("date", "dateTime"), _date("period", "provision.period"),
    ),
    "Communication": (
        _ref("patient", "subject", "Patient"), _ref("subject", "subject", "Patient"),
        _ref("recipient", "recipient", *_MEMBERS),
        _ref("sender", "sender", *_MEMBERS),
        _ref("about", "about"),
        _token("category", "category"), _token("status", "status"), _token("priority", "priority"),
        _date("sent", "sent"),
    ),
    "AuditEvent": (
        _ref("patient", "entity.what", "Patient"), _ref("entity", "entity.what"),
        _ref("agent", "agent.who"),
        _token("type", "type"), _token("subtype", "subtype"), _token("action", "action"),
        _token("outcome", "outcome"), _date("date", "recorded"),
    ),
    "Provenance": (
        _ref("patient", "target", "Patient"), _ref("target", "target"),
        _ref("agent", "agent.who"), _date("recorded", "recorded"),
    ),
}


def compartment_params(resource_type: str) -> frozenset[str]:
    """Names of the reference parameters that follow exactly the element naming the
    resource's patient compartment (Task: `patient`, `subject`): a search on them is a
    search within one dossier, which storage can answer from its compartment column."""
    from schemas.profiles import PROFILES

    profile = PROFILES.get(resource_type)
    if profile is None or not profile.patient or profile.patient == ("id",):
        return frozenset()
    return frozenset(p.name for p in _PARAMS.get(resource_type, ())
                     if p.type == "reference" and p.paths == profile.patient
                     and p.target_types == frozenset({"Patient"}))


def search_parameters(resource_type: str) -> dict[str, SearchParam]:
    """name → SearchParam for a type ({} for a type the dossier does not hold)."""
    return {p.name: p for p in _PARAMS.get(resource_type, ())}


def extract_index(resource: Mapping[str, Any]) -> list[Row]:
    """(param, system or None, value) rows for the search index, without duplicates.

    token: (name, system, code); a bare `code` element gets its value set's one
    system, a boolean gives "true"/"false". reference: (name, None, "Type/id").
    date: (name, None, first instant in UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ'); a
    Period gives its start (its end when it has no start). string: (name, None,
    casefolded text without accents, plus a `name:exact` row with the text as written,
    for the `:exact` modifier). No identifier rows: see `identifiers`.
    """
    resource_type = str(resource.get("resourceType"))
    rows: list[Row] = []
    for param in _PARAMS.get(resource_type, ()):
        if param.name == "identifier":
            continue
        for path in param.paths:
            for value in values_at(resource, path):
                for row in _rows(param, resource_type, path, value):
                    if row not in rows:
                        rows.append(row)
    return rows


def identifiers(resource: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(system, value) of each top-level identifier, for the server's keyed blind index."""
    found = resource.get("identifier")
    return [(i["system"], i["value"]) for i in (found if isinstance(found, list) else ())
            if isinstance(i, dict) and isinstance(i.get("system"), str)
            and isinstance(i.get("value"), str)]


def _rows(param: SearchParam, resource_type: str, path: str, value: Any) -> Iterator[Row]:
    name = param.name
    if param.type == "token":
        if isinstance(value, bool):
            yield name, None, "true" if value else "false"
        elif isinstance(value, str):
            yield name, _implied_system(resource_type, path), value
        else:
            for system, code in codings(value):
                yield name, system, code
    elif param.type == "reference":
        target = reference_of(value)
        if target is not None and (not param.target_types or target[0] in param.target_types):
            yield name, None, f"{target[0]}/{target[1]}"
    elif param.type == "date":
        text = value.get("start", value.get("end")) if isinstance(value, dict) else value
        if isinstance(text, str):
            try:
                yield name, None, fhirtime.start_instant(text)
            except ValueError:
                return
    else:
        parts: list[Any] = [value]
        if isinstance(value, dict):  # a HumanName
            given = value.get("given")
            parts = [value.get("family"), *(given if isinstance(given, list) else [])]
        for part in parts:
            if isinstance(part, str) and part.strip():
                yield name, None, normalise(part)
                yield f"{name}{EXACT_SUFFIX}", None, part.strip()  # for `:exact`


def normalise(text: str) -> str:
    """String-search form: casefolded, accents removed, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.split())


def _implied_system(resource_type: str, path: str) -> str | None:
    element = element_at(resource_type, path)
    if element is None or element.binding is None or element.binding == BOUND_BY_RULE:
        return None
    systems = terminology.systems(element.binding)
    return next(iter(systems)) if len(systems) == 1 else None
