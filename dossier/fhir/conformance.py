"""The definitions this server publishes at their canonical URLs (`DB/OperationDefinition/x`,
`DB/SearchParameter/x`, `DB/SubscriptionTopic/x`, with `DB` = https://dossier.brussels/fhir),
readable here at `{base}/{Type}/{id}` without a token, like the CapabilityStatement.

Everything is generated from what the server actually runs: the operation registry
(`dossier/fhir/operations.py`), the search parameters (`schemas/search.py`) and the
subscription topic (`dossier/subscriptions/service.py`), so a definition cannot drift
from the code. Definitions of other publishers (HL7's `Patient-everything`, Bulk Data's
`export`) are referenced by their own canonical URLs and not served here."""

from __future__ import annotations

import re
from typing import Any

import schemas
from dossier import __version__
from dossier.errors import BadRequest
from dossier.fhir import operations

DB = schemas.CANONICAL
DATE = "2026-11-22"
STATUS_OPERATION = ("http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
                    "backport-subscription-status")

# What each of our own operations takes and gives (name, use, min, max, type[, parts]).
# An operation registered without an entry here is still published, with no parameters
# listed and its documentation pointed to.
Param = tuple[str, str, int, str, str | None]
PARAMETERS: dict[str, list[Param]] = {
    "demarches": [("return", "out", 1, "1", "Bundle")],
    "network": [("return", "out", 1, "1", "Parameters")],
    "discharge-readiness": [
        ("at", "in", 1, "1", "dateTime"), ("destination", "in", 0, "1", "Reference"),
        ("language", "in", 0, "1", "code"), ("ready", "out", 1, "1", "boolean"),
        ("reason", "out", 0, "*", "CodeableConcept"), ("contact", "out", 0, "*", "Reference"),
        ("plan", "out", 0, "1", "Reference"), ("confirmed", "out", 0, "1", "integer"),
        ("refused", "out", 0, "1", "integer")],
    "discharge-plan": [
        ("at", "in", 1, "1", "dateTime"), ("destination", "in", 0, "1", "Reference"),
        ("plan", "out", 1, "1", "Reference"), ("asked", "out", 0, "*", "Reference"),
        ("informal", "out", 0, "*", "Reference"), ("answer", "out", 0, "*", None)],
    "discharge-confirm": [
        ("plan", "in", 0, "1", "Reference"), ("request", "in", 0, "1", "Reference"),
        ("available", "in", 1, "1", "boolean"),
        ("onBehalfOf", "in", 0, "1", "Reference"), ("recorded", "out", 1, "1", "Reference")],
    "access-preview": [("actor", "in", 1, "1", "string"), ("return", "out", 1, "1", "Bundle")],
    "break-glass": [
        ("reason", "in", 1, "1", "string"), ("grant", "out", 1, "1", "string"),
        ("expires", "out", 1, "1", "instant"), ("category", "out", 0, "*", "code")],
    "erase": [("status", "out", 1, "1", "code"), ("date", "out", 1, "1", "instant")],
    "notification-settings": [
        ("language", "in", 0, "1", "code"), ("email", "in", 0, "1", "string"),
        ("webhook", "in", 0, "1", "url"), ("webhook-secret", "in", 0, "1", "string"),
        ("language", "out", 1, "1", "code"), ("channel", "out", 1, "*", "code"),
        ("email", "out", 0, "1", "string"), ("webhook", "out", 0, "1", "url"),
        ("webhook-secret", "out", 0, "1", "string")],
    "register-hub": [
        ("client-id", "in", 1, "1", "string"), ("jwks", "in", 0, "1", "string"),
        ("jwks-uri", "in", 0, "1", "url"), ("scope", "in", 0, "1", "string"),
        ("client-id", "out", 1, "1", "string"), ("organization", "out", 1, "1", "Reference"),
        ("scope", "out", 1, "1", "string"), ("token-endpoint", "out", 1, "1", "url"),
        ("jwks-uri", "out", 0, "1", "url")],
    "locate": [("identifier", "in", 1, "1", "Identifier"), ("match", "out", 0, "*", None)],
    # people reach their dossier (SPEC §13)
    "assisted-consent": [("refuse", "in", 0, "1", "boolean"), ("refuse", "out", 1, "1",
                                                                "boolean")],
    "request-access": [("category", "in", 1, "*", "code"), ("period", "in", 0, "1", "Period")],
    "answer-access-request": [
        ("request", "in", 1, "1", "string"), ("answer", "in", 1, "1", "code"),
        ("category", "in", 0, "*", "code"), ("status", "out", 1, "1", "code"),
        ("consent", "out", 0, "1", "Reference")],
    "enrolment-code": [("code", "out", 1, "1", "string"), ("expires", "out", 1, "1",
                                                             "instant")],
    "enrol": [("code", "in", 1, "1", "string"), ("patient", "out", 1, "1", "Reference")],
}
LOCATE_MATCH_PARTS: list[Param] = [("patient", "out", 1, "1", "Reference"),
                                   ("endpoint", "out", 0, "1", "Reference"),
                                   ("address", "out", 1, "1", "url")]


