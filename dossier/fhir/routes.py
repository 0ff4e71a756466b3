"""FHIR REST routes under /fhir. Handlers only translate HTTP; all data work goes through
the Repository that Runtime.unit() builds for the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from sqlalchemy.util.concurrency import greenlet_spawn
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

import schemas
from auth import AuthError
from dossier.auditlog import events as auditevents
from dossier.core.context import RequestContext
from dossier.core.repository import Repository, Stored
from dossier.core.runtime import Runtime, StaleConnection
from dossier.errors import (
    BadRequest,
    DossierError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    from_auth,
)
from dossier.fhir import bundles, conformance, operations
from dossier.fhir.capability import capability_statement, smart_security
from dossier.fhir.negotiate import negotiate
from dossier.fhir.ops import people as people_ops
from dossier.fhir.patch import PATCH_TYPES, patcher
from dossier.fhir.subset import subset
from dossier.fhir.transaction import process_bundle
from dossier.fhir.wire import (
    check_content_type,
    etag,
    fhir_response,
    http_date,
    parse_if_match,
    parse_json,
    parse_resource,
    read_body,
)
from dossier.hubs import rosters
from dossier.search.params import ID_RE, SUMMARIES, parse_date, parse_elements

router = APIRouter(prefix="/fhir", dependencies=[Depends(negotiate)])
root_router = APIRouter()  # /.well-known/smart-configuration at the server's root too
# query parameters any interaction accepts and ignores (presentation only)
PRESENTATION = frozenset({"_format", "_pretty"})
ContextResolver = Callable[[Request], Any]


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def context(request: Request) -> RequestContext:
    resolver = request.app.state.resolve_context
    ctx: RequestContext = await resolver(request)
    return ctx


TYPE_METHODS = "GET, POST, PUT, DELETE, PATCH"  # search, create, conditional operations


def base_of(request: Request) -> str:
    """The configured base (DOSSIER_BASE_URL, else the bind address): never the Host
    header, which the client chooses (it would go into Location, fullUrl, export links)."""
    return runtime_of(request).settings.public_base.rstrip("/") + "/fhir"


def lenient(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "handling=lenient" in prefer.replace(" ", "")


def prefer_return(request: Request) -> str:
    """`Prefer: return=minimal | representation | OperationOutcome` (default
    representation)."""
    for part in request.headers.get("prefer", "").replace(" ", "").split(";"):
        for item in part.split(","):
            if item.lower().startswith("return="):
                value = item.split("=", 1)[1].strip('"')
                if value.lower() == "operationoutcome":
                    return "OperationOutcome"
                return value.lower()
    return "representation"


def wants_minimal(request: Request) -> bool:
    return prefer_return(request) == "minimal"


def no_query(request: Request, what: str) -> None:
    """A POST of a resource takes no search parameters: a query would otherwise be
    silently ignored (a client meaning a conditional create would get a duplicate)."""
    extra = [k for k in request.query_params if k not in PRESENTATION]
    if extra:
        raise BadRequest(f"{what} takes no URL parameters (got '{extra[0][:64]}'). For a "
                         "conditional create send the search in the If-None-Exist header.")


def search_params(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in PRESENTATION]


def shown(request: Request, resource: dict[str, Any]) -> dict[str, Any]:
    """`_summary` / `_elements` on a read (other parameters of a read are ignored)."""
    summary = request.query_params.get("_summary")
    elements = request.query_params.get("_elements")
    if summary is not None and summary not in SUMMARIES:
        raise BadRequest("_summary must be true, text, data, count or false.")
    if summary == "count":
        raise BadRequest("_summary=count is for searches.")
    return subset(resource, summary, parse_elements(elements) if elements else None)


def check_id(resource_id: str) -> None:
    if not ID_RE.match(resource_id):
        raise BadRequest("The id in the URL is not a valid FHIR id.")


def resource_response(request: Request, stored: Stored, status: int = 200,
                      location: bool = False, done: str | None = None) -> Response:
    """A resource, or what `Prefer: return=` asks for instead (for writes, `done` says
    what happened, for the OperationOutcome)."""
    headers = {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = (f"{base_of(request)}/{stored.resource_type}/{stored.id}"
                               f"/_history/{stored.version_id}")
    if done is not None:
        wanted = prefer_return(request)
        if wanted == "minimal":
            return Response(status_code=status, headers=headers)
        if wanted == "OperationOutcome":
            return fhir_response(information(
                f"{stored.resource_type}/{stored.id} {done} (version {stored.version_id})."),
                status, headers)
    assert stored.resource is not None
    return fhir_response(shown(request, stored.resource), status, headers)


def information(message: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": message}]}


async def in_unit(request: Request, work: Callable[[Repository, RequestContext], Any], *,
                  writes: bool | None = None, search: bool = False,
                  read_along: tuple[str, str] | None = None) -> Any:
    """Authenticate, open the request's unit and run `work(repo, ctx)` in it. On
    PostgreSQL the unit runs on the event loop: SQLAlchemy's greenlet bridge awaits each
    statement on psycopg's async connection, so no thread waits and none takes the
    interpreter lock from another (Runtime.on_loop). On SQLite it runs in one worker
    thread (one hop off the event loop). A GET, HEAD or search is a read unit; a unit
    first waits for its turn (Runtime.unit_gate or unit_limiter, a search
    Runtime.search_gate)."""
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
                with rt.unit(ctx, writes=writes, read_along=read_along) as repo:
                    return work(repo, ctx)
            except StaleConnection:
                if attempt == 2:
                    raise ServiceUnavailable("The database is not reachable; nothing was "
                                             "changed or returned. Try again.") from None
        raise AssertionError("unreachable")

    if rt.on_loop:  # PostgreSQL: on the event loop, each statement awaited (no thread)
        turn = rt.search_gate() if search else rt.unit_gate()
        if turn is None:
            return await greenlet_spawn(run)
        async with turn:
            return await greenlet_spawn(run)
    if not search:  # a read or write waits for one of the unit threads (Runtime.unit_limiter)
        return await anyio.to_thread.run_sync(run, limiter=rt.unit_limiter())
    gate = rt.search_gate()
    if gate is None:
        return await run_in_threadpool(run)
    async with gate:  # a search waits here, holding no thread (Runtime.search_gate)
        return await run_in_threadpool(run)


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    config = await smart_config(request)
    security = smart_security(config, cors=bool(runtime_of(request).settings.cors_origins))
    return fhir_response(capability_statement(base_of(request),
                                              operations.capability_entries(), security))


async def smart_config(request: Request) -> dict[str, Any] | None:
    """The SMART configuration: the embedded issuer's, or built from the external OpenID
    provider's metadata (None when it cannot be read right now)."""
    provider = getattr(request.app.state, "smart_configuration", None)
    if callable(provider):
        try:
            found = await run_in_threadpool(provider)
        except DossierError:
            return None
        return found if isinstance(found, dict) else None
    return provider if isinstance(provider, dict) else None


