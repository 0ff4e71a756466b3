"""The auditor's pages: the access log with filters and CSV export, the log's integrity,
and the review of every break-the-glass access.

A review (approved / flagged) is written to the access log itself, through the
Repository's audit sink, as an `operation` on `AuditEvent/<id>` whose detail says the
decision: append-only, signed, and checkable by anyone with the log. It is read back from
the signed leaf (the inclusion proof's `leaf`), so it shows once the sequencer has sealed
it. A dedicated review table would be simpler to query (see the report).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from dossier.auditlog import events as auditevents
from dossier.core.repository import AuditNote
from dossier.portal import names as directory
from dossier.portal import views
from dossier.portal.citizen import proof_receipt
from dossier.portal.consents import FormProblem
from dossier.portal.gateway import ApiError, call
from dossier.portal.i18n import N_
from dossier.portal.web import PageError, User, form_of, portal_of, redirect, render, signed_in
from dossier.search.params import ID_RE

router = APIRouter(prefix="/portal/audit", include_in_schema=False)
PAGE = 50
BATCH = 200
CSV_LIMIT = 100_000
SCAN_LIMIT = 2_000
REVIEW = "break-glass-review:"
DECISIONS = ("approved", "flagged")
AGENT_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")
FIELDS = ("from", "to", "agent", "patient", "outcome", "action")


async def auditor(request: Request) -> User:
    return await signed_in(request, "auditor")


def filters_of(query: Any) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The filter form's values and the AuditEvent search parameters they mean."""
    values = {name: str(query.get(name) or "").strip()[:80] for name in FIELDS}
    raw: list[tuple[str, str]] = []
    for name, prefix in (("from", "ge"), ("to", "le")):
        if values[name]:
            try:
                date.fromisoformat(values[name])
            except ValueError:
                raise FormProblem(name, N_("Write the date as year-month-day, for example "
                                           "2027-01-31.")) from None
            raw.append(("date", prefix + values[name]))
    if values["agent"]:
        if not AGENT_RE.match(values["agent"]):
            raise FormProblem("agent", N_("Write who acted as a reference, for example "
                                          "Practitioner/123."))
        raw.append(("agent", values["agent"]))
    if values["patient"]:
        if not ID_RE.match(values["patient"].removeprefix("Patient/")):
            raise FormProblem("patient", N_("Write the dossier number."))
        raw.append(("patient", values["patient"].removeprefix("Patient/")))
    if values["outcome"]:
        if values["outcome"] not in views.AUDIT_OUTCOMES:
            raise FormProblem("outcome", N_("Choose an answer from the list."))
        raw.append(("outcome", values["outcome"]))
    if values["action"]:
        if values["action"] not in views.AUDIT_ACTIONS:
            raise FormProblem("action", N_("Choose an answer from the list."))
        raw.append(("action", values["action"]))
    return values, raw


def page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else 0


def _rows(repo: Any, events: list[dict[str, Any]], user: User) -> list[dict[str, Any]]:
    agents = {views.audit_agent(e)[0] or "" for e in events} - {""}
    names = directory.names_for(repo, agents, user.t.lang)
    organisations = directory.organisations_of(repo, agents)
    return [views.audit_row(e, names, organisations, user.t) for e in events]


# ------------------------------------------------------------------ the log
@router.get("")
async def log(request: Request) -> Response:
    user = await auditor(request)
    page = page_number(request.query_params.get("page"))
    try:
        values, raw = filters_of(request.query_params)
    except FormProblem as problem:
        values = {name: str(request.query_params.get(name) or "")[:80] for name in FIELDS}
        return render(request, "audit/log.html", user, status=400, values=values,
                      problem=problem, rows=[], total=0, page=0, more=False, query="")
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            events, total, _, _ = auditevents.search_events(
                repo, store, [*raw, ("_count", str(PAGE)), ("_offset", str(page * PAGE))])
            return {"rows": _rows(repo, events, user), "total": total}
    data = await call(work)
    query = urlencode({k: v for k, v in values.items() if v})
    return render(request, "audit/log.html", user, values=values, problem=None, page=page,
                  more=(page + 1) * PAGE < data["total"], query=query, **data)


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/export.csv")
async def export(request: Request) -> Response:
    user = await auditor(request)
    try:
        _, raw = filters_of(request.query_params)
    except FormProblem as problem:
        raise PageError(400, problem.message) from None
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["log_index", "recorded", "agent", "role", "organisation", "patient",
                         "action", "outcome", "purpose", "resource_types", "id"])
        with gw.unit(user.ctx) as repo:
            offset = 0
            while offset < CSV_LIMIT:
                events, total, _, _ = auditevents.search_events(
                    repo, store, [*raw, ("_count", str(BATCH)), ("_offset", str(offset))])
                agents = {views.audit_agent(e)[0] or "" for e in events} - {""}
                organisations = directory.organisations_of(repo, agents)
                for e in events:
                    row = views.audit_row(e, {}, organisations, user.t)
                    writer.writerow([csv_cell(v) for v in (
                        row["index"], row["recorded"], row["who_ref"], row["role"],
                        row["organisation"], row["patient"], row["action"], row["outcome"],
                        row["purpose"], " ".join(row["targets"]), row["id"])])
                offset += BATCH
                if not events or offset >= total:
                    break
        return out.getvalue()
    text = await call(work)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'})