def _own(definition: str) -> str | None:
    """The id of a definition we publish (`DB/OperationDefinition/<id>`), else None."""
    prefix = f"{DB}/OperationDefinition/"
    return definition[len(prefix):] if definition.startswith(prefix) else None


def operation_definitions(base: str) -> dict[str, dict[str, Any]]:
    """id → OperationDefinition, for every registered operation defined by this server.
    (`base` is kept for definitions that would name this server's URLs.)"""
    del base
    grouped: dict[str, list[operations.Operation]] = {}
    for op in operations.REGISTRY.values():
        oid = _own(op.definition)
        if oid is not None:
            grouped.setdefault(oid, []).append(op)
    out = {}
    for oid, ops in grouped.items():
        first = ops[0]
        levels = {o.level for o in ops}
        types = sorted({o.resource_type for o in ops if o.resource_type})
        affects = any(o.stateful or "write" in o.access.values() for o in ops)
        methods = sorted(set().union(*(o.methods for o in ops)))
        params = []
        for name, use, low, high, ptype in PARAMETERS.get(first.name, []):
            p: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high}
            if ptype:
                p["type"] = ptype
            elif first.name == "locate":
                p["part"] = [{"name": n, "use": u, "min": lo, "max": hi, "type": t}
                             for n, u, lo, hi, t in LOCATE_MATCH_PARTS]
            params.append(p)
        definition: dict[str, Any] = {
            "resourceType": "OperationDefinition", "id": oid, "url": first.definition,
            "version": __version__, "name": _pascal(first.name), "title": f"${first.name}",
            "status": "active", "kind": "operation", "date": DATE, "publisher": "Dossier",
            "description": (f"${first.name} ({', '.join(methods)}). What it does, who may "
                            "call it and every answer: docs/api.md and docs/hubs.md of the "
                            "Dossier sources."),
            "affectsState": affects, "code": first.name,
            "system": "system" in levels, "type": "type" in levels,
            "instance": "instance" in levels}
        if types:
            definition["resource"] = types
        if params:
            definition["parameter"] = params
        out[oid] = definition
    return out