@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    """SMART App Launch discovery (public, application/json); also at the root."""
    return await smart_configuration_response(request)


async def smart_configuration_response(request: Request) -> Response:
    config = await smart_config(request)
    if not config:
        raise NotFound("The authorization server's metadata cannot be read right now.")
    return JSONResponse(config, headers={"Cache-Control": "max-age=300"})


@root_router.get("/.well-known/smart-configuration")
async def root_smart_configuration(request: Request) -> Response:
    return await smart_configuration_response(request)


@router.get("/OperationDefinition/{rid}")
@router.get("/SubscriptionTopic/{rid}")
@router.get("/SearchParameter/{rid}")
async def definition(request: Request, rid: str) -> Response:
    """Definitions this server publishes at their canonical URLs (public, like metadata)."""
    rtype = request.url.path.rstrip("/").split("/")[-2]
    found = conformance.definition(rtype, rid, base_of(request))
    if found is None:
        raise NotFound(f"No {rtype} with that id is published here.")
    return fhir_response(found)


@router.get("/OperationDefinition")
@router.get("/SubscriptionTopic")
@router.get("/SearchParameter")
async def definitions(request: Request) -> Response:
    rtype = request.url.path.rstrip("/").split("/")[-1]
    return fhir_response(conformance.search(rtype, base_of(request), search_params(request),
                                            lenient(request)))


@router.post("")
@router.post("/")
async def bundle(request: Request) -> Response:
    no_query(request, "POST /fhir")
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
    return await _search(request, rtype, search_params(request))


@router.post("/{rtype}/_search")
async def search_post(request: Request, rtype: str) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        raise BadRequest("POST _search takes application/x-www-form-urlencoded parameters.")
    from urllib.parse import parse_qsl

    body = await read_body(request, runtime_of(request).settings.max_body_bytes)
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if any("\x00" in k or "\x00" in v for k, v in form):  # as the guard does for URLs
        raise BadRequest("The search parameters contain a NUL character, which no "
                         "parameter value may hold.")
    raw = search_params(request) + [(k, v) for k, v in form if k not in PRESENTATION]
    return await _search(request, rtype, raw)


