"""The CapabilityStatement: says exactly what this server supports, and nothing more.

- `rest.security`: the SMART-on-FHIR service coding and the `oauth-uris` extension (token
  and authorize endpoints, from the issuer's metadata), which clients such as Python
  `fhirclient` read to find where to authenticate.
- `instantiates` / `implementationGuide`: Bulk Data, Subscriptions Backport, SMART.
- per type: the interactions some role can actually perform (the role table of
  `auth/rules.py`, with the roles named in each interaction's documentation), and every
  search parameter that works, each with its definition (`dossier/fhir/conformance.py`).
"""

from __future__ import annotations

import functools
from typing import Any

import schemas
from auth.rules import RULES
from dossier import __version__
from dossier.fhir.conformance import declared, search_parameter_url

SMART_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
INSTANTIATES = [
    "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data",
    "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/"
    "backport-subscription-server-r4",
]
IMPLEMENTATION_GUIDES = [
    "http://hl7.org/fhir/smart-app-launch/ImplementationGuide/hl7.fhir.uv.smart-app-launch",
    "http://hl7.org/fhir/uv/bulkdata/ImplementationGuide/hl7.fhir.uv.bulkdata",
    "http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/"
    "hl7.fhir.uv.subscriptions-backport",
]
# SMART letter → the REST interactions it allows
INTERACTIONS = {"r": ("read", "vread", "history-instance", "history-type"),
                "u": ("update", "patch"), "d": ("delete",), "c": ("create",),
                "s": ("search-type",)}
ORDER = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type",
         "create", "search-type")
# types served as views with fewer interactions than their role letters allow
VIEWS = {"AuditEvent": frozenset({"read", "search-type"})}  # dossier/auditlog/events.py
# a practitioner's or hub's own rosters (dossier/hubs/rosters.py): private Groups of people
ROSTER_ROLES = {"practitioner": "crud", "hub": "crud"}
GENERAL = ("The search result parameters _count (at most the server's page size), _offset, "
           "_sort, _include, _revinclude, _summary (true, text, data, count), _elements and "
           "_total work on every type (by default total is exact up to 1,000 matches and left "
           "out beyond; _total=accurate counts all); modifiers :missing on every parameter, "
           ":not on tokens, :contains and :exact on strings, :Type on references. Anything else is "
           "refused (400) unless the request says Prefer: handling=lenient.")


def role_letters(resource_type: str) -> dict[str, str]:
    """role → SMART letters it may ever use on the type (consent decides per person)."""
    out: dict[str, str] = {role: rules.get(resource_type, "") for role, rules in RULES.items()}
    if resource_type == "Group":
        for role, letters in ROSTER_ROLES.items():
            out[role] = "".join(sorted(set(out[role]) | set(letters)))
    return {role: letters for role, letters in out.items() if letters}


def interactions(resource_type: str) -> list[dict[str, Any]]:
    """The interactions some role can perform on the type, each naming those roles."""
    roles: dict[str, list[str]] = {}
    for role, letters in role_letters(resource_type).items():
        for letter in letters:
            for name in INTERACTIONS.get(letter, ()):
                roles.setdefault(name, []).append(role)
    served = VIEWS.get(resource_type, frozenset(ORDER))
    return [{"code": name, "documentation": "Roles: " + ", ".join(sorted(set(roles[name])))}
            for name in ORDER if name in roles and name in served]


def _params(resource_type: str) -> list[dict[str, Any]]:
    common = [("_id", "token")] + ([] if resource_type == "AuditEvent" else
                                   [("_lastUpdated", "date")])
    listed = common + [(p.name, p.type) for p in declared(resource_type)]
    return [{"name": name, "definition": search_parameter_url(resource_type, name),
             "type": kind} for name, kind in listed]


def _resource(rtype: str) -> dict[str, Any] | None:
    found = interactions(rtype)
    if not found:
        return None
    codes = {i["code"] for i in found}
    params = schemas.search_parameters(rtype)
    refs = [p.name for p in params.values() if p.type == "reference"]
    entry: dict[str, Any] = {"type": rtype, "interaction": found}
    if codes & {"read", "update"}:
        entry["versioning"] = "versioned-update" if "update" in codes else "versioned"
        entry["readHistory"] = "vread" in codes
    if "update" in codes:
        entry["updateCreate"] = rtype in schemas.DIRECTORY_TYPES
        entry["conditionalUpdate"] = True
    if "create" in codes:
        entry["conditionalCreate"] = True
    if "delete" in codes:
        entry["conditionalDelete"] = "single"
    if "search-type" in codes:
        if rtype != "AuditEvent":
            entry["searchInclude"] = [f"{rtype}:{r}" for r in refs]
            entry["searchRevInclude"] = _revincludes(rtype)
        entry["searchParam"] = _params(rtype)
    return entry


def capability_statement(base: str, operations: list[dict[str, str]],
                         security: dict[str, Any] | None = None) -> dict[str, Any]:
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": GENERAL,
        "security": security or smart_security(None, cors=False),
        "resource": list(resource_entries()),
        "interaction": [{"code": "transaction"}, {"code": "batch"},
                        {"code": "history-system"}],
        "operation": operations,
    }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Dossier",
        "kind": "instance",
        "instantiates": INSTANTIATES,
        "software": {"name": "Dossier", "version": __version__},
        "implementation": {"description": "Consent-managed shared dossier", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "implementationGuide": IMPLEMENTATION_GUIDES,
        "rest": [rest],
    }


@functools.cache
def resource_entries() -> tuple[dict[str, Any], ...]:
    """`rest.resource`, built once per process: it follows only from the code (the role
    table, the declared search parameters), and building it was 60 % of a metadata request's
    CPU (measured). Shared between responses, so never changed in place."""
    types = []
    for rtype in sorted(set(schemas.SUPPORTED_TYPES) | set(schemas.SERVER_WRITTEN_TYPES)):
        entry = _resource(rtype)
        if entry is not None:
            types.append(entry)
    from dossier.subscriptions.service import capability_entry  # late: it needs the repository

    types.append(capability_entry())
    types.sort(key=lambda t: str(t["type"]))
    return tuple(types)


def smart_security(config: dict[str, Any] | None, *, cors: bool) -> dict[str, Any]:
    """`rest.security`: SMART on FHIR, with the OAuth endpoints when they are known."""
    security: dict[str, Any] = {
        "cors": cors,
        "service": [{"coding": [{"system": SMART_SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 with SMART App Launch v2 scopes; SMART Backend "
                             "Services (private_key_jwt) for hubs"}],
        "description": ("Every request but the CapabilityStatement and the published "
                        "definitions needs a Bearer access token. Discovery: "
                        ".well-known/smart-configuration (application/json)."),
    }
    uris = [(name, config.get(key)) for name, key in (
        ("token", "token_endpoint"), ("authorize", "authorization_endpoint"),
        ("register", "registration_endpoint"), ("revoke", "revocation_endpoint"),
        ("introspect", "introspection_endpoint"), ("manage", "management_endpoint"))
    ] if config else []
    found = [{"url": name, "valueUri": value} for name, value in uris if isinstance(value, str)]
    if found:
        security["extension"] = [{"url": OAUTH_URIS, "extension": found}]
    return security


def _revincludes(target: str) -> list[str]:
    out = []
    for source in sorted(set(schemas.SUPPORTED_TYPES) | set(schemas.SERVER_WRITTEN_TYPES)):
        if source == "AuditEvent":
            continue
        for p in schemas.search_parameters(source).values():
            if p.type == "reference" and (not p.target_types or target in p.target_types):
                out.append(f"{source}:{p.name}")
    return out
