"""The CapabilityStatement: says exactly what this server supports."""

from __future__ import annotations

from typing import Any

import schemas
from dossier import __version__

INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "history-type",
                "create", "search-type"]


def capability_statement(base: str, operations: list[dict[str, str]],
                         security: dict[str, Any] | None = None) -> dict[str, Any]:
    types = []
    for rtype in sorted(schemas.SUPPORTED_TYPES):
        params = schemas.search_parameters(rtype)
        search_params = [
            {"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"},
        ] + [{"name": p.name, "type": p.type} for p in params.values()]
        refs = [p.name for p in params.values() if p.type == "reference"]
        types.append({
            "type": rtype,
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": rtype in schemas.DIRECTORY_TYPES,
            "conditionalCreate": True,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": [f"{rtype}:{r}" for r in refs],
            "searchRevInclude": _revincludes(rtype),
            "searchParam": search_params,
        })
    for rtype in sorted(schemas.SERVER_WRITTEN_TYPES):
        types.append({"type": rtype, "interaction": [{"code": "read"},
                                                     {"code": "search-type"}]})
    from dossier.subscriptions.service import capability_entry  # late: it needs the repository

    types.append(capability_entry())
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": types,
        "interaction": [{"code": "transaction"}, {"code": "batch"},
                        {"code": "history-system"}],
        "operation": operations,
    }
    if security:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "Dossier", "version": __version__},
        "implementation": {"description": "Consent-managed shared dossier", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }


def _revincludes(target: str) -> list[str]:
    out = []
    for source in sorted(schemas.SUPPORTED_TYPES):
        for p in schemas.search_parameters(source).values():
            if p.type == "reference" and (not p.target_types or target in p.target_types):
                out.append(f"{source}:{p.name}")
    return out
