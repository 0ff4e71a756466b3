"""People reach their dossier in the portal (SPEC §13).

Citizen (/portal/me/people): act for a person one represents, name or remove a
mandataire or a personne de confiance, refuse assisted consent, withdraw an assisted
consent in one step, answer professionals' requests for access.
Professional (/portal/pro/find): find a person by national number (opening their one
dossier), ask for access, record an assisted consent, start break-the-glass.
Forms pre-select nothing and show a summary in words before anything is saved."""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from dossier.domain.people import MANDATE_URL, relationship_of
from dossier.fhir import operations
from dossier.fhir.ops import people as ops
from dossier.portal import codes
from dossier.portal.consents import FormProblem
from dossier.portal.gateway import ApiError, call
from dossier.portal.i18n import N_
from dossier.portal.web import (
    ACTING_COOKIE,
    FLASH,
    NAV,
    PREFIX,
    PageError,
    User,
    form_of,
    portal_of,
    redirect,
    render,
    signed_in,
)
from dossier.stores.access_requests import AccessRequests
from dossier.stores.people_choices import AssistedRefusals
from schemas.rules import valid_ssin

router = APIRouter(prefix="/portal", include_in_schema=False)
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
ROLE_CODES = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
MANDATES = {"decide": N_("decides for me (mandataire): grants, narrows and withdraws access"),
            "see": N_("sees my dossier and its log, changes nothing (personne de confiance)")}

NAV["citizen"].append((f"{PREFIX}/me/people", N_("People who act for me")))
NAV["practitioner"].insert(1, (f"{PREFIX}/pro/find", N_("Find a person")))
FLASH.update({
    "representative-named": N_("Done. This person can now sign in and act within the "
                               "mandate you gave."),
    "representative-removed": N_("Done. This person no longer acts for you."),
    "assisted-saved": N_("Done. Your choice about consents recorded by a professional is "
                         "saved."),
    "request-answered": N_("Done. Your answer is saved."),
    "access-requested": N_("Your request is sent if this person has a dossier. You will see "
                           "the dossier once they grant access."),
    "assisted-recorded": N_("The consent is recorded. The person is told at once and can "
                            "withdraw it in one step."),
    "enrolled": N_("Done. Your sign-in now opens this dossier."),
})


def _categories(user: User) -> list[tuple[str, str]]:
    return codes.options(codes.CATEGORY_SYSTEM, user.t.lang, codes.CATEGORIES)


def _chosen(form: Any, user: User) -> list[str]:
    allowed = dict(_categories(user))
    return [c for c in form.getlist("category") if c in allowed]


def _in_words(user: User, categories: list[str]) -> str:
    labels = dict(_categories(user))
    return ", ".join(labels[c] for c in categories)


# ================================================================ the citizen
async def _citizen(request: Request) -> User:
    return await signed_in(request, "citizen")


def _people_data(user: User, gw: Any) -> dict[str, Any]:
    with gw.unit(user.ctx) as repo:
        p = repo.ctx.principal
        own = p.patient.split("/", 1)[1] if p.patient else ""
        shown = user.patient_id or own
        represented = [{"id": r.patient.split("/", 1)[1], "mandate": r.mandate,
                        "in_force": r.in_force} for r in p.represents]
        for entry in represented:
            person = repo.server_read("Patient", entry["id"]) or {}
            entry["name"] = _name(person)
        data: dict[str, Any] = {"own": own, "shown": shown, "represented": represented,
                                "acting": bool(shown and shown != own),
                                "representatives": [], "assisted": [], "requests": [],
                                "refused": False}
        if not shown or shown != own:
            return data
        related = repo.search("RelatedPerson", [("patient", f"Patient/{own}"),
                                                 ("_count", "100")])
        for stored in related.matches:
            res = stored.resource or {}
            if relationship_of(res) in ("POWATT", "GUARD", "PRN"):
                data["representatives"].append({
                    "id": stored.id, "name": _name(res), "relationship": relationship_of(res),
                    "mandate": next((e.get("valueCode") for e in res.get("extension") or []
                                     if e.get("url") == MANDATE_URL), ""),
                    "end": (res.get("period") or {}).get("end", "")})
        consents = repo.search("Consent", [("patient", f"Patient/{own}"), ("_count", "100")])
        for stored in consents.matches:
            res = stored.resource or {}
            if res.get("verification") and res.get("status") == "active":
                data["assisted"].append({
                    "id": stored.id,
                    "by": ((res.get("performer") or [{}])[0]).get("reference", ""),
                    "categories": _in_words(user, [
                        s.get("code") for s in (res.get("provision") or {}).get(
                            "securityLabel") or [] if s.get("code") in codes.CATEGORIES])})
        data["refused"] = repo.store(AssistedRefusals).refused(own)
        data["requests"] = [{"id": r.id, "by": r.practitioner, "categories": list(r.categories),
                             "asked": _in_words(user, list(r.categories))}
                            for r in repo.store(AccessRequests).for_patient(own, repo.ctx.now)]
        repo.note_access("search", "RelatedPerson", None, f"Patient/{own}",
                         detail="portal people page")
        return data


