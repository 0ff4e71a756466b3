"""FHIR REST routes under /fhir. Handlers only translate HTTP; all data work goes through
the Repository that Runtime.unit() builds for the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from auth import AuthError
from dossier.auditlog import events as auditevents
from dossier.core.context import RequestContext
from dossier.core.repository import Repository, Stored
from dossier.core.runtime import Runtime, StaleConnection
from dossier.errors import BadRequest, MethodNotAllowed, NotFound, ServiceUnavailable, from_auth
from dossier.fhir import bundles, operations
from dossier.fhir.capability import capability_statement
from dossier.fhir.transaction import process_bundle
from dossier.fhir.wire import (
    check_content_type,
    etag,
    fhir_response,
    http_date,
    parse_if_match,
    parse_resource,
    read_body,
)
from dossier.hubs import rosters
from dossier.search.params import ID_RE, parse_date

router = APIRouter(prefix="/fhir")
ContextResolver = Callable[[Request], Any]


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def context(request: Request) -> RequestContext:
    resolver = request.app.state.resolve_context
    ctx: RequestContext = await resolver(request)
    return ctx


def base_of(request: Request) -> str:
    rt = runtime_of(request)
    if rt.settings.base_url:
        return rt.settings.base_url + "/fhir"
    return str(request.base_url).rstrip("/") + "/fhir"


def lenient(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "handling=lenient" in prefer.replace(" ", "")


def wants_minimal(request: Request) -> bool:
    return "return=minimal" in request.headers.get("prefer", "").replace(" ", "")


def check_id(resource_id: str) -> None:
    if not ID_RE.match(resource_id):
        raise BadRequest("The id in the URL is not a valid FHIR id.")


def resource_response(request: Request, stored: Stored, status: int = 200,
                      location: bool = False) -> Response:
    headers = {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = (f"{base_of(request)}/{stored.resource_type}/{stored.id}"
                               f"/_history/{stored.version_id}")
    if wants_minimal(request):
        return Response(status_code=status, headers=headers)
    return fhir_response(stored.resource, status, headers)


async def in_unit(request: Request, work: Callable[[Repository, RequestContext], Any], *,
                  writes: bool | None = None) -> Any:
    """Authenticate, open the request's unit and run `work(repo, ctx)` in it — all in one
    worker thread (one hop off the event loop). A GET, HEAD or search is a read unit."""
    rt = runtime_of(request)
    authenticate = request.app.state.authenticate
    header = request.headers.get("authorization")
    base = base_of(request)
    if writes is None:
        writes = request.method not in ("GET", "HEAD")

    def run() -> Any:
        for attempt in (1, 2):
            try:
                ctx: RequestContext = authenticate(header)
            except AuthError as error:
                raise from_auth(error) from None
            ctx.base_url = base
            try:
                with rt.unit(ctx, writes=writes) as repo:
                    return work(repo, ctx)
            except StaleConnection:
                if attempt == 2:
                    raise ServiceUnavailable("The database is not reachable; nothing was "
                                             "changed or returned. Try again.") from None
        raise AssertionError("unreachable")

    return await run_in_threadpool(run)


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    security = getattr(request.app.state, "capability_security", None)
    return fhir_response(capability_statement(base_of(request),
                                              operations.capability_entries(), security))


@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    """SMART App Launch discovery (public), from the embedded issuer when it runs."""
    config = getattr(request.app.state, "smart_configuration", None)
    if not config:
        raise NotFound("Discover the authorization server from your OpenID provider.")
    from starlette.responses import JSONResponse

    return JSONResponse(config)


@router.post("")
@router.post("/")
async def bundle(request: Request) -> Response:
    check_content_type(request)
    body = parse_resource(await read_body(request, runtime_of(request).settings.max_body_bytes))
    result = await in_unit(request, lambda repo, ctx: process_bundle(
        repo, body, ctx.base_url))
    return fhir_response(result)


@router.get("/_history")
async def system_history(request: Request) -> Response:
    return await _history(request, None, None)


@router.get("/{rtype}")
async def search(request: Request, rtype: str) -> Response:
    if rtype.startswith("$"):
        return await _operation(request, rtype, None)  # system-level operation
    return await _search(request, rtype, list(request.query_params.multi_items()))


@router.post("/{rtype}/_search")
async def search_post(request: Request, rtype: str) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        raise BadRequest("POST _search takes application/x-www-form-urlencoded parameters.")
    from urllib.parse import parse_qsl

    body = await read_body(request, runtime_of(request).settings.max_body_bytes)
    raw = list(request.query_params.multi_items()) + parse_qsl(
        body.decode("utf-8", "replace"), keep_blank_values=True)
    return await _search(request, rtype, raw)


async def _search(request: Request, rtype: str, raw: list[tuple[str, str]]) -> Response:
    if rtype == "AuditEvent":
        return await _search_audit(request, raw)
    is_lenient = lenient(request)
    result = await in_unit(request, lambda repo, ctx: bundles.searchset(
        ctx.base_url, repo.search(rtype, raw, lenient=is_lenient), raw, ctx.now),
        writes=False)
    return fhir_response(result)


@router.post("/{rtype}")
async def create(request: Request, rtype: str) -> Response:
    if rtype.startswith("$"):
        return await _operation(request, rtype, None)
    check_content_type(request)
    body = parse_resource(await read_body(request, runtime_of(request).settings.max_body_bytes))
    if body.get("resourceType") != rtype:
        raise BadRequest(f"The body is not a {rtype[:64]} resource.")
    if_none_exist = request.headers.get("if-none-exist")

    def work(repo: Any, ctx: RequestContext) -> tuple[Stored, bool]:
        if rtype == "Group" and rosters.handles(ctx.principal):
            return rosters.create(repo, body), True  # a professional's Group is a roster
        return repo.create(body, if_none_exist=if_none_exist)  # type: ignore[no-any-return]

    stored, created = await in_unit(request, work)
    return resource_response(request, stored, 201 if created else 200, location=created)


@router.post("/{rtype}/{op}")
async def type_operation(request: Request, rtype: str, op: str) -> Response:
    """POST at type level is for operations ($locate, $export); nothing else is posted here."""
    if not op.startswith("$"):
        raise MethodNotAllowed("This method is not allowed on this URL.")
    return await _operation(request, rtype, None, op=op)


@router.get("/{rtype}/_history")
async def type_history(request: Request, rtype: str) -> Response:
    return await _history(request, rtype, None)


@router.get("/{rtype}/{rid}")
async def read(request: Request, rtype: str, rid: str) -> Response:
    if rid.startswith("$"):
        return await _operation(request, rtype, None, op=rid)
    check_id(rid)
    if rtype == "AuditEvent":
        return fhir_response(await in_unit(
            request, lambda repo, ctx: auditevents.read_event(
                repo, repo.services.audit_store, rid)))
    stored = await in_unit(request, lambda repo, ctx: _roster(
        rtype, rid, ctx, lambda: rosters.read(repo, rid)) or repo.read(rtype, rid))
    return resource_response(request, stored)


def _roster(rtype: str, rid: str, ctx: RequestContext, work: Callable[[], Any]) -> Any:
    """A roster interaction when the URL names a roster and the caller may keep one (a
    roster that is not theirs: the 404 of a missing Group); None otherwise, and then the
    directory answers."""
    if rtype == "Group" and rosters.is_roster_id(rid) and rosters.handles(ctx.principal):
        done = work()
        if not done:
            raise NotFound("No Group resource with that id is available.")
        return done
    return None


@router.put("/{rtype}/{rid}")
async def update(request: Request, rtype: str, rid: str) -> Response:
    check_id(rid)
    check_content_type(request)
    body = parse_resource(await read_body(request, runtime_of(request).settings.max_body_bytes))
    header = request.headers.get("if-match")
    if_match = parse_if_match(header) if header else None

    def work(repo: Any, ctx: RequestContext) -> tuple[Stored, bool]:
        stored = _roster(rtype, rid, ctx, lambda: rosters.replace(repo, rid, body))
        if stored is not None:
            return stored, False
        return repo.update(rtype, rid, body, if_match=if_match)  # type: ignore[no-any-return]

    stored, created = await in_unit(request, work)
    return resource_response(request, stored, 201 if created else 200, location=created)


@router.delete("/{rtype}/{rid}")
async def delete(request: Request, rtype: str, rid: str) -> Response:
    check_id(rid)
    def work(repo: Repository, ctx: RequestContext) -> None:
        if _roster(rtype, rid, ctx, lambda: rosters.remove(repo, rid)) is None:
            repo.delete(rtype, rid)

    await in_unit(request, work)
    return Response(status_code=204)


@router.get("/{rtype}/{rid}/_history")
async def instance_history(request: Request, rtype: str, rid: str) -> Response:
    check_id(rid)
    return await _history(request, rtype, rid)


@router.get("/{rtype}/{rid}/_history/{vid}")
async def vread(request: Request, rtype: str, rid: str, vid: str) -> Response:
    check_id(rid)
    if not vid.isdigit() or len(vid) > 9:
        raise NotFound(f"No {rtype[:64]} resource with that id is available.")
    stored = await in_unit(request, lambda repo, ctx: repo.vread(rtype, rid, int(vid)))
    return resource_response(request, stored)


@router.api_route("/{rtype}/{rid}/{op}", methods=["GET", "POST"])
async def instance_operation(request: Request, rtype: str, rid: str, op: str) -> Response:
    check_id(rid)
    return await _operation(request, rtype, rid, op=op)


async def _operation(request: Request, rtype: str, rid: str | None,
                     op: str | None = None) -> Response:
    name = (op or rtype).removeprefix("$")
    if not (op or rtype).startswith("$"):
        raise NotFound("Unknown URL.")
    level = "instance" if rid else ("type" if op else "system")
    resource_type = rtype if op else None
    found = operations.find(name, level, resource_type)
    if found is None:
        raise NotFound(f"The operation ${name[:64]} is not supported here.")
    if request.method not in found.methods:
        raise MethodNotAllowed(f"${name} does not accept {request.method}.")
    body = None
    if request.method == "POST":
        raw_body = await read_body(request, runtime_of(request).settings.max_body_bytes)
        if raw_body.strip():
            check_content_type(request)
            body = parse_resource(raw_body)
    call = operations.Call(resource_type, rid, list(request.query_params.multi_items()),
                           body, request.method)
    result = await in_unit(request, lambda repo, ctx: found.handler(repo, call),
                           writes=found.writes(request.method))
    if isinstance(result, Response):
        return result
    return fhir_response(result)


async def _search_audit(request: Request, raw: list[tuple[str, str]]) -> Response:
    def work(repo: Any, ctx: RequestContext) -> dict[str, Any]:
        events, total, count, offset = auditevents.search_events(
            repo, repo.services.audit_store, raw)
        params = [(k, v) for k, v in raw if k not in ("_count", "_offset")]
        return bundles.simple_searchset(ctx.base_url, "AuditEvent", events, total, params,
                                        count, offset, ctx.now)

    return fhir_response(await in_unit(request, work, writes=False))


async def _history(request: Request, rtype: str | None, rid: str | None) -> Response:
    since = None
    count = None
    offset = 0
    for key, value in request.query_params.multi_items():
        if key == "_since":
            since = parse_date(value).low
        elif key == "_count":
            if not value.isdigit():
                raise BadRequest("_count must be a whole number.")
            count = int(value)
        elif key == "_offset":
            if not value.isdigit():
                raise BadRequest("_offset must be a whole number.")
            offset = int(value)
        elif key != "_format" and not lenient(request):
            raise BadRequest(f"The history parameter '{key[:64]}' is not supported.")
    self_url = str(request.url)

    def work(repo: Any, ctx: RequestContext) -> dict[str, Any]:
        items, total = repo.history(rtype, rid, since=since, count=count, offset=offset)
        return bundles.history(ctx.base_url, items, total, self_url, ctx.now)

    return fhir_response(await in_unit(request, work))
