"""REST for Subscription (R4, Subscriptions Backport IG): create (after a handshake with
the endpoint), read, search and delete one's own, `$status`. A Subscription is not
dossier data: it is kept in its own table and shown only to whoever created it (anyone
else gets the 404 of a subscription that does not exist). Every request is audited.
The events themselves: dossier/subscriptions.py."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import delete, insert, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from audit.transport import DeliveryError
from dossier.core.context import RequestContext, owner_of
from dossier.core.repository import Repository
from dossier.db.models import subscription_events, subscriptions
from dossier.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, Unprocessable
from dossier.fhir.bundles import instant, simple_searchset
from dossier.fhir.negotiate import negotiate
from dossier.fhir.routes import base_of, in_unit, runtime_of
from dossier.fhir.wire import check_content_type, fhir_response, parse_resource, read_body
from dossier.notify.worker import config_from_settings
from dossier.subscriptions import service as subs

router = APIRouter(prefix="/fhir/Subscription", tags=["subscriptions"],
                   dependencies=[Depends(negotiate)])
SUB = subscriptions.c
ID = re.compile(r"[0-9a-f]{32}")
SEARCH_PARAMS = frozenset({"status", "_format"})


def _begin(repo: Repository, action: str, interaction: str) -> None:
    repo.begin(action, "Subscription", interaction)
    if repo.ctx.principal.role not in subs.SUBSCRIBER_ROLES:
        raise Forbidden("Subscriptions are for hubs and practitioners.")


def _owned(repo: Repository, sub_id: str) -> Any:
    row = None
    if ID.fullmatch(sub_id):
        row = repo.session.execute(select(subscriptions).where(SUB.id == sub_id)).first()
    if row is None or row.owner != owner_of(repo.ctx.principal):
        raise NotFound("Subscription not found.")
    return row


def _shown(rt: Any, row: Any) -> dict[str, Any]:
    resource = dict(row.resource)
    resource["status"] = row.status
    resource["reason"] = subs.unseal(rt, row)["reason"]
    return resource


@router.post("")
async def create(request: Request) -> Response:
    check_content_type(request)
    services = runtime_of(request).services()
    body = parse_resource(await read_body(request, services.settings.max_body_bytes))
    config = config_from_settings(services.settings)
    sub_id = uuid.uuid4().hex
    base = base_of(request)

    def check(repo: Repository, ctx: RequestContext) -> subs.Request:
        _begin(repo, "create", "c")
        return subs.parse_request(body, ctx.now, allow_local=config.allow_local_webhooks)

    req = await in_unit(request, check, writes=False)
    try:  # outside any transaction: the endpoint may take seconds to answer
        await run_in_threadpool(subs.handshake, services, base, sub_id, req)
    except DeliveryError as exc:
        reason = exc.reason

        def refuse(repo: Repository, ctx: RequestContext) -> None:
            repo.begin("create", "Subscription", None)
            raise Unprocessable(f"The endpoint did not accept the handshake ({reason}); "
                                "nothing was created.",
                                expression=["Subscription.channel.endpoint"])
        await in_unit(request, refuse, writes=False)

    def store(repo: Repository, ctx: RequestContext) -> dict[str, Any]:
        _begin(repo, "create", "c")
        resource = subs.resource_of(sub_id, req, "active", ctx.now)
        repo.session.execute(insert(subscriptions).values(
            id=sub_id, owner=owner_of(ctx.principal),
            subscriber=subs.subscriber_claims(ctx.principal,
                                              subs.relay_org_of(repo.services, ctx.principal)),
            status="active",
            topic=subs.TOPIC, filters=[list(f) for f in req.filters],
            endpoint=req.endpoint, content=req.content,
            resource={k: v for k, v in resource.items() if k != "reason"},
            events_sent=0, failures=0, created_at=ctx.now, end_at=req.end,
            **subs.seal(repo.services, sub_id, req)))
        repo.note_access("create", "Subscription", sub_id, None)
        return resource

    resource = await in_unit(request, store, writes=True)
    return fhir_response(resource, 201, {
        "Location": f"{base}/Subscription/{sub_id}/_history/1", "ETag": 'W/"1"'})


@router.get("")
async def search(request: Request) -> Response:
    params = list(request.query_params.multi_items())

    def work(repo: Repository, ctx: RequestContext) -> dict[str, Any]:
        _begin(repo, "search", "s")
        for key, _ in params:
            if key not in SEARCH_PARAMS:
                raise BadRequest(f"The search parameter '{key[:64]}' is not supported on "
                                 "Subscription (use status).")
        wanted = [v for k, v in params if k == "status"]
        stmt = select(subscriptions).where(SUB.owner == owner_of(ctx.principal))
        if wanted:
            stmt = stmt.where(SUB.status.in_(",".join(wanted).split(",")))
        rows = repo.session.execute(stmt.order_by(SUB.created_at)).all()
        repo.note_access("search", "Subscription", None, None)
        found = [_shown(repo.services, r) for r in rows]
        return simple_searchset(ctx.base_url, "Subscription", found, len(found), params,
                                max(len(found), 1), 0, ctx.now)

    return fhir_response(await in_unit(request, work))


@router.get("/{sub_id}")
async def read(request: Request, sub_id: str) -> Response:
    def work(repo: Repository, ctx: RequestContext) -> dict[str, Any]:
        _begin(repo, "read", "r")
        row = _owned(repo, sub_id)
        repo.note_access("read", "Subscription", row.id, None)
        return _shown(repo.services, row)

    return fhir_response(await in_unit(request, work), headers={"ETag": 'W/"1"'})


@router.put("/{sub_id}")
async def update(request: Request, sub_id: str) -> Response:
    raise MethodNotAllowed("A Subscription cannot be changed here: delete it and create a "
                           "new one.", headers={"Allow": "GET, DELETE"})


@router.delete("/{sub_id}")
async def remove(request: Request, sub_id: str) -> Response:
    def work(repo: Repository, ctx: RequestContext) -> None:
        _begin(repo, "delete", "d")
        row = _owned(repo, sub_id)
        repo.session.execute(delete(subscription_events).where(
            subscription_events.c.subscription_id == row.id))
        repo.session.execute(delete(subscriptions).where(SUB.id == row.id))
        repo.note_access("delete", "Subscription", row.id, None)

    await in_unit(request, work)
    return Response(status_code=204)


@router.get("/{sub_id}/$status")
async def status(request: Request, sub_id: str) -> Response:
    def work(repo: Repository, ctx: RequestContext) -> dict[str, Any]:
        _begin(repo, "operation", "r")
        row = _owned(repo, sub_id)
        repo.note_access("operation", "Subscription", row.id, None, detail="status")
        status = subs.status_parameters(ctx.base_url, row.id, row.status, "query-status",
                                        row.events_sent, [])
        return {"resourceType": "Bundle", "type": "searchset", "timestamp": instant(ctx.now),
                "total": 1, "entry": [{"fullUrl": f"urn:uuid:{status['id']}",
                                       "resource": status, "search": {"mode": "match"}}]}

    return fhir_response(await in_unit(request, work))