def _name(resource: dict[str, Any]) -> str:
    for name in resource.get("name") or []:
        text = " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
        if text:
            return text
    return ""


@router.get("/me/people")
async def people(request: Request) -> Response:
    return await people_page(request)


async def people_page(request: Request, problem: FormProblem | None = None,
                      status: int = 200) -> Response:
    user = await _citizen(request)
    gw = portal_of(request).gateway
    data = await call(lambda: _people_data(user, gw))
    return render(request, "people/me.html", user, status=status, problem=problem,
                  mandates=MANDATES, categories=_categories(user), **data)


@router.post("/me/people/act")
async def act_for(request: Request) -> Response:
    """Switch between "my dossier" and a person one represents."""
    user = await _citizen(request)
    form = await form_of(request, user)
    target = str(form.get("patient") or "")
    response = redirect(request, f"{PREFIX}/me")
    if target:
        response.set_cookie(ACTING_COOKIE, target, secure=True, httponly=True,
                            samesite="lax", path="/portal")
    else:
        response.delete_cookie(ACTING_COOKIE, path="/portal")
    return response


def _mandate_text(user: User, code: str) -> str:
    text = MANDATES[code]
    return user.t(text)


def _representative_form(form: Any) -> tuple[dict[str, str], FormProblem | None]:
    values = {k: str(form.get(k) or "").strip() for k in ("given", "family", "niss",
                                                          "mandate")}
    values["niss"] = "".join(ch for ch in values["niss"] if ch.isdigit())
    if not values["given"] and not values["family"]:
        return values, FormProblem("given", N_("Give the person's name."))
    if not valid_ssin(values["niss"]):
        return values, FormProblem("niss", N_("Give the person's national number (11 "
                                              "digits, on their identity card)."))
    if values["mandate"] not in MANDATES:
        return values, FormProblem("mandate", N_("Choose what this person may do."))
    return values, None


@router.post("/me/people/name")
async def name_representative(request: Request) -> Response:
    """Step 1: check the form and show in words what will be saved."""
    user = await _citizen(request)
    form = await form_of(request, user)
    values, problem = _representative_form(form)
    if problem is not None:
        return await people_page(request, problem, 400)
    summary = user.t(N_("{name} will be able to sign in with their own identity card and "
                        "act for you: {mandate}. You can remove them at any time.")).format(
        name=f"{values['given']} {values['family']}".strip(),
        mandate=_mandate_text(user, values["mandate"]))
    return render(request, "people/confirm.html", user, summary=summary,
                  action=f"{PREFIX}/me/people/name/confirm", fields=values, many={},
                  back=f"{PREFIX}/me/people")


@router.post("/me/people/name/confirm")
async def confirm_representative(request: Request) -> Response:
    user = await _citizen(request)
    form = await form_of(request, user)
    values, problem = _representative_form(form)
    if problem is not None or not user.patient_id:
        return await people_page(request, problem, 400)
    body: dict[str, Any] = {
        "resourceType": "RelatedPerson", "active": True,
        "patient": {"reference": f"Patient/{user.patient_id}"},
        "extension": [{"url": MANDATE_URL, "valueCode": values["mandate"]}],
        "identifier": [{"system": SSIN, "value": values["niss"]}],
        "relationship": [{"coding": [{"system": ROLE_CODES, "code": "POWATT"}]}],
        "name": [{k: v for k, v in (("family", values["family"]),
                                    ("given", [values["given"]] if values["given"] else None))
                  if v}]}
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            repo.create(body)
    await call(work)
    return redirect(request, f"{PREFIX}/me/people", user, "representative-named")


@router.post("/me/people/remove/{related_id}")
async def remove_representative(request: Request, related_id: str) -> Response:
    user = await _citizen(request)
    await form_of(request, user)
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            repo.delete("RelatedPerson", related_id)
    await call(work)
    return redirect(request, f"{PREFIX}/me/people", user, "representative-removed")


@router.post("/me/people/assisted")
async def refuse_assisted(request: Request) -> Response:
    user = await _citizen(request)
    form = await form_of(request, user)
    refuse = form.get("refuse") == "yes"
    gw = portal_of(request).gateway
    body = {"resourceType": "Parameters",
            "parameter": [{"name": "refuse", "valueBoolean": refuse}]}
    await call(lambda: gw.operation(user.ctx, "assisted-consent", user.patient_id,
                                    method="POST", body=body))
    return redirect(request, f"{PREFIX}/me/people", user, "assisted-saved")


