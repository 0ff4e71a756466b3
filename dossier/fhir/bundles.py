"""Build response Bundles (searchset, history) from stored resources."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dossier.core.repository import SearchResult, Stored
from dossier.fhir.subset import subset
from dossier.fhir.wire import etag


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def full_url(base: str, s: Stored) -> str:
    return f"{base}/{s.resource_type}/{s.id}"


def page_links(path: str, params: list[tuple[str, str]], total: int | None, count: int,
               offset: int, more: bool = False) -> list[dict[str, str]]:
    """self, next and previous; `more` says whether a next page exists when the total
    was not counted (None)."""
    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*params, ("_count", str(count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{path}?{query}"}

    links = [link("self", offset)]
    if count == 0:  # only the total was asked for: there is no page to go to
        return links
    if (offset + count < total) if total is not None else more:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    return links


def outcome_entry(base: str, issues: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset entry (search.mode outcome) that tells the client what was not done:
    a parameter dropped under `Prefer: handling=lenient`, includes cut at their limit."""
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {"resourceType": "OperationOutcome", "issue": issues},
            "search": {"mode": "outcome"}}


def ignored_issues(ignored: list[str]) -> list[dict[str, Any]]:
    return [{"severity": "warning", "code": "not-supported",
             "diagnostics": f"The parameter '{name[:64]}' is not supported and was ignored "
                            "(Prefer: handling=lenient).",
             "expression": [name[:64]]} for name in dict.fromkeys(ignored)]


def simple_searchset(base: str, resource_type: str, resources: list[dict[str, Any]],
                     total: int, params: list[tuple[str, str]], count: int, offset: int,
                     now: datetime) -> dict[str, Any]:
    """A searchset of resources that are not stored resources (views such as AuditEvent)."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "searchset", "timestamp": instant(now),
        "total": total,
        "link": page_links(f"{base}/{resource_type}", params, total, count, offset)}
    if resources:
        bundle["entry"] = [{"fullUrl": f"{base}/{resource_type}/{r['id']}", "resource": r,
                            "search": {"mode": "match"}} for r in resources]
    return bundle


def searchset(base: str, result: SearchResult, raw: list[tuple[str, str]],
              now: datetime, path: str | None = None) -> dict[str, Any]:
    """`path`: the URL the paging links repeat (a compartment search's own URL)."""
    q = result.query
    links = page_links(path or f"{base}/{q.resource_type}", q.canonical_params(raw),
                       result.total, q.count, q.offset, result.more)

    def shown(s: Stored) -> dict[str, Any] | None:
        return None if s.resource is None else subset(s.resource, q.summary, q.elements)

    entries: list[dict[str, Any]] = [
        {"fullUrl": full_url(base, s), "resource": shown(s), "search": {"mode": "match"}}
        for s in result.matches
    ]
    entries += [
        {"fullUrl": full_url(base, s), "resource": shown(s), "search": {"mode": "include"}}
        for s in result.included
    ]
    issues = ignored_issues(q.ignored) + [
        {"severity": "warning", "code": "incomplete", "diagnostics": note}
        for note in result.notes]
    if issues:
        entries.append(outcome_entry(base, issues))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "timestamp": instant(now), "total": result.total, "link": links}
    if result.total is None:  # not counted: FHIR's Bundle.total is optional
        del bundle["total"]
    if entries:
        bundle["entry"] = entries
    return bundle


def history(base: str, items: list[Stored], total: int, path: str,
            params: list[tuple[str, str]], count: int, offset: int,
            now: datetime) -> dict[str, Any]:
    """A history Bundle, newest first, with paging links like a searchset's."""
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
                              "link": page_links(path, params, total, count, offset)}
    if entries:
        bundle["entry"] = entries
    return bundle