async def _search(request: Request, rtype: str, raw: list[tuple[str, str]],
                  compartment: str | None = None) -> Response:
    """A search; within a compartment (`GET /fhir/Patient/{id}/{type}`) the person is
    an extra `patient` condition and the paging links repeat the compartment URL."""
    if rtype == "AuditEvent":
        return await _search_audit(request, raw + ([("patient", compartment)]
                                                   if compartment else []))
    is_lenient = lenient(request)
    narrowed = raw + ([("patient", compartment)] if compartment else [])

    def work(repo: Repository, ctx: RequestContext) -> dict[str, Any]:
        path = f"{ctx.base_url}/{compartment}/{rtype}" if compartment else None
        return bundles.searchset(ctx.base_url, repo.search(rtype, narrowed,
                                                           lenient=is_lenient),
                                 raw, ctx.now, path=path)

    return fhir_response(await in_unit(request, work, writes=False, search=True))


@router.post("/{rtype}")
async def create(request: Request, rtype: str) -> Response:
    if rtype.startswith("$"):
        return await _operation(request, rtype, None)
    no_query(request, f"POST /fhir/{rtype[:64]}")
    check_content_type(request)
    body = parse_resource(await read_body(request, runtime_of(request).settings.max_body_bytes))
    if body.get("resourceType") != rtype:
        raise BadRequest(f"The body is not a {rtype[:64]} resource.")
    if_none_exist = request.headers.get("if-none-exist")

    def work(repo: Any, ctx: RequestContext) -> tuple[Stored, bool]:
        if rtype == "Group" and rosters.handles(ctx.principal):
            return rosters.create(repo, body), True  # a professional's Group is a roster
        if rtype == "Patient":  # one dossier per person (SPEC §13)
            stored, created = repo.open_dossier(body, if_none_exist)
            codes[:] = [people_ops.first_code(repo, stored, created)]
            return stored, created
        return repo.create(body, if_none_exist=if_none_exist)  # type: ignore[no-any-return]

    codes: list[str | None] = []
    stored, created = await in_unit(request, work, read_along=_dossier_of(rtype, body)
                                    if if_none_exist is None else None)
    response = resource_response(request, stored, 201 if created else 200, location=created,
                                 done="created" if created else "already exists")
    if codes and codes[0]:  # a pseudonymous dossier's one-time enrolment code, shown once
        response.headers["Dossier-Enrolment-Code"] = codes[0]
        response.headers["Cache-Control"] = "no-store"
    return response