@router.post("/me/people/withdraw/{consent_id}")
async def withdraw_assisted(request: Request, consent_id: str) -> Response:
    """One step: the consent a professional recorded is withdrawn."""
    user = await _citizen(request)
    await form_of(request, user)
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            repo.delete("Consent", consent_id)
    await call(work)
    return redirect(request, f"{PREFIX}/me/people", user, "consent-revoked")


@router.post("/me/people/request/{request_id}")
async def answer_request(request: Request, request_id: str) -> Response:
    """Decline at once; accept after a summary in words of what will be granted."""
    user = await _citizen(request)
    form = await form_of(request, user)
    answer = str(form.get("answer") or "")
    chosen = _chosen(form, user)
    if answer == "accept" and not chosen:
        return await people_page(request, FormProblem(
            f"category-{request_id}", N_("Tick what you allow them to see, or decline.")), 400)
    if answer == "accept" and form.get("confirmed") != "yes":
        summary = user.t(N_("They will see and record in your dossier: {categories}. You "
                            "can withdraw it at any time.")).format(
            categories=_in_words(user, chosen))
        return render(request, "people/confirm.html", user, summary=summary,
                      action=f"{PREFIX}/me/people/request/{request_id}",
                      fields={"answer": "accept", "confirmed": "yes"}, many={"category": chosen},
                      back=f"{PREFIX}/me/people")
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            ops.answer_request(repo, user.patient_id, request_id, answer, chosen)
    await call(work)
    return redirect(request, f"{PREFIX}/me/people", user, "request-answered")


# ================================================================ the professional
async def _professional(request: Request) -> User:
    return await signed_in(request, "practitioner")


def _my_requests(user: User, gw: Any) -> list[dict[str, Any]]:
    with gw.unit(user.ctx) as repo:
        me = repo.ctx.principal.practitioner or ""
        return [{"id": r.id, "dossier": r.patient_id, "asked": _in_words(user, list(r.categories)),
                 "since": user.t.moment(r.created_at.isoformat())}
                for r in repo.store(AccessRequests).by_practitioner(me, repo.ctx.now)]


@router.get("/pro/find")
async def find_form(request: Request) -> Response:
    return await find_page(request)


async def find_page(request: Request, problem: FormProblem | None = None,
                    status: int = 200, niss: str = "") -> Response:
    user = await _professional(request)
    gw = portal_of(request).gateway
    mine = await call(lambda: _my_requests(user, gw))
    return render(request, "people/find.html", user, status=status, problem=problem,
                  niss=niss, requests=mine)


@router.post("/pro/find")
async def find(request: Request) -> Response:
    """Find a person by national number: their one dossier (opened if it did not exist —
    the same answer either way); then ask for access, record an assisted consent, or open
    emergency access."""
    user = await _professional(request)
    form = await form_of(request, user)
    niss = "".join(ch for ch in str(form.get("niss") or "") if ch.isdigit())
    if not valid_ssin(niss):
        return await find_page(request, FormProblem("niss", N_(
            "Give the person's national number (11 digits, on their identity card).")), 400)
    given = str(form.get("given") or "").strip()[:100]
    family = str(form.get("family") or "").strip()[:100]
    body: dict[str, Any] = {"resourceType": "Patient",
                            "identifier": [{"system": SSIN, "value": niss}]}
    if given or family:
        body["name"] = [{k: v for k, v in (("family", family), ("given", [given] if given
                                                                 else None)) if v}]
    gw = portal_of(request).gateway

    def work() -> str:
        with gw.unit(user.ctx) as repo:
            stored, _ = repo.open_dossier(body)
            return stored.id
    dossier_id = await call(work)
    return render(request, "people/found.html", user, dossier_id=dossier_id,
                  categories=_categories(user), problem=None)


@router.post("/pro/request/{dossier_id}")
async def ask_access(request: Request, dossier_id: str) -> Response:
    user = await _professional(request)
    form = await form_of(request, user)
    chosen = _chosen(form, user)
    if not chosen:
        return render(request, "people/found.html", user, status=400, dossier_id=dossier_id,
                      categories=_categories(user),
                      problem=FormProblem("ask-category", N_("Tick what you ask to see.")))
    gw = portal_of(request).gateway
    body = {"resourceType": "Parameters",
            "parameter": [{"name": "category", "valueCode": c} for c in chosen]}
    await call(lambda: gw.operation(user.ctx, "request-access", dossier_id, method="POST",
                                    body=body))
    return redirect(request, f"{PREFIX}/pro/find", user, "access-requested")


