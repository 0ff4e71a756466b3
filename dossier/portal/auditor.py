"""The auditor's pages: the access log with filters and CSV export, the log's integrity,
and the review of every break-the-glass access.

A review (approved / flagged) is written to the access log itself, through the
Repository's audit sink, as an `operation` on `AuditEvent/<id>` whose detail says the
decision: append-only, signed, and checkable by anyone with the log. The queue covers
every emergency access in the log (dossier/stores/emergency_review.py), with a count of
those still unreviewed; the professional's sealed reason is opened for the auditor on
request, and that reading is itself recorded in the log.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
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
from dossier.stores.emergency_review import DECISIONS, REVIEW, EmergencyReview

router = APIRouter(prefix="/portal/audit", include_in_schema=False)
PAGE = 50
BATCH = 200
CSV_LIMIT = 100_000
QUEUE_SHOWN = 50
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
    return int(text) if text and (text.isascii() and text.isdigit()) and len(text) < 7 else 0


def _rows(repo: Any, events: list[dict[str, Any]], user: User) -> list[dict[str, Any]]:
    agents = {views.audit_agent(e)[0] or "" for e in events} - {""}
    names = directory.names_for(repo, agents, user.t.lang)
    organisations = directory.organisations_of(repo, agents)
    return [views.audit_row(e, names, organisations, user.t, "auditor") for e in events]


def _choices(repo: Any, user: User) -> dict[str, Any]:
    """The professionals (directory) and the dossiers of the log, to pick from."""
    listing = directory.listing(repo, user.t.lang)
    return {"professionals": listing["people"],
            "dossiers": repo.store(EmergencyReview).dossiers()}


# ------------------------------------------------------------------ the log
@router.get("")
async def log(request: Request) -> Response:
    user = await auditor(request)
    page = page_number(request.query_params.get("page"))
    try:
        values, raw = filters_of(request.query_params)
    except FormProblem as problem:
        values = {name: str(request.query_params.get(name) or "")[:80] for name in FIELDS}
        gw = portal_of(request).gateway

        def lists() -> dict[str, Any]:
            with gw.unit(user.ctx) as repo:
                return _choices(repo, user)
        return render(request, "audit/log.html", user, status=400, values=values,
                      problem=problem, rows=[], total=0, page=0, more=False, query="",
                      **await call(lists))
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            events, total, _, _ = auditevents.search_events(
                repo, store, [*raw, ("_count", str(PAGE)), ("_offset", str(page * PAGE))])
            return {"rows": _rows(repo, events, user), "total": total,
                    **_choices(repo, user)}
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
        t = user.t
        writer.writerow([t("Log index"), t("When"), t("Who"), t("Role"), t("Organisation"),
                         t("Dossier"), t("Action"), t("What"), t("Result"), t("Purpose"),
                         "agent", "action", "outcome", "purpose", "id"])
        with gw.unit(user.ctx) as repo:
            offset = 0
            while offset < CSV_LIMIT:
                events, total, _, _ = auditevents.search_events(
                    repo, store, [*raw, ("_count", str(BATCH)), ("_offset", str(offset))])
                for row in _rows(repo, events, user):
                    writer.writerow([csv_cell(v) for v in (
                        row["index"], row["when"], row["who"], row["role_label"],
                        row["organisation"], row["patient"], row["action_words"],
                        row["what_words"], row["outcome_label"], row["purpose_label"],
                        row["who_ref"], row["action"], row["outcome"], row["purpose"],
                        row["id"])])
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
@router.get("/break-glass")
async def review_queue(request: Request) -> Response:
    user = await auditor(request)
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            review = repo.store(EmergencyReview)
            every = review.emergency_ids()
            decisions = review.decisions()
            waiting_ids = [i for i in every if i not in decisions]
            done_ids = [i for i in every if i in decisions]
            shown = waiting_ids[:QUEUE_SHOWN] + done_ids[:QUEUE_SHOWN]
            events: list[dict[str, Any]] = []
            for start in range(0, len(shown), 100):
                found, _, _, _ = auditevents.search_events(repo, store, [
                    ("_id", ",".join(shown[start:start + 100])), ("_count", "100")])
                events += found
            rows = {str(r["id"]): r for r in _rows(repo, events, user)}
        for record_id, row in rows.items():
            row["decision"] = decisions.get(record_id, "")
        return {"waiting": [rows[i] for i in waiting_ids[:QUEUE_SHOWN] if i in rows],
                "done": [rows[i] for i in done_ids[:QUEUE_SHOWN] if i in rows],
                "unreviewed": len(waiting_ids), "total": len(every)}
    return render(request, "audit/break_glass.html", user, shown=QUEUE_SHOWN,
                  **await call(work))


@router.get("/break-glass/{record_id}")
async def reason(request: Request, record_id: str) -> Response:
    """The reason the professional gave, opened for the auditor; the reading is logged
    against the person (it is their sealed data)."""
    user = await auditor(request)
    if not ID_RE.match(record_id):
        raise PageError(404, N_("This entry is not an emergency access."))
    gw = portal_of(request).gateway
    store = gw.runtime.audit_store

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            events, _, _, _ = auditevents.search_events(repo, store, [("_id", record_id)])
            if not events or views.purpose(events[0]) != views.BTG:
                raise PageError(404, N_("This entry is not an emergency access."))
            row = _rows(repo, events, user)[0]
            who = row["who_ref"]
            at = datetime.fromisoformat(str(events[0].get("recorded")).replace("Z", "+00:00"))
            grant = repo.store(EmergencyReview).grant_for(row["patient"], who, at)
            text = None
            if grant is not None and grant.sealed_reason:
                opened = repo.sealer.open_fields(  # type: ignore[attr-defined]
                    repo.session, grant.patient_id, "BreakGlass", grant.id,
                    dict(grant.sealed_reason))
                text = str(opened.get("reason") or "")
                repo.note_access("read", "AuditEvent", record_id,
                                 f"Patient/{grant.patient_id}", detail="break-glass-reason")
            row["decision"] = repo.store(EmergencyReview).decisions().get(record_id, "")
        return {"row": row, "reason": text,
                "granted": user.t.moment(grant.granted_at) if grant else "",
                "expires": user.t.moment(grant.expires_at) if grant else ""}
    return render(request, "audit/break_glass_reason.html", user, **await call(work))


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