def _dossier_of(rtype: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """("Patient", id) of the dossier a new entry goes in, read with the practitioner who
    writes it (Runtime.unit `read_along`: its row and Consents come in the statement that
    resolves the principal); None for a Patient, a roster or a directory resource."""
    if rtype in ("Patient", "Group"):
        return None
    reference = schemas.patient_of(body)
    return ("Patient", reference.split("/", 1)[1]) if reference is not None else None


@router.put("/{rtype}")
async def conditional_update(request: Request, rtype: str) -> Response:
    """`PUT /fhir/Type?search`: update the one match, create when none, 412 on several."""
    raw = search_params(request)
    if not raw:
        raise MethodNotAllowed("PUT needs a resource id (Type/id) or search parameters.",
                               headers={"Allow": TYPE_METHODS})
    check_content_type(request)
    body = parse_resource(await read_body(request, runtime_of(request).settings.max_body_bytes))
    header = request.headers.get("if-match")
    if_match = parse_if_match(header) if header else None
    stored, created = await in_unit(request, lambda repo, ctx: repo.update_where(
        rtype, raw, body, if_match=if_match))
    return resource_response(request, stored, 201 if created else 200, location=created,
                             done="created" if created else "updated")


@router.delete("/{rtype}")
async def conditional_delete(request: Request, rtype: str) -> Response:
    """`DELETE /fhir/Type?search`: delete the one match (204 also when none), 412 on
    several."""
    raw = search_params(request)
    if not raw:
        raise MethodNotAllowed("DELETE needs a resource id (Type/id) or search parameters.",
                               headers={"Allow": TYPE_METHODS})
    deleted = await in_unit(request, lambda repo, ctx: repo.delete_where(rtype, raw))
    return deleted_response(request, "deleted" if deleted else "matched nothing: nothing "
                            "was deleted")


@router.patch("/{rtype}")
async def conditional_patch(request: Request, rtype: str) -> Response:
    raw = search_params(request)
    if not raw:
        raise MethodNotAllowed("PATCH needs a resource id (Type/id) or search parameters.",
                               headers={"Allow": TYPE_METHODS})
    apply = await _patch_body(request)
    stored = await in_unit(request, lambda repo, ctx: repo.patch_where(rtype, raw, apply))
    return resource_response(request, stored, done="patched")


@router.patch("/{rtype}/{rid}")
async def patch(request: Request, rtype: str, rid: str) -> Response:
    """JSON Patch or JSON Merge Patch, through the Repository like an update."""
    check_id(rid)
    apply = await _patch_body(request)
    header = request.headers.get("if-match")
    if_match = parse_if_match(header) if header else None

    def work(repo: Repository, ctx: RequestContext) -> Stored:
        if rtype == "Group" and rosters.is_roster_id(rid) and rosters.handles(ctx.principal):
            raise MethodNotAllowed("A roster is replaced whole: use PUT.",
                                   headers={"Allow": "GET, PUT, DELETE"})
        return repo.patch(rtype, rid, apply, if_match=if_match)

    stored = await in_unit(request, work)
    return resource_response(request, stored, done="patched")


async def _patch_body(request: Request) -> Any:
    media = check_content_type(request, PATCH_TYPES)
    document = parse_json(await read_body(request, runtime_of(request).settings.max_body_bytes))
    return patcher(media, document)


def deleted_response(request: Request, what: str) -> Response:
    if prefer_return(request) == "OperationOutcome":
        return fhir_response(information(f"The resource was {what}."
                                         if what == "deleted" else f"The search {what}."))
    return Response(status_code=204)


@router.post("/{rtype}/{op}")
async def type_operation(request: Request, rtype: str, op: str) -> Response:
    """POST at type level is for operations ($locate, $export); nothing else is posted here."""
    if not op.startswith("$"):
        raise MethodNotAllowed("This method is not allowed on this URL.",
                               headers={"Allow": "GET, PUT, DELETE, PATCH"})
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


# The types whose `GET /fhir/{type}/{id}` is exactly `repo.read` (not the AuditEvent
# view, not a roster, not a published definition, not a Subscription).
PLAIN_READ_TYPES = frozenset(schemas.SUPPORTED_TYPES + schemas.SERVER_WRITTEN_TYPES) - {
    "AuditEvent", "Group"}


class ReadById(Route):
    """`GET /fhir/{type}/{id}` with no query, the most frequent request, matched before
    FastAPI's routes: the same negotiation, unit, `repo.read` and response as `read`
    above (no second path for consent or audit), without FastAPI's matching of every
    route and its dependency injection (docs/benchmarks.md, "CPU per read"). Any other
    shape (a query, an operation, a roster, HEAD) goes on to the routes below."""

    def __init__(self) -> None:
        super().__init__("/fhir/{rtype}/{rid}", read_by_id, methods=["GET"])
        self.methods = {"GET"}  # not HEAD (405 as on the route below; Allow headers)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        parts = _plain(scope, "GET", 4)
        if parts is None or parts[2] not in PLAIN_READ_TYPES or not ID_RE.match(parts[3]):
            return Match.NONE, {}
        return Match.FULL, {"endpoint": self.endpoint,
                            "path_params": {"rtype": parts[2], "rid": parts[3]}}


def _plain(scope: Scope, method: str, segments: int) -> list[str] | None:
    """The path's segments when the request is `method` on `/fhir/...` with `segments`
    parts and no query; else None (the request goes on to FastAPI's routes)."""
    if scope["type"] != "http" or scope["method"] != method or scope.get("query_string"):
        return None
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root + "/"):  # as Starlette's routes read the path
        path = path[len(root):]
    parts: list[str] = path.split("/")
    if len(parts) != segments or parts[1] != "fhir":
        return None
    return parts


async def read_by_id(request: Request) -> Response:
    await negotiate(request)
    rtype, rid = request.path_params["rtype"], request.path_params["rid"]
    stored = await in_unit(request, lambda repo, ctx: repo.read(rtype, rid),
                           read_along=(rtype, rid))  # the work is this one read
    return resource_response(request, stored)


# The types whose `POST /fhir/{type}` is `create` below (Subscription has its own route).
PLAIN_CREATE_TYPES = frozenset(schemas.SUPPORTED_TYPES) - {"Subscription"}


