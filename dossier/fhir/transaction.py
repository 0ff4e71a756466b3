"""POST /fhir with a transaction (all-or-nothing) or batch (each entry on its own) Bundle."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError

from dossier.core.repository import EntryNotUndone, Repository, Stored, new_id
from dossier.domain.fragility import is_fragility_assessment
from dossier.errors import (
    BadRequest,
    DossierError,
    InternalError,
    PayloadTooLarge,
    Unprocessable,
)
from dossier.fhir.bundles import instant, searchset
from dossier.fhir.wire import etag, parse_if_match

MAX_ENTRIES = 500
URN = re.compile(r"^urn:uuid:[0-9a-fA-F-]{36}$")
_URL = re.compile(r"^([A-Z][A-Za-z]{1,63})(?:/([A-Za-z0-9\-.]{1,64})"
                  r"(?:/_history/(\d{1,9}))?)?(?:\?(.*))?$")


def process_bundle(repo: Repository, bundle: dict[str, Any], base: str) -> dict[str, Any]:
    btype = bundle.get("type")
    if bundle.get("resourceType") != "Bundle" or btype not in ("transaction", "batch"):
        raise BadRequest("POST /fhir takes a Bundle of type 'transaction' or 'batch'.")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be a list.")
    if len(entries) > MAX_ENTRIES:
        raise PayloadTooLarge(f"A Bundle may hold at most {MAX_ENTRIES} entries; this one "
                              f"holds {len(entries)}. Nothing was written: send it in "
                              "several Bundles.")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
            raise BadRequest(f"Bundle.entry[{i}] has no request.",
                             expression=[f"Bundle.entry[{i}].request"])
    if btype == "transaction":
        return _transaction(repo, entries, base)
    return _batch(repo, entries, base)


def _transaction(repo: Repository, entries: list[dict[str, Any]], base: str) -> dict[str, Any]:
    mapping = _assign_ids(entries)
    repo.deferred_refs = []
    responses: list[dict[str, Any]] = []
    with repo.buffered():  # all or nothing anyway: new rows go in together
        for i, entry in enumerate(entries):
            try:
                responses.append(_run(repo, _resolved(entry, mapping), base, mapping.get(
                    str(entry.get("fullUrl", "")))))
            except DossierError as exc:
                exc.message = f"Transaction failed at entry {i}: {exc.message}"
                exc.expression = [f"Bundle.entry[{i}]"] + [
                    f"Bundle.entry[{i}].resource." + e.split(".", 1)[-1]
                    for e in (exc.expression or [])]
                raise
    try:
        repo.check_deferred_references()
    except DossierError as exc:
        exc.message = f"Transaction failed: {exc.message}"
        raise
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}


def _batch(repo: Repository, entries: list[dict[str, Any]], base: str) -> dict[str, Any]:
    """Each entry stands alone: a failing one leaves nothing written, the others stay.
    The new rows of plain creates go in together at the end (repository `batch`), so a
    later entry's own reads in SQL (an organisation's members, say) do not see them yet;
    a batch's entries have no interdependencies (FHIR R4 Bundle rules)."""
    responses: list[dict[str, Any]] = []
    try:
        with repo.batch():
            for entry in entries:
                try:
                    with repo.entry(savepoint=not _plain_create(entry)):
                        responses.append(_run(repo, entry, base, None))
                except EntryNotUndone:
                    raise
                except DossierError as exc:
                    responses.append({"response": {
                        "status": f"{exc.status} {_reason(exc.status)}",
                        "outcome": exc.outcome()}})
    except IntegrityError:
        # the rows go in together: one broken constraint and none can be told apart
        raise InternalError("The rows of this batch could not be written (a database "
                            "constraint refused them): nothing of the Bundle was "
                            "written.") from None
    return {"resourceType": "Bundle", "type": "batch-response", "entry": responses}


# creates kept in a savepoint: a Consent writes the access index directly; a Patient or
# RelatedPerson is sealed (its person's data key may be stored) under the people rules
_NOT_PLAIN = frozenset({"Consent", "Patient", "RelatedPerson"})


def _plain_create(entry: dict[str, Any]) -> bool:
    """A POST whose failures all come before its rows leave the buffer: no savepoint
    needed (repository `entry`). A fragility assessment writes the Flag directly."""
    req, resource = entry["request"], entry.get("resource")
    return (req.get("method") == "POST" and req.get("ifNoneExist") is None
            and isinstance(resource, dict)
            and resource.get("resourceType") not in _NOT_PLAIN
            and not is_fragility_assessment(resource))


