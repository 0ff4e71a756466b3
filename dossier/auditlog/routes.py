"""Proof endpoints, certificate-transparency style (SPEC §6, §12):
/audit/tree-head, /audit/public-key, /audit/proof/inclusion, /audit/proof/consistency.

Tree heads, the public key and consistency proofs carry no record content and are public.
An inclusion proof returns the record itself: only for the person it concerns, or an
auditor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from audit.checkpoint import public_jwk
from audit.proof import consistency_proof_json, inclusion_proof_json
from dossier.core.context import RequestContext
from dossier.core.repository import Repository
from dossier.core.runtime import Runtime
from dossier.errors import BadRequest, Forbidden, NotFound
from dossier.fhir.routes import in_unit

router = APIRouter(prefix="/audit")


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _int(request: Request, name: str) -> int:
    value = request.query_params.get(name)
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 15:
        raise BadRequest(f"'{name}' must be a whole number.")
    return int(value)


def _json(body: Any) -> Response:
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/tree-head")
async def tree_head(request: Request) -> Response:
    rt = _rt(request)

    def work() -> Any:
        with rt.system_session() as session:
            return rt.audit_store.tree_head(session)

    head = await run_in_threadpool(work)
    if head is None:
        raise NotFound("No tree head has been signed yet.")
    return _json(head)


@router.get("/public-key")
async def public_key(request: Request) -> Response:
    return _json(public_jwk(_rt(request).signer.public_key()))


@router.get("/proof/consistency")
async def consistency(request: Request) -> Response:
    rt = _rt(request)
    first, second = _int(request, "first"), _int(request, "second")

    def work() -> Any:
        with rt.system_session() as session:
            signed = rt.audit_store.signed_size(session)
            if not 0 <= first <= second <= signed:
                raise BadRequest("Need 0 <= first <= second <= the signed tree size.")
            path = rt.audit_store.consistency(session, first, second)
        return consistency_proof_json(first, second, path)

    return _json(await run_in_threadpool(work))


@router.get("/proof/inclusion")
async def inclusion(request: Request) -> Response:
    index, size = _int(request, "index"), _int(request, "tree_size")

    def work(repo: Repository, ctx: RequestContext) -> Any:
        """Through the unit like any read of the log: audited, and refused (503) when the
        record of this read cannot be written."""
        repo.begin("read", "AuditEvent", None)
        store, session = repo.services.audit_store, repo.session
        signed = store.signed_size(session)
        if not 0 <= index < size <= signed:
            raise BadRequest("Need 0 <= index < tree_size <= the signed tree size.")
        row = store.record_at(session, index)
        p = ctx.principal
        allowed = p.role == "auditor" or (
            p.role == "citizen" and row is not None and row.patient_id is not None
            and p.patient == f"Patient/{row.patient_id}")
        if row is None or not allowed:
            raise Forbidden("Inclusion proofs are given to the person the record concerns "
                            "and to auditors.")
        repo.note_access("read", "AuditEvent", row.id,
                         f"Patient/{row.patient_id}" if row.patient_id else None,
                         detail="inclusion-proof")
        leaf = store.leaf_of(session, row)  # the row holds the leaf bytes already
        assert leaf is not None
        return inclusion_proof_json(index, size, leaf, store.inclusion(session, index, size))

    return _json(await in_unit(request, work, writes=False))