@router.post("/pro/assisted/{dossier_id}")
async def assisted(request: Request, dossier_id: str) -> Response:
    """An assisted consent: the person is here; summary in words, then confirm."""
    user = await _professional(request)
    form = await form_of(request, user)
    chosen = _chosen(form, user)
    problem = None
    if not chosen:
        problem = FormProblem("assisted-category", N_("Tick what the person allows."))
    elif form.get("present") != "yes":
        problem = FormProblem("present", N_("Tick the box: the person is here, was informed "
                                            "and agrees."))
    if problem is not None:
        return render(request, "people/found.html", user, status=400, dossier_id=dossier_id,
                      categories=_categories(user), problem=problem)
    if form.get("confirmed") != "yes":
        summary = user.t(N_("The person, here with you, allows you to see and record in "
                            "their dossier: {categories}. They are told at once and can "
                            "withdraw it in one step.")).format(
            categories=_in_words(user, chosen))
        return render(request, "people/confirm.html", user, summary=summary,
                      action=f"{PREFIX}/pro/assisted/{dossier_id}",
                      fields={"present": "yes", "confirmed": "yes"}, many={"category": chosen},
                      back=f"{PREFIX}/pro/find")
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            me = repo.ctx.principal.practitioner or ""
            body = ops.grant(dossier_id, me, chosen, None)
            body["performer"] = [{"reference": me}]
            body["verification"] = [{
                "verified": True, "verifiedWith": {"reference": f"Patient/{dossier_id}"},
                "verificationDate": repo.ctx.now.isoformat()}]
            repo.create(body)
    try:
        await call(work)
    except ApiError as error:
        if error.status == 404:
            raise PageError(404, N_("A consent cannot be recorded for this dossier.")) from None
        raise
    return redirect(request, f"{PREFIX}/pro/find", user, "assisted-recorded")


# ================================================================ enrolment codes
def qr_svg(text: str) -> Markup | None:
    """The QR code of `text` as inline SVG (no style, no script), or None without segno."""
    try:
        import segno
    except ImportError:  # pragma: no cover - pinned in pyproject.toml
        return None
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=5, xmldecl=False, nl=False,
                                     title=None)
    return Markup(out.getvalue().decode("ascii"))  # noqa: S704 - segno's own SVG markup


def _code_page(request: Request, user: User, code: str) -> Response:
    base = portal_of(request).gateway.runtime.settings.public_base
    link = f"{base}{PREFIX}/me/enrol?code={code}"
    return render(request, "people/code.html", user, code=code, qr=qr_svg(link), link=link)


@router.post("/pro/pseudonymous")
async def open_pseudonymous(request: Request) -> Response:
    """A dossier without a national number, and the one-time code to hand to the person."""
    user = await _professional(request)
    form = await form_of(request, user)
    given = str(form.get("given") or "").strip()[:100]
    body: dict[str, Any] = {"resourceType": "Patient"}
    if given:
        body["name"] = [{"use": "usual", "given": [given]}]
    gw = portal_of(request).gateway

    def work() -> str:
        with gw.unit(user.ctx) as repo:
            stored, created = repo.open_dossier(body)
            return ops.first_code(repo, stored, created) or ""
    code = await call(work)
    return _code_page(request, user, code)


@router.post("/pro/enrolment/{dossier_id}")
async def new_code(request: Request, dossier_id: str) -> Response:
    user = await _professional(request)
    await form_of(request, user)
    gw = portal_of(request).gateway
    result = await call(lambda: gw.operation(user.ctx, "enrolment-code", dossier_id,
                                             method="POST", body=None))
    return _code_page(request, user, str(result["parameter"][0]["valueString"]))


@router.get("/me/enrol")
async def enrol_form(request: Request) -> Response:
    user = await _citizen(request)
    code = request.query_params.get("code", "")[:32]
    return render(request, "people/enrol.html", user, code=code, problem=None)


@router.post("/me/enrol")
async def enrol(request: Request) -> Response:
    user = await _citizen(request)
    form = await form_of(request, user)
    code = str(form.get("code") or "").strip()[:32]
    gw = portal_of(request).gateway
    body = {"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": code}]}

    def work() -> int:
        with gw.unit(user.ctx) as repo:
            result = ops.enrol(repo, operations.Call(None, None, [], body, "POST"))
            return int(getattr(result, "status_code", 200))
    try:
        status = await call(work)
    except ApiError as error:
        if error.status != 429:
            raise
        status = 429
    if status != 200:
        message = N_("Too many wrong codes. Try again in an hour.") if status == 429 else \
            N_("This code is not valid: it is wrong, used or expired.")
        return render(request, "people/enrol.html", user, status=status, code="",
                      problem=FormProblem("code", message))
    response = redirect(request, f"{PREFIX}/me/people", user, "enrolled")
    response.delete_cookie(ACTING_COOKIE, path="/portal")
    return response