class CreateByType(Route):
    """`POST /fhir/{type}` with no query, matched before FastAPI's routes like ReadById:
    the very handler `create` (negotiation first, as the router's dependency does), without
    FastAPI's matching of every route and its dependency injection. Operations (`$name`),
    Subscription, a query and any other shape go on to the routes."""

    def __init__(self) -> None:
        super().__init__("/fhir/{rtype}", create_by_type, methods=["POST"])
        self.methods = {"POST"}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        parts = _plain(scope, "POST", 3)
        if parts is None or parts[2] not in PLAIN_CREATE_TYPES:
            return Match.NONE, {}
        return Match.FULL, {"endpoint": self.endpoint, "path_params": {"rtype": parts[2]}}


async def create_by_type(request: Request) -> Response:
    await negotiate(request)
    return await create(request, request.path_params["rtype"])


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
    return resource_response(request, stored, 201 if created else 200, location=created,
                             done="created" if created else "updated")


@router.delete("/{rtype}/{rid}")
async def delete(request: Request, rtype: str, rid: str) -> Response:
    check_id(rid)
    def work(repo: Repository, ctx: RequestContext) -> None:
        if _roster(rtype, rid, ctx, lambda: rosters.remove(repo, rid)) is None:
            repo.delete(rtype, rid)

    await in_unit(request, work)
    return deleted_response(request, "deleted")


@router.get("/{rtype}/{rid}/_history")
async def instance_history(request: Request, rtype: str, rid: str) -> Response:
    check_id(rid)
    return await _history(request, rtype, rid)


@router.get("/{rtype}/{rid}/_history/{vid}")
async def vread(request: Request, rtype: str, rid: str, vid: str) -> Response:
    check_id(rid)
    if not (vid.isascii() and vid.isdigit()) or len(vid) > 9:
        raise NotFound(f"No {rtype[:64]} resource with that id is available.")
    stored = await in_unit(request, lambda repo, ctx: repo.vread(rtype, rid, int(vid)))
    return resource_response(request, stored)


@router.api_route("/{rtype}/{rid}/{op}", methods=["GET", "POST"])
async def instance_operation(request: Request, rtype: str, rid: str, op: str) -> Response:
    check_id(rid)
    if rtype == "Patient" and not op.startswith("$"):
        if request.method != "GET":
            raise MethodNotAllowed("A compartment is searched with GET.",
                                   headers={"Allow": "GET"})
        return await _search(request, op, search_params(request),
                             compartment=f"Patient/{rid}")
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
        raise MethodNotAllowed(f"${name} does not accept {request.method}.",
                               headers={"Allow": ", ".join(sorted(found.methods))})
    body = None
    if request.method == "POST":
        raw_body = await read_body(request, runtime_of(request).settings.max_body_bytes)
        if raw_body.strip():
            check_content_type(request)
            body = parse_resource(raw_body)
    call = operations.Call(resource_type, rid, list(request.query_params.multi_items()),
                           body, request.method, prefer=request.headers.get("prefer", ""))

    def work(repo: Any, ctx: RequestContext) -> Any:
        # the scopes must allow what the operation declares: read or write
        found.check_scopes(request.method, ctx.principal, resource_type)
        return found.handler(repo, call)

    result = await in_unit(request, work, writes=found.writes(request.method))
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
    kept: list[tuple[str, str]] = []
    for key, value in request.query_params.multi_items():
        if key == "_since":
            since = parse_date(value).low
            kept.append((key, value))
        elif key == "_count":
            if not (value.isascii() and value.isdigit()) or len(value) > 9:
                raise BadRequest("_count must be a whole number.")
            count = int(value)
        elif key == "_offset":
            if not (value.isascii() and value.isdigit()) or len(value) > 9 \
                    or int(value) > 1_000_000:
                raise BadRequest("_offset must be a whole number.")
            offset = int(value)
        elif key not in PRESENTATION and not lenient(request):
            raise BadRequest(f"The history parameter '{key[:64]}' is not supported.")
    settings = runtime_of(request).settings
    size = min(settings.page_size_default if count is None else count, settings.page_size_max)
    path = "/".join(p for p in ("", rtype, rid, "_history") if p is not None)

    def work(repo: Any, ctx: RequestContext) -> dict[str, Any]:
        items, total = repo.history(rtype, rid, since=since, count=size, offset=offset)
        return bundles.history(ctx.base_url, items, total, f"{ctx.base_url}{path}", kept,
                               size, offset, ctx.now)

    return fhir_response(await in_unit(request, work))