@router.get("/receipt/{record_id}")
async def receipt(request: Request, record_id: str) -> Response:
    user = await auditor(request)
    return await proof_receipt(request, user, record_id)


# ------------------------------------------------------------------ integrity
async def _head(request: Request, user: User) -> dict[str, Any] | None:
    gw = portal_of(request).gateway
    try:
        head: dict[str, Any] = await gw.audit_json("tree-head", user.session.token)
    except ApiError as error:
        if error.status == 404:
            return None
        raise
    return head


@router.get("/integrity")
async def integrity(request: Request) -> Response:
    user = await auditor(request)
    return render(request, "audit/integrity.html", user, head=await _head(request, user),
                  result=None)


@router.post("/integrity")
async def verify(request: Request) -> Response:
    user = await auditor(request)
    await form_of(request, user)
    gw = portal_of(request).gateway
    key = await gw.audit_json("public-key", user.session.token)
    rt = gw.runtime

    def work() -> dict[str, Any]:
        with Session(rt.engine) as session:
            result = rt.audit_store.verify(session, key)
        return {"ok": result.ok, "first_bad_index": result.first_bad_index,
                "detail": result.detail}
    result = await call(work)
    return render(request, "audit/integrity.html", user, head=await _head(request, user),
                  result=result)


# ------------------------------------------------------------------ break-the-glass review
async def _decisions(request: Request, user: User,
                     reviews: list[tuple[str, int | None]]) -> dict[str, str]:
    """Reviewed record id → decision, read from each review's signed leaf."""
    gw = portal_of(request).gateway
    head = await _head(request, user)
    size = int(head["tree_size"]) if head else 0
    decisions: dict[str, str] = {}
    for reviewed, index in reviews:
        if index is None or index >= size:
            decisions.setdefault(reviewed, "pending")
            continue
        proof = await gw.audit_json("inclusion", user.session.token,
                                    f"index={index}&tree_size={size}")
        record = json.loads(base64.b64decode(proof["leaf"]))
        for event in record.get("events") or []:
            detail = str(event.get("detail") or "")
            if detail.startswith(REVIEW) and detail[len(REVIEW):] in DECISIONS:
                decisions[reviewed] = detail[len(REVIEW):]
    return decisions


@router.get("/break-glass")
async def review_queue(request: Request) -> Response:
    user = await auditor(request)
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> tuple[list[dict[str, Any]], list[tuple[str, int | None]]]:
        found: list[dict[str, Any]] = []
        reviews: list[tuple[str, int | None]] = []
        with gw.unit(user.ctx) as repo:
            for offset in range(0, SCAN_LIMIT, BATCH):
                events, total, _, _ = auditevents.search_events(
                    repo, store, [("_count", str(BATCH)), ("_offset", str(offset))])
                for event in events:
                    if views.purpose(event) == views.BTG or views.is_assisted(event):
                        found.append(event)
                    elif views.audit_agent(event)[1] == "auditor" and \
                            event.get("action") == "E" and views.reviewed_record(event):
                        reviews.append((str(views.reviewed_record(event)),
                                        views.log_index(event)))
                if offset + BATCH >= total:
                    break
            return _rows(repo, found, user), reviews
    rows, reviews = await call(work)
    decisions = await _decisions(request, user, reviews)
    for row in rows:
        row["decision"] = decisions.get(str(row["id"]), "")
    waiting = [r for r in rows if not r["decision"]]
    done = [r for r in rows if r["decision"]]
    return render(request, "audit/break_glass.html", user, waiting=waiting, done=done,
                  limit=SCAN_LIMIT)


@router.post("/break-glass/{record_id}")
async def review(request: Request, record_id: str) -> Response:
    user = await auditor(request)
    form = await form_of(request, user)
    decision = str(form.get("decision") or "")
    if decision not in DECISIONS or not ID_RE.match(record_id):
        raise PageError(400, N_("Choose an answer from the list."))
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            events, _, _, _ = auditevents.search_events(repo, store, [("_id", record_id)])
            if not events or not (views.purpose(events[0]) == views.BTG
                                  or views.is_assisted(events[0])):
                raise PageError(400, N_("This entry is not an emergency access."))
            repo.audit.record(repo.session, repo.ctx, AuditNote(
                "operation", "AuditEvent", record_id, set(), "success",
                detail=REVIEW + decision))
    await call(work)
    return redirect(request, "/portal/audit/break-glass", user, "review-saved")
