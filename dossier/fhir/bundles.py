"""Build response Bundles (searchset, history) from stored resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dossier.fhir.wire import etag
from dossier.repository import SearchResult, Stored


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def full_url(base: str, s: Stored) -> str:
    return f"{base}/{s.resource_type}/{s.id}"


def searchset(base: str, result: SearchResult, raw: list[tuple[str, str]],
              now: datetime) -> dict[str, Any]:
    q = result.query
    params = q.canonical_params(raw)
    path = f"{base}/{q.resource_type}"

    def link(relation: str, offset: int) -> dict[str, str]:
        query = urlencode([*params, ("_count", str(q.count)), ("_offset", str(offset))])
        return {"relation": relation, "url": f"{path}?{query}"}

    links = [link("self", q.offset)]
    if q.offset + q.count < result.total:
        links.append(link("next", q.offset + q.count))
    if q.offset > 0:
        links.append(link("previous", max(0, q.offset - q.count)))
    entries: list[dict[str, Any]] = [
        {"fullUrl": full_url(base, s), "resource": s.resource, "search": {"mode": "match"}}
        for s in result.matches
    ]
    entries += [
        {"fullUrl": full_url(base, s), "resource": s.resource, "search": {"mode": "include"}}
        for s in result.included
    ]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "timestamp": instant(now), "total": result.total, "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle


def history(base: str, items: list[Stored], total: int, self_url: str,
            now: datetime) -> dict[str, Any]:
    entries = []
    for s in items:
        entry: dict[str, Any] = {"fullUrl": full_url(base, s)}
        if s.resource is not None:
            entry["resource"] = s.resource
        url = s.resource_type if s.method == "POST" else f"{s.resource_type}/{s.id}"
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[s.method]
        entry["request"] = {"method": s.method, "url": url}
        entry["response"] = {"status": status, "etag": etag(s.version_id),
                             "lastModified": instant(s.last_updated)}
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history",
                              "timestamp": instant(now), "total": total,
                              "link": [{"relation": "self", "url": self_url}]}
    if entries:
        bundle["entry"] = entries
    return bundle