def _pascal(code: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", code) if part)


# ---------------------------------------------------------------- search parameters

STANDARD = {"_id": "http://hl7.org/fhir/SearchParameter/Resource-id",
            "_lastUpdated": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}
CHOICE = re.compile(r"^(value|effective)([A-Z][A-Za-z]+)$")


def search_parameter_url(resource_type: str, name: str) -> str:
    return STANDARD.get(name) or f"{DB}/SearchParameter/{resource_type}-{name}"


def _fhirpath(resource_type: str, path: str) -> str:
    parts = []
    for segment in path.split("."):
        m = CHOICE.match(segment)
        if m:
            kind = m.group(2)
            kind = kind if kind[0].isupper() and kind not in ("DateTime",) else \
                kind[0].lower() + kind[1:]
            parts.append(f"{m.group(1)}.ofType({kind})")
        else:
            parts.append(segment)
    return f"{resource_type}.{'.'.join(parts)}"


def _modifiers(ptype: str) -> list[str]:
    return {"token": ["missing", "not"], "string": ["missing", "contains", "exact"],
            "reference": ["missing", "type"], "date": ["missing"]}.get(ptype, [])


# AuditEvent is searched through its own view over the audit log (dossier/auditlog/events.py)
AUDIT_EVENT_PARAMS: tuple[schemas.SearchParam, ...] = (
    schemas.SearchParam("patient", "reference", ("entity.what",), frozenset({"Patient"})),
    schemas.SearchParam("agent", "reference", ("agent.who",)),
    schemas.SearchParam("date", "date", ("recorded",)),
    schemas.SearchParam("outcome", "token", ("outcome",)),
    schemas.SearchParam("action", "token", ("action",)),
    schemas.SearchParam("purpose", "token", ("purposeOfEvent",)),
)


def declared(resource_type: str) -> list[schemas.SearchParam]:
    """The search parameters that work on a type (besides _id and _lastUpdated)."""
    if resource_type == "AuditEvent":
        return list(AUDIT_EVENT_PARAMS)
    return list(schemas.search_parameters(resource_type).values())


def search_parameter_definitions() -> dict[str, dict[str, Any]]:
    """id → SearchParameter, for every parameter that works (schemas/search.py, and the
    AuditEvent view's)."""
    out = {}
    for rtype in sorted(set(schemas.SUPPORTED_TYPES) | set(schemas.SERVER_WRITTEN_TYPES)):
        for p in declared(rtype):
            sid = f"{rtype}-{p.name}"
            expression = " | ".join(_fhirpath(rtype, path) for path in p.paths) or \
                f"{rtype}.coverageArea"  # "served": a postal code of the territory
            sp: dict[str, Any] = {
                "resourceType": "SearchParameter", "id": sid,
                "url": search_parameter_url(rtype, p.name), "version": __version__,
                "name": _pascal(sid), "status": "active", "date": DATE,
                "publisher": "Dossier",
                "description": _description(rtype, p),
                "code": p.name, "base": [rtype], "type": p.type, "expression": expression,
                "xpathUsage": "normal", "multipleOr": True, "multipleAnd": True,
                "modifier": _modifiers(p.type)}
            if rtype == "AuditEvent":
                sp["modifier"] = []  # the audit view takes no modifiers
            if p.type == "reference":
                sp["target"] = sorted(p.target_types) if p.target_types else ["Resource"]
            if p.type == "date":
                sp["comparator"] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
            out[sid] = sp
    return out


def _description(resource_type: str, p: schemas.SearchParam) -> str:
    where = ", ".join(p.paths)
    if p.territory == "below":
        return (f"{resource_type} by {where}: a Location of the territory finds what names it "
                "or any Location inside it (partOf), e.g. a bassin finds its communes' and "
                "quartiers' services.")
    if p.territory == "serves":
        return (f"{resource_type} serving a Location of the territory: what covers it, a "
                "Location inside it or one above it (the bassin, the region).")
    if p.territory == "served":
        return (f"{resource_type} by postal code (starts-with): what covers a Location of the "
                "territory with that postal code, a Location inside it or one above it.")
    if p.name == "identifier":
        return (f"{resource_type} by identifier ({where}): system|value only, matched "
                "through a keyed blind index (a value without its system matches nothing).")
    if p.type == "string":
        return (f"{resource_type} by {where}: starts-with by default, ignoring case and "
                "accents; :contains anywhere; :exact the whole text as written.")
    return f"{resource_type} by {where} ({p.type})."


# ---------------------------------------------------------------- subscription topic

def subscription_topic() -> dict[str, Any]:
    """The one topic (R4B SubscriptionTopic; the Backport IG's canonical)."""
    from dossier.subscriptions.service import TOPIC, TOPIC_TYPES

    return {
        "resourceType": "SubscriptionTopic", "id": TOPIC.rsplit("/", 1)[-1], "url": TOPIC,
        "version": __version__, "title": "Dossier entry created or changed",
        "status": "active", "date": DATE, "publisher": "Dossier",
        "description": ("An entry of a person's dossier (démarche, network, fragility) was "
                        "created or changed. Notifications are id-only or empty, and only "
                        "for entries the subscriber may read now (consent is checked at the "
                        "event and again at delivery)."),
        "resourceTrigger": [{
            "description": f"A {t} was created or updated.",
            "resource": f"http://hl7.org/fhir/StructureDefinition/{t}",
            "supportedInteraction": ["create", "update"]} for t in TOPIC_TYPES],
        "canFilterBy": [{"description": f"{t} of one person: {t}?patient=Patient/id",
                         "resource": t, "filterParameter": "patient"} for t in TOPIC_TYPES],
        "notificationShape": [{"resource": t} for t in TOPIC_TYPES],
    }


# ---------------------------------------------------------------- lookup

def definition(resource_type: str, rid: str, base: str) -> dict[str, Any] | None:
    if resource_type == "OperationDefinition":
        return operation_definitions(base).get(rid)
    if resource_type == "SearchParameter":
        return search_parameter_definitions().get(rid)
    if resource_type == "SubscriptionTopic":
        topic = subscription_topic()
        return topic if topic["id"] == rid else None
    return None


def search(resource_type: str, base: str, raw: list[tuple[str, str]],
           lenient: bool) -> dict[str, Any]:
    """A searchset of published definitions: `url` (exact) and `_id`; everything else is
    refused (or ignored under handling=lenient)."""
    if resource_type == "OperationDefinition":
        found = list(operation_definitions(base).values())
    elif resource_type == "SearchParameter":
        found = list(search_parameter_definitions().values())
    else:
        found = [subscription_topic()]
    ignored = []
    for key, value in raw:
        if key == "url":
            found = [d for d in found if d["url"] in value.split(",")]
        elif key == "_id":
            found = [d for d in found if d["id"] in value.split(",")]
        elif key in ("code", "base", "resource") and resource_type != "SubscriptionTopic":
            wanted = set(value.split(","))
            found = [d for d in found if (
                set(d.get(key) or []) & wanted if isinstance(d.get(key), list)
                else d.get(key) in wanted)]
        elif key in ("_count", "_offset", "_total"):
            continue  # a handful of definitions: one page, an exact total
        elif key in ("_summary", "_elements") or lenient:
            ignored.append(key)
        else:
            raise BadRequest(f"The search parameter '{key[:64]}' is not supported for "
                             f"{resource_type}; use url or _id.")
    from dossier.fhir.bundles import ignored_issues, outcome_entry

    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{resource_type}/{d['id']}", "resource": d,
         "search": {"mode": "match"}} for d in found]
    if ignored:
        entries.append(outcome_entry(base, ignored_issues(ignored)))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "total": len(found)}
    if entries:
        bundle["entry"] = entries
    return bundle
