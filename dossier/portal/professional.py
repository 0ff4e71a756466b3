"""The professional's pages: the people who consented to them (nobody else), a person's
dossier, recording démarches, network and fragility, the discharge check, break-the-glass."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from dossier.domain.fragility import latest_assessment
from dossier.domain.readiness import REASON_TEXTS, discharge_readiness, readiness_parameters
from dossier.portal import codes, dossier_data, entries, views
from dossier.portal import names as directory
from dossier.portal.consents import FormProblem
from dossier.portal.dossier_data import Dossier
from dossier.portal.gateway import ApiError, OperationUnavailable, call
from dossier.portal.i18n import BRUSSELS, N_
from dossier.portal.web import PageError, User, form_of, portal_of, redirect, render, signed_in
from dossier.search.params import ID_RE

router = APIRouter(prefix="/portal/pro", include_in_schema=False)
NOT_AVAILABLE = N_("This dossier is not available to you.")


async def professional(request: Request) -> User:
    return await signed_in(request, "practitioner")


def check_id(patient_id: str) -> None:
    if not ID_RE.match(patient_id):
        raise PageError(404, NOT_AVAILABLE)


def now_text(user: User) -> str:
    return user.ctx.now.isoformat()


async def load(request: Request, user: User, patient_id: str) -> Dossier:
    check_id(patient_id)
    gw = portal_of(request).gateway
    try:
        return await call(lambda: dossier_data.load(gw, user.ctx, patient_id, user.t))
    except ApiError as error:
        if error.status in (404, 410):
            raise PageError(404, NOT_AVAILABLE, patient_id) from None
        raise


# ------------------------------------------------------------------ my people
@router.get("")
async def people(request: Request) -> Response:
    user = await professional(request)
    gw = portal_of(request).gateway

    def work() -> list[dict[str, Any]]:
        with gw.unit(user.ctx) as repo:
            found = repo.search("Patient", [("_count", "200")], listing=True)
        rows = [{"id": s.id, "name": views.person_name(s.resource)} for s in found.matches]
        return sorted(rows, key=lambda r: ((r["name"] or "~").lower(), r["id"]))
    rows = await call(work)
    return render(request, "pro/people.html", user, rows=rows)


@router.get("/patients/{patient_id}")
async def person(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    dossier = await load(request, user, patient_id)
    return render(request, "pro/person.html", user, dossier=dossier,
                  steps=codes.options(codes.BUSINESS_STATUS_SYSTEM, user.t.lang),
                  status_choices=[(s, user.t(views.STATUS_LABELS[s]))
                                  for s in views.STATUS_ORDER])


# ------------------------------------------------------------------ démarche
async def _organisations(request: Request, user: User) -> list[directory.Entry]:
    gw = portal_of(request).gateway

    def work() -> list[directory.Entry]:
        with gw.unit(user.ctx) as repo:
            return directory.listing(repo, user.t.lang)["organisations"]
    return await call(work)


def _demarche_page(request: Request, user: User, patient_id: str,
                   organisations: list[directory.Entry], problem: FormProblem | None = None,
                   status: int = 200) -> Response:
    lang = user.t.lang
    return render(request, "pro/demarche.html", user, status=status, patient_id=patient_id,
                  problem=problem, organisations=organisations,
                  types=codes.options(codes.DEMARCHE_TYPE_SYSTEM, lang),
                  statuses=[(s, user.t(views.STATUS_LABELS[s])) for s in codes.DEMARCHE_STATUSES],
                  steps=codes.options(codes.BUSINESS_STATUS_SYSTEM, lang))


@router.get("/patients/{patient_id}/demarche")
async def demarche_form(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    check_id(patient_id)
    return _demarche_page(request, user, patient_id, await _organisations(request, user))


@router.post("/patients/{patient_id}/demarche")
async def record_demarche(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    form = await form_of(request, user)
    check_id(patient_id)
    organisations = await _organisations(request, user)
    try:
        task = entries.demarche(form, patient_id, str(user.ctx.principal.practitioner),
                                now_text(user), {o.reference for o in organisations})
    except FormProblem as problem:
        return _demarche_page(request, user, patient_id, organisations, problem, 400)
    await _write(request, user, patient_id, lambda repo: repo.create(task))
    return redirect(request, f"/portal/pro/patients/{patient_id}", user, "demarche-saved")


@router.post("/patients/{patient_id}/demarches")
async def change_chosen_demarche(request: Request, patient_id: str) -> Response:
    """The one status form under the timeline: the démarche is chosen in the form."""
    user = await professional(request)
    form = await form_of(request, user)
    return await _change(request, user, form, patient_id, str(form.get("demarche") or ""))


@router.post("/patients/{patient_id}/demarches/{task_id}")
async def change_demarche(request: Request, patient_id: str, task_id: str) -> Response:
    user = await professional(request)
    form = await form_of(request, user)
    return await _change(request, user, form, patient_id, task_id)


async def _change(request: Request, user: User, form: Any, patient_id: str,
                  task_id: str) -> Response:
    check_id(patient_id)
    if not ID_RE.match(task_id):
        raise PageError(404, NOT_AVAILABLE)
    today = user.ctx.now.astimezone(BRUSSELS).date().isoformat()

    def work(repo: Any) -> None:
        task = repo.read("Task", task_id).resource or {}
        if views.ref(task.get("for")) != f"Patient/{patient_id}":
            raise PageError(404, NOT_AVAILABLE)
        repo.update("Task", task_id, entries.status_change(task, form, today))
    try:
        await _write(request, user, patient_id, work)
    except FormProblem as problem:
        raise PageError(400, problem.message) from None
    return redirect(request, f"/portal/pro/patients/{patient_id}", user, "demarche-saved")


async def _write(request: Request, user: User, patient_id: str, work: Any) -> None:
    gw = portal_of(request).gateway

    def run() -> None:
        with gw.unit(user.ctx) as repo:
            work(repo)
    try:
        await call(run)
    except ApiError as error:
        if error.status == 404:
            raise PageError(404, NOT_AVAILABLE, patient_id) from None
        if error.status == 403:
            raise PageError(403, N_("The person's consent does not let you record this kind "
                                    "of information.")) from None
        raise


# ------------------------------------------------------------------ network
async def _network_choices(request: Request, user: User) -> dict[str, list[directory.Entry]]:
    gw = portal_of(request).gateway

    def work() -> dict[str, list[directory.Entry]]:
        with gw.unit(user.ctx) as repo:
            return directory.listing(repo, user.t.lang)
    return await call(work)


def _network_page(request: Request, user: User, patient_id: str, listing: Any,
                  problem: FormProblem | None = None, status: int = 200) -> Response:
    return render(request, "pro/network.html", user, status=status, patient_id=patient_id,
                  listing=listing, problem=problem,
                  roles=codes.options(codes.NETWORK_ROLE_SYSTEM, user.t.lang))


@router.get("/patients/{patient_id}/network")
async def network_form(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    check_id(patient_id)
    return _network_page(request, user, patient_id, await _network_choices(request, user))


@router.post("/patients/{patient_id}/network")
async def update_network(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    form = await form_of(request, user)
    check_id(patient_id)
    listing = await _network_choices(request, user)
    known = {e.reference for e in listing["people"] + listing["organisations"]}
    try:
        role, member, new_person, available = entries.network_member(form, known)
    except FormProblem as problem:
        return _network_page(request, user, patient_id, listing, problem, 400)

    def work(repo: Any) -> None:
        reference = member
        if new_person is not None:
            stored, _ = repo.create(entries.related_person(patient_id, role, new_person))
            reference = f"RelatedPerson/{stored.id}"
        added = entries.participant(role, str(reference), available)
        teams = repo.search("CareTeam", [("patient", f"Patient/{patient_id}"),
                                         ("status", "active"), ("_count", "1")])
        if teams.matches and teams.matches[0].resource is not None:
            team = {k: v for k, v in teams.matches[0].resource.items() if k != "meta"}
            team["participant"] = [*team.get("participant", []), added]
            repo.update("CareTeam", teams.matches[0].id, team)
        else:
            repo.create(entries.care_team(patient_id, [added]))
    await _write(request, user, patient_id, work)
    return redirect(request, f"/portal/pro/patients/{patient_id}", user, "network-saved")


# ------------------------------------------------------------------ fragility
def _fragility_page(request: Request, user: User, patient_id: str,
                    problem: FormProblem | None = None, status: int = 200) -> Response:
    lang = user.t.lang
    return render(request, "pro/fragility.html", user, status=status, patient_id=patient_id,
                  problem=problem,
                  housing_label=codes.label(codes.FRAGILITY_COMPONENT_SYSTEM, "housing", lang),
                  housing=codes.options(codes.FRAGILITY_COMPONENT_SYSTEM, lang, codes.HOUSING),
                  questions=codes.options(codes.FRAGILITY_COMPONENT_SYSTEM, lang,
                                          codes.YES_NO_COMPONENTS))


@router.get("/patients/{patient_id}/fragility")
async def fragility_form(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    check_id(patient_id)
    return _fragility_page(request, user, patient_id)


@router.post("/patients/{patient_id}/fragility")
async def record_fragility(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    form = await form_of(request, user)
    check_id(patient_id)
    try:
        observation = entries.assessment(form, patient_id,
                                         str(user.ctx.principal.practitioner), now_text(user))
    except FormProblem as problem:
        return _fragility_page(request, user, patient_id, problem, 400)
    await _write(request, user, patient_id, lambda repo: repo.create(observation))
    return redirect(request, f"/portal/pro/patients/{patient_id}", user, "fragility-saved")


# ------------------------------------------------------------------ discharge check
@router.get("/patients/{patient_id}/discharge")
async def discharge_form(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    dossier = await load(request, user, patient_id)
    return render(request, "pro/discharge.html", user, dossier=dossier, result=None,
                  problem=None, at="")


@router.post("/patients/{patient_id}/discharge")
async def discharge(request: Request, patient_id: str) -> Response:
    user = await professional(request)
    form = await form_of(request, user)
    dossier = await load(request, user, patient_id)
    destination = str(form.get("destination") or "") or None
    members = {m.reference: m for m in dossier.members}
    try:
        at = entries.discharge_time(form)
        if destination is not None and destination not in members:
            raise FormProblem("destination", N_("Choose the destination from the list."))
    except FormProblem as problem:
        return render(request, "pro/discharge.html", user, status=400, dossier=dossier,
                      result=None, problem=problem, at=str(form.get("at") or ""))
    gw = portal_of(request).gateway
    body = entries.readiness_body(at, destination, user.t.lang)

    def work() -> dict[str, Any]:
        try:
            return dict(gw.operation(user.ctx, "discharge-readiness", patient_id,
                                     method="POST", body=body))
        except OperationUnavailable:
            # the operation is not on this server yet: the same rule over what we read
            groups = dossier.resources
            fragility = latest_assessment(groups.get("Observation", []))
            return readiness_parameters(discharge_readiness(
                at, fragility, groups.get("CareTeam", []), destination), user.t.lang)
    parameters = await call(work)
    result = _readiness_view(parameters, dossier, user)
    return render(request, "pro/discharge.html", user, dossier=dossier, result=result,
                  problem=None, at=str(form.get("at") or ""))


def _readiness_view(parameters: dict[str, Any], dossier: Dossier, user: User) -> dict[str, Any]:
    """What the check says; when the viewer's access does not include fragility, no advice
    is drawn from it ("no assessment" would only echo their own permission)."""
    ready: bool | None = False
    reasons: list[str] = []
    contacts: list[dict[str, Any]] = []
    hidden = "fragility" not in dossier.may_see
    members = {m.reference: m for m in dossier.members}
    for p in parameters.get("parameter") or []:
        if p.get("name") == "ready":
            ready = p.get("valueBoolean") is True
        elif p.get("name") == "reason":
            concept = p.get("valueCodeableConcept") or {}
            code = next((c.get("code") for c in concept.get("coding") or []), None)
            if hidden and code == "no-assessment":
                continue
            text = REASON_TEXTS.get(code or "", {}).get(user.t.lang) or concept.get("text") \
                or next((c.get("display") for c in concept.get("coding") or []), "") or ""
            reasons.append(text)
        elif p.get("name") == "contact":
            reference = views.ref(p.get("valueReference")) or ""
            member = members.get(reference)
            contacts.append({"name": member.name if member else
                             dossier.names.get(reference, user.t("Someone in the network")),
                             "roles": ", ".join(member.role_labels) if member else "",
                             "available": bool(member and member.available),
                             "contact": member.contact if member else []})
    if hidden and not ready and not reasons:
        ready = None  # nothing against it that they may see; fragility not known to them
    return {"ready": ready, "reasons": reasons, "contacts": contacts,
            "fragility_hidden": hidden}


# ------------------------------------------------------------------ break-the-glass
@router.get("/break-glass")
async def break_glass_form(request: Request) -> Response:
    user = await professional(request)
    dossier = request.query_params.get("dossier", "")
    return render(request, "pro/break_glass.html", user, dossier_id=dossier
                  if ID_RE.match(dossier) else "", problem=None, reason="")


@router.post("/break-glass")
async def break_glass(request: Request) -> Response:
    user = await professional(request)
    form = await form_of(request, user)
    patient_id = str(form.get("dossier") or "").strip()
    reason = str(form.get("reason") or "").strip()
    problem = None
    if not ID_RE.match(patient_id):
        problem = FormProblem("dossier", N_("Give the dossier number."))
    elif not reason or len(reason) > 500:
        problem = FormProblem("reason", N_("Explain the emergency in a few words (at most "
                                           "500 characters)."))
    elif form.get("understood") != "yes":
        problem = FormProblem("understood", N_("Tick the box to confirm you read the "
                                               "warning."))
    if problem is not None:
        return render(request, "pro/break_glass.html", user, status=400, problem=problem,
                      dossier_id=patient_id if ID_RE.match(patient_id) else "", reason=reason)
    gw = portal_of(request).gateway
    body = {"resourceType": "Parameters",
            "parameter": [{"name": "reason", "valueString": reason}]}
    try:
        await call(lambda: gw.operation(user.ctx, "break-glass", patient_id, method="POST",
                                        body=body))
    except ApiError as error:
        if error.status == 404:
            raise PageError(404, N_("Emergency access cannot be opened for this dossier "
                                    "number.")) from None
        raise
    return redirect(request, f"/portal/pro/patients/{patient_id}", user, "btg-open")
