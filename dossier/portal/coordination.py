"""Coordination pages (issue 18): the répertoire (for professionals and citizens: find a
service by need, place and language) and the professional inbox (messages addressed to
me, with what is new since my last visit). Both read through the unit, like /fhir."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

import schemas
from dossier.fhir.operations import Call
from dossier.notify.preferences import EMAIL_RE
from dossier.portal import codes, views
from dossier.portal.gateway import ApiError, call
from dossier.portal.i18n import N_
from dossier.portal.web import PageError, form_of, portal_of, redirect, render, signed_in
from dossier.search.params import ID_RE
from dossier.seed.territory import territory
from dossier.stores.pro_email import ProEmail

router = APIRouter(prefix="/portal", include_in_schema=False)
SERVICE_TYPE = schemas.code_system_url("service-type")
ELIGIBILITY = schemas.code_system_url("service-eligibility")
LANGUAGES = ("fr", "nl", "en", "es", "it", "pt", "ar", "tr", "ro", "pl", "bg", "ru", "uk")
LANGUAGE_NAMES = {
    "fr": N_("French"), "nl": N_("Dutch"), "en": N_("English"), "es": N_("Spanish"),
    "it": N_("Italian"), "pt": N_("Portuguese"), "ar": N_("Arabic"), "tr": N_("Turkish"),
    "ro": N_("Romanian"), "pl": N_("Polish"), "bg": N_("Bulgarian"), "ru": N_("Russian"),
    "uk": N_("Ukrainian")}
DAY_NAMES = {"mon": N_("Monday"), "tue": N_("Tuesday"), "wed": N_("Wednesday"),
             "thu": N_("Thursday"), "fri": N_("Friday"), "sat": N_("Saturday"),
             "sun": N_("Sunday")}
SEEN_COOKIE = "inbox_seen"  # when the inbox was last opened (no personal data)


def _places() -> list[tuple[str, str, int]]:
    """(id, name, depth) of the region, bassins and communes, in tree order."""
    found = {p["id"]: p for p in territory()}
    depth_of = {"region": 0, "bassin": 1, "commune": 2, "commune-part": 2}

    def level(p: dict[str, Any]) -> str:
        return str(p["type"][0]["coding"][0]["code"])

    def children(parent: str) -> list[dict[str, Any]]:
        return sorted((p for p in found.values() if (p.get("partOf") or {}).get(
            "reference") == f"Location/{parent}" and level(p) in depth_of),
            key=lambda p: str(p["name"]))

    out: list[tuple[str, str, int]] = []

    def walk(pid: str) -> None:
        place = found[pid]
        out.append((pid, str(place["name"]), depth_of[level(place)]))
        for child in children(pid):
            walk(child["id"])
    walk("brussels-region")
    return out


def _service_row(resource: dict[str, Any], lang: str, names: dict[str, str],
                 t: Any) -> dict[str, Any]:
    def coded(items: Any, system: str) -> list[str]:
        return [codes.label(system, c.get("code"), lang) for item in items or []
                for c in (item.get("coding") or []) if c.get("system") == system]
    languages = [c.get("code") for item in resource.get("communication") or []
                 for c in item.get("coding") or []]
    hours = []
    for slot in resource.get("availableTime") or []:
        days = ", ".join(t(DAY_NAMES.get(d, d)) for d in slot.get("daysOfWeek") or [])
        start, end = slot.get("availableStartTime", ""), slot.get("availableEndTime", "")
        hours.append(f"{days} {start[:5]}–{end[:5]}".strip())
    return {
        "name": resource.get("name", ""),
        "types": coded(resource.get("type"), SERVICE_TYPE),
        "areas": [names.get(str(a.get("reference", "")).split("/", 1)[-1], "")
                  for a in resource.get("coverageArea") or []],
        "languages": [t(LANGUAGE_NAMES[c]) if c in LANGUAGE_NAMES else c for c in languages],
        "eligibility": [label for e in resource.get("eligibility") or []
                        for label in coded([e.get("code")], ELIGIBILITY)],
        "telecom": [c.get("value") for c in resource.get("telecom") or [] if c.get("value")],
        "hours": hours, "comment": resource.get("comment", ""),
    }


@router.get("/services")
async def services(request: Request) -> Response:
    user = await signed_in(request, "citizen", "practitioner")
    gw = portal_of(request).gateway
    lang = user.t.lang
    wanted = {k: request.query_params.get(k, "") for k in ("type", "place", "language")}
    places = _places()
    names = {pid: name for pid, name, _ in places}
    query: list[tuple[str, str]] = [("_count", "50"), ("active", "true")]
    if wanted["type"] in codes.codes(SERVICE_TYPE):
        query.append(("type", f"{SERVICE_TYPE}|{wanted['type']}"))
    if wanted["place"] in names:  # what covers the place, a place inside it or above it
        query.append(("serves", f"Location/{wanted['place']}"))
    if wanted["language"] in LANGUAGE_NAMES:
        query.append(("language", wanted["language"]))
    searched = any(wanted.values())

    def work() -> list[dict[str, Any]]:
        if not searched:
            return []
        with gw.unit(user.ctx, writes=False) as repo:
            found = repo.search("HealthcareService", query)
        return [_service_row(s.resource or {}, lang, names, user.t) for s in found.matches]
    rows = await call(work)
    return render(request, "services.html", user, rows=rows, searched=searched,
                  wanted=wanted, types=codes.options(SERVICE_TYPE, lang),
                  places=places, spoken=[(c, user.t(n)) for c, n in LANGUAGE_NAMES.items()])


DECLINE = schemas.code_system_url("referral-decline-reason")
NOT_AVAILABLE = N_("This message is not available to you.")


def _message_row(resource: dict[str, Any], lang: str, names: dict[str, str | None],
                 seen: str) -> dict[str, Any]:
    category = resource["category"][0]["coding"][0]["code"]
    patient = str((resource.get("subject") or {}).get("reference", "")).split("/", 1)[-1]
    return {"kind": codes.label(schemas.COMMUNICATION_CATEGORY_SYSTEM, category, lang),
            "id": resource.get("id", ""),
            "code": category, "sent": resource.get("sent", ""), "patient": patient,
            "name": names.get(patient), "new": resource.get("sent", "") > seen,
            "reason": codes.label(schemas.code_system_url("referral-decline-reason"),
                                  ((resource.get("reasonCode") or [{}])[0].get("coding")
                                   or [{}])[0].get("code"), lang)}


@router.get("/pro/inbox")
async def inbox(request: Request) -> Response:
    user = await signed_in(request, "practitioner")
    gw = portal_of(request).gateway
    me = user.ctx.fhir_user or ""
    seen = request.cookies.get(SEEN_COOKIE, "")
    if not (len(seen) <= 40 and all(ch in "0123456789-T:.Z+" for ch in seen)):
        seen = ""

    notices: list[str] = []

    def work() -> list[dict[str, Any]]:
        with gw.unit(user.ctx, writes=False) as repo:
            chosen = repo.store(ProEmail).get(me)
            notices.append(chosen[0] if chosen else "")
            found = repo.search("Communication", [("recipient", me), ("_count", "100"),
                                                  ("_sort", "-sent")])
            people = {str((s.resource or {}).get("subject", {}).get("reference", ""))
                      for s in found.matches}
            names: dict[str, str | None] = {}
            if people:
                visible = repo.search("Patient", [("_id", ",".join(
                    sorted(p.split("/", 1)[1] for p in people if "/" in p))),
                    ("_count", "100")])
                names = {s.id: views.person_name(s.resource) for s in visible.matches}
        return [_message_row(s.resource or {}, user.t.lang, names, seen)
                for s in found.matches]
    rows = await call(work)
    unread = sum(1 for r in rows if r["new"])
    response = render(request, "pro/inbox.html", user, rows=rows, unread=unread,
                      total=len(rows), reasons=codes.options(DECLINE, user.t.lang),
                      notice_email=notices[0] if notices else "")
    now = user.ctx.now if isinstance(user.ctx.now, datetime) else datetime.now()
    response.set_cookie(SEEN_COOKIE, now.isoformat().replace("+00:00", "Z"),
                        path="/portal/pro", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", max_age=3600 * 24 * 365)
    return response


@router.post("/pro/notices")
async def notices(request: Request) -> Response:
    """Set or clear the address that hears of new inbox messages (no personal data goes
    there: one sentence and the link to the inbox)."""
    user = await signed_in(request, "practitioner")
    form = await form_of(request, user)
    email = str(form.get("email") or "").strip()
    if form.get("clear"):
        email = ""
    if email and (len(email) > 254 or not EMAIL_RE.fullmatch(email)):
        raise PageError(400, N_("This e-mail address is not valid. Write it as "
                                "name@example.be, or leave it empty."))
    gw = portal_of(request).gateway
    me = user.ctx.fhir_user or ""

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            store = repo.store(ProEmail)
            if email:
                store.set(me, email, user.t.lang, repo.ctx.now)
            else:
                store.clear(me)
    await call(work)
    return redirect(request, "/portal/pro/inbox", user, "settings-saved")


@router.post("/pro/inbox/{message_id}")
async def answer(request: Request, message_id: str) -> Response:
    """Answer a message: a discharge request (available or not) or a referral (accept, or
    decline with a reason). The same rules as the API: $discharge-confirm, a Task update."""
    user = await signed_in(request, "practitioner")
    form = await form_of(request, user)
    if not ID_RE.match(message_id):
        raise PageError(404, NOT_AVAILABLE)
    choice = str(form.get("answer") or "")
    reason = str(form.get("reason") or "")
    gw = portal_of(request).gateway

    def work() -> None:
        from dossier.coordination.discharge import confirm

        with gw.unit(user.ctx) as repo:
            note = repo.read("Communication", message_id).resource or {}
            kind = note["category"][0]["coding"][0]["code"]
            pid = str(note["subject"]["reference"]).split("/", 1)[1]
            about = str(note["about"][0].get("reference", ""))  # a referral's Task
            if kind == "discharge-request" and choice in ("yes", "no"):
                confirm(repo, Call("Patient", pid, [], {"resourceType": "Parameters",
                                                         "parameter": [
                    {"name": "request",
                     "valueReference": {"reference": f"Communication/{message_id}"}},
                    {"name": "available", "valueBoolean": choice == "yes"}]}, "POST"))
            elif kind == "referral" and choice in ("accepted", "rejected"):
                task = repo.read("Task", about.split("/", 1)[1]).resource or {}
                task.pop("meta", None)
                task["status"] = choice
                if choice == "rejected":
                    if reason not in codes.codes(DECLINE):
                        raise PageError(400, N_("Choose why the referral is declined."))
                    task["statusReason"] = {"coding": [{"system": DECLINE, "code": reason}]}
                repo.update("Task", task["id"], task)
            else:
                raise PageError(400, N_("Choose an answer from the list."))
    try:
        await call(work)
    except ApiError as error:
        if error.status in (403, 404, 410):
            raise PageError(404, NOT_AVAILABLE) from None
        if error.status == 422:
            raise PageError(409, N_("This was already answered or has changed.")) from None
        raise
    return redirect(request, "/portal/pro/inbox", user, "answer-sent")