def _assign_ids(entries: list[dict[str, Any]]) -> dict[str, str]:
    """urn:uuid fullUrls of POST entries → the Type/id they will get."""
    mapping: dict[str, str] = {}
    for i, entry in enumerate(entries):
        full = entry.get("fullUrl")
        res = entry.get("resource")
        if isinstance(full, str) and URN.match(full) and isinstance(res, dict) and \
                entry["request"].get("method") == "POST":
            if full in mapping:
                raise BadRequest(f"Bundle.entry[{i}].fullUrl is used twice.")
            mapping[full] = f"{res.get('resourceType')}/{new_id()}"
    return mapping


def _resolved(entry: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if not mapping:
        return entry  # the parsed request body is ours: references are rewritten in place

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref in mapping:
                node["reference"] = mapping[ref]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(entry.get("resource"))
    return entry


def _run(repo: Repository, entry: dict[str, Any], base: str,
         assigned: str | None) -> dict[str, Any]:
    req = entry["request"]
    method = req.get("method")
    url = req.get("url")
    if not isinstance(url, str):
        raise BadRequest("Bundle.entry.request.url is missing.")
    m = _URL.match(url.removeprefix(base + "/").lstrip("/"))
    if not m:
        raise BadRequest("Bundle.entry.request.url is not a supported relative URL.")
    rtype, rid, vid, query = m.groups()
    resource = entry.get("resource")
    if method == "GET":
        if rid and vid:
            return _ok(repo.vread(rtype, rid, int(vid)), "200 OK")
        if rid:
            return _ok(repo.read(rtype, rid), "200 OK")
        raw = parse_qsl(query or "", keep_blank_values=True)
        result = repo.search(rtype, raw)
        return {"resource": searchset(base, result, raw, repo.ctx.now),
                "response": {"status": "200 OK"}}
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise BadRequest("Bundle.entry.resource is missing for a POST or PUT.")
    if method == "POST":
        if rid or query:
            raise BadRequest("A POST entry's url must be the resource type.")
        if resource is None or resource.get("resourceType") != rtype:
            raise Unprocessable("Bundle.entry.resource does not match the request url.")
        new = assigned.split("/", 1)[1] if assigned else None
        stored, created = repo.create(resource, if_none_exist=req.get("ifNoneExist"),
                                      resource_id=new)
        return _ok(stored, "201 Created" if created else "200 OK", location=True)
    if method == "PUT" and not rid and query:  # conditional update
        raw = parse_qsl(query, keep_blank_values=True)
        if_match = req.get("ifMatch")
        stored, created = repo.update_where(rtype, raw, resource or {}, if_match=(
            parse_if_match(if_match) if if_match else None))
        return _ok(stored, "201 Created" if created else "200 OK", location=True)
    if method == "DELETE" and not rid and query:  # conditional delete
        repo.delete_where(rtype, parse_qsl(query, keep_blank_values=True))
        return {"response": {"status": "204 No Content"}}
    if method == "PUT":
        if not rid:
            raise BadRequest("A PUT entry's url must be Type/id.")
        if_match = req.get("ifMatch")
        stored, created = repo.update(rtype, rid, resource or {},
                                      if_match=parse_if_match(if_match) if if_match else None)
        return _ok(stored, "201 Created" if created else "200 OK", location=True)
    if method == "DELETE":
        if not rid:
            raise BadRequest("A DELETE entry's url must be Type/id.")
        repo.delete(rtype, rid)
        return {"response": {"status": "204 No Content"}}
    raise BadRequest("Bundle.entry.request.method must be GET, POST, PUT or DELETE.")


def _ok(stored: Stored, status: str, location: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status, "etag": etag(stored.version_id),
                                "lastModified": instant(stored.last_updated)}
    if location:
        response["location"] = (f"{stored.resource_type}/{stored.id}/_history/"
                                f"{stored.version_id}")
    return {"resource": stored.resource, "response": response}


_REASONS: dict[int, str] = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
                            410: "Gone", 412: "Precondition Failed", 413: "Payload Too Large",
                            422: "Unprocessable Entity"}


def _reason(status: int) -> str:
    return _REASONS.get(status, "Error")


