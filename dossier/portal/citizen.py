"""The citizen's pages: my dossier, who can see what, preview, who looked (with proof
receipts), messages, settings, export and erasure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dossier.auditlog import events as auditevents
from dossier.domain.consents import consent_body
from dossier.portal import codes, consents, dossier_data, messages, views
from dossier.portal import names as directory
from dossier.portal.consents import FormProblem
from dossier.portal.gateway import ApiError, call
from dossier.portal.i18n import LANGUAGES, N_
from dossier.portal.web import (
    PageError,
    User,
    form_of,
    portal_of,
    redirect,
    render,
    signed_in,
)

router = APIRouter(prefix="/portal/me", include_in_schema=False)
LOG_WINDOW = 200
NOTIFICATION_CATEGORY = "https://dossier.brussels/fhir/CodeSystem/communication-category"


async def citizen(request: Request) -> User:
    user = await signed_in(request, "citizen")
    if not user.patient_id:
        raise PageError(403, N_("This page is not for your role."))
    return user


def now_text(user: User) -> str:
    return user.ctx.now.astimezone(UTC).isoformat().replace("+00:00", "Z")


def download(body: Any, filename: str) -> Response:
    return Response(json.dumps(body, indent=2, ensure_ascii=False), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# ------------------------------------------------------------------ my dossier
@router.get("")
async def my_dossier(request: Request) -> Response:
    user = await signed_in(request, "citizen")
    if not user.patient_id:  # a representative without a dossier of their own (SPEC §13)
        return RedirectResponse("/portal/me/people", status_code=303)
    gw = portal_of(request).gateway
    dossier = await call(lambda: dossier_data.load(gw, user.ctx, user.patient_id, user.t))
    return render(request, "citizen/dossier.html", user, dossier=dossier)


# ------------------------------------------------------------------ who can see what
async def _access_page(request: Request, user: User, status: int = 200,
                       problem: FormProblem | None = None,
                       chosen: dict[str, Any] | None = None) -> Response:
    gw = portal_of(request).gateway

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            found = consents.patient_consents(repo, user.patient_id)
            listing = directory.listing(repo, user.t.lang)
            refs = {a for c in found for a in views.consent_view(c, {}, user.t)["actors"]}
            names = directory.names_for(repo, refs, user.t.lang)
        for entry in listing["people"]:
            if entry.detail:
                names[entry.reference] = f"{entry.name} ({entry.detail})"
        shown = [views.consent_view(c, names, user.t) for c in found]
        return {"listing": listing,
                "grants": [c for c in shown if c["active"] and c["kind"] == "permit"],
                "exclusions": [c for c in shown if c["active"] and c["kind"] == "deny"
                               and not c["btg_refusal"]],
                "btg_refused": any(c["active"] and c["btg_refusal"] for c in shown),
                "past": [c for c in shown if not c["active"] and not c["btg_refusal"]]}

    data = await call(work)
    return render(request, "citizen/access.html", user, status=status, problem=problem,
                  categories=_category_options(user), chosen=chosen or {}, **data)


def _category_options(user: User) -> list[tuple[str, str]]:
    return codes.options(codes.CATEGORY_SYSTEM, user.t.lang, codes.CATEGORIES)


@router.get("/access")
async def access(request: Request) -> Response:
    user = await citizen(request)
    return await _access_page(request, user)


@router.get("/access/grant")
@router.get("/access/exclude")
@router.get("/access/break-glass")
async def access_again(request: Request) -> Response:
    """A form's address opened directly (reload, language switch): back to its page."""
    return RedirectResponse(_with_lang(request, "/portal/me/access"), status_code=303)


@router.get("/erase")
async def erase_again(request: Request) -> Response:
    return RedirectResponse(_with_lang(request, "/portal/me/settings"), status_code=303)


def _with_lang(request: Request, path: str) -> str:
    lang = request.query_params.get("lang")
    return f"{path}?lang={lang}" if lang in LANGUAGES else path


@router.post("/access/grant")
async def grant(request: Request) -> Response:
    """Two steps: the choices, then a summary in words to confirm (nothing pre-selected;
    consent is an affirmative act)."""
    user = await citizen(request)
    form = await form_of(request, user)
    gw = portal_of(request).gateway
    actor = str(form.get("actor") or "")
    chosen: dict[str, Any] = {"categories": [str(v) for v in form.getlist("category")],
                              "actions": [str(v) for v in form.getlist("action")],
                              "actor": actor, "start": str(form.get("start") or ""),
                              "end": str(form.get("end") or "")}
    try:
        body = consents.grant_from_form(form, user.patient_id, now_text(user))
    except FormProblem as problem:
        return await _access_page(request, user, 400, problem, chosen)
    if form.get("confirm") != "yes":
        def names() -> dict[str, str]:
            with gw.unit(user.ctx) as repo:
                return directory.names_for(repo, {actor}, user.t.lang)
        who = (await call(names)).get(actor) or actor
        return render(request, "citizen/grant_confirm.html", user, chosen=chosen,
                      summary=consents.summary(who, body, user.t))

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            repo.create(body)
    await call(work)
    return redirect(request, "/portal/me/access", user, "grant-added")


@router.post("/access/exclude")
async def exclude(request: Request) -> Response:
    user = await citizen(request)
    form = await form_of(request, user)
    gw = portal_of(request).gateway
    try:
        actor = consents.actor_of(form)
    except FormProblem as problem:
        return await _access_page(request, user, 400, problem)
    body = consent_body(user.patient_id, "deny", actor=actor, now=now_text(user))

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            repo.create(body)
    await call(work)
    return redirect(request, "/portal/me/access", user, "excluded")


@router.post("/access/break-glass")
async def break_glass_choice(request: Request) -> Response:
    user = await citizen(request)
    form = await form_of(request, user)
    refuse = form.get("choice") == "refuse"
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            consents.refuse_break_glass(repo, user.patient_id, refuse, now_text(user))
    await call(work)
    return redirect(request, "/portal/me/access", user,
                    "btg-refused" if refuse else "btg-allowed")


def _one_consent(request: Request, user: User, consent_id: str) -> Any:
    gw = portal_of(request).gateway

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            consent = repo.read("Consent", consent_id).resource or {}
            view = views.consent_view(consent, {}, user.t)
            view["actor_names"] = list(directory.names_for(
                repo, set(view["actors"]), user.t.lang).values()) or view["actors"]
        return view
    return call(work)


@router.get("/access/{consent_id}")
async def change_form(request: Request, consent_id: str) -> Response:
    user = await citizen(request)
    consent = await _one_consent(request, user, consent_id)
    return render(request, "citizen/consent_edit.html", user, consent=consent, problem=None,
                  categories=_category_options(user))


@router.post("/access/{consent_id}")
async def change(request: Request, consent_id: str) -> Response:
    user = await citizen(request)
    form = await form_of(request, user)
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            current = repo.read("Consent", consent_id).resource or {}
            repo.update("Consent", consent_id, consents.changed(current, form))
    try:
        await call(work)
    except FormProblem as problem:
        consent = await _one_consent(request, user, consent_id)
        return render(request, "citizen/consent_edit.html", user, status=400, consent=consent,
                      problem=problem, categories=_category_options(user))
    return redirect(request, "/portal/me/access", user, "consent-changed")


@router.post("/access/{consent_id}/revoke")
async def revoke(request: Request, consent_id: str) -> Response:
    user = await citizen(request)
    await form_of(request, user)
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            consents.withdraw(repo, consent_id)
    await call(work)
    return redirect(request, "/portal/me/access", user, "consent-revoked")


@router.post("/access/{consent_id}/delete")
async def delete(request: Request, consent_id: str) -> Response:
    user = await citizen(request)
    await form_of(request, user)
    gw = portal_of(request).gateway

    def work() -> None:
        with gw.unit(user.ctx) as repo:
            repo.delete("Consent", consent_id)
    await call(work)
    return redirect(request, "/portal/me/access", user, "consent-deleted")


# ------------------------------------------------------------------ preview
def _preview_choices(request: Request, user: User) -> Any:
    gw = portal_of(request).gateway

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            return directory.listing(repo, user.t.lang)
    return call(work)


@router.get("/preview")
async def preview_form(request: Request) -> Response:
    user = await citizen(request)
    listing = await _preview_choices(request, user)
    return render(request, "citizen/preview.html", user, listing=listing, result=None,
                  chosen="", problem=None)


@router.post("/preview")
async def preview(request: Request) -> Response:
    user = await citizen(request)
    form = await form_of(request, user)
    listing = await _preview_choices(request, user)
    allowed = {e.reference for e in listing["people"] + listing["organisations"]}
    try:
        actor = consents.actor_of(form, allowed)
    except FormProblem as problem:
        return render(request, "citizen/preview.html", user, status=400, listing=listing,
                      result=None, chosen="", problem=problem)
    gw = portal_of(request).gateway

    def work() -> dict[str, Any]:
        bundle = gw.operation(user.ctx, "access-preview", user.patient_id,
                              params=[("actor", actor)])
        granted = [tag.get("code") for tag in (bundle.get("meta") or {}).get("tag") or []]
        resources = dossier_data.resources_of(bundle)
        refs = dossier_data.mentioned(views.by_type(resources))
        names: dict[str, str] = {}
        if refs:
            with gw.unit(user.ctx) as repo:
                names = directory.names_for(repo, refs, user.t.lang)
        seen = dossier_data.build(user.patient_id, resources, names, user.t)
        return {"categories": [codes.label(codes.CATEGORY_SYSTEM, c, user.t.lang)
                               for c in granted if c],
                "dossier": seen, "count": len(resources)}
    result = await call(work)
    name = next((e.name for e in listing["people"] + listing["organisations"]
                 if e.reference == actor), actor)
    return render(request, "citizen/preview.html", user, listing=listing, result=result,
                  chosen=actor, chosen_name=name, problem=None)


# ------------------------------------------------------------------ who looked
@router.get("/log")
async def log(request: Request) -> Response:
    user = await citizen(request)
    page = _page_number(request.query_params.get("page"))
    mine = request.query_params.get("mine") == "1"
    rt = portal_of(request).gateway.runtime
    gw = portal_of(request).gateway

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            events, total, _, _ = auditevents.search_events(repo, rt.audit_store, [
                ("_count", str(LOG_WINDOW)), ("_offset", str(page * LOG_WINDOW))])
            agents = {views.audit_agent(e)[0] or "" for e in events} - {""}
            names = directory.names_for(repo, agents, user.t.lang)
            organisations = directory.organisations_of(repo, agents)
        rows = [views.audit_row(e, names, organisations, user.t) for e in events]
        if not mine:
            rows = [r for r in rows if r["role"] != "citizen"]
        return {"rows": rows, "total": total, "page": page,
                "more": (page + 1) * LOG_WINDOW < total}
    data = await call(work)
    return render(request, "citizen/log.html", user, mine=mine, **data)


def _page_number(text: str | None) -> int:
    return int(text) if text and (text.isascii() and text.isdigit()) and len(text) < 7 else 0


@router.get("/log/{record_id}/receipt")
async def receipt(request: Request, record_id: str) -> Response:
    user = await citizen(request)
    return await proof_receipt(request, user, record_id)


async def proof_receipt(request: Request, user: User, record_id: str) -> Response:
    """The record, its inclusion proof in the signed tree, the tree head and the key."""
    gw = portal_of(request).gateway
    rt = gw.runtime

    def work() -> dict[str, Any]:
        with gw.unit(user.ctx) as repo:
            return auditevents.read_event(repo, rt.audit_store, record_id)
    event = await call(work)
    index = views.log_index(event)
    head = await gw.audit_json("tree-head", user.session.token)
    size = int(head.get("tree_size", 0))
    if index is None or index >= size:
        raise PageError(409, N_("This entry is not sealed into the signed log yet. The log "
                                "is sealed every few seconds: please try again in a minute."))
    proof = await gw.audit_json("inclusion", user.session.token,
                                f"index={index}&tree_size={size}")
    key = await gw.audit_json("public-key", user.session.token)
    return download({
        "about": "Dossier access-log proof receipt (RFC 6962 inclusion proof)",
        "audit_event": event, "inclusion_proof": proof, "tree_head": head,
        "public_key": key,
        "how_to_verify": "SHA-256(0x00 || base64decode(leaf)) is the leaf hash; fold it "
                         "with audit_path (RFC 6962 §2.1.1) to get root_hash; check the "
                         "Ed25519 signature of the checkpoint with public_key.",
    }, f"dossier-proof-{index}.json")


# ------------------------------------------------------------------ messages
@router.get("/notifications")
async def notifications(request: Request) -> Response:
    user = await citizen(request)
    gw = portal_of(request).gateway

    def work() -> list[dict[str, Any]]:
        with gw.unit(user.ctx) as repo:
            result = repo.search("Communication", [
                ("recipient", f"Patient/{user.patient_id}"),
                ("category", f"{NOTIFICATION_CATEGORY}|access-notification"),
                ("_sort", "-sent"), ("_count", "100")])
            found = [s.resource for s in result.matches if s.resource is not None]
            events = messages.load_events(repo, gw.runtime.audit_store,
                                          messages.records_of(found))
            names, organisations = messages.load_names(repo, events, user.t.lang)
        return messages.build(found, events, names, organisations, user.t)
    rows = await call(work)
    return render(request, "citizen/notifications.html", user, rows=rows)


# ------------------------------------------------------------------ settings and my data
def _settings_view(parameters: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"language": "fr", "email": "", "webhook": "", "channels": [],
                           "secret": "", "email_frequency": "immediate"}
    for p in parameters.get("parameter") or []:
        name = p.get("name")
        value = next((v for k, v in p.items() if k.startswith("value")), "")
        if name == "channel":
            out["channels"].append(value)
        elif name == "webhook-secret":
            out["secret"] = value
        elif name == "email-frequency":
            out["email_frequency"] = value
        elif name in out:
            out[name] = value
    return out


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    user = await citizen(request)
    gw = portal_of(request).gateway
    current = await call(lambda: gw.operation(user.ctx, "notification-settings",
                                              user.patient_id))
    return render(request, "citizen/settings.html", user, current=_settings_view(current),
                  problem=None, erase_status=None)


@router.post("/settings")
async def save_settings(request: Request) -> Response:
    user = await citizen(request)
    form = await form_of(request, user)
    language = str(form.get("language") or "")
    email = str(form.get("email") or "").strip()
    webhook = str(form.get("webhook") or "").strip()
    gw = portal_of(request).gateway
    parameters: list[dict[str, Any]] = [
        {"name": "language", "valueCode": language if language in LANGUAGES else "fr"}]
    daily = form.get("email_frequency") == "daily"
    if email:
        parameters.append({"name": "email", "valueString": email})
        parameters.append({"name": "email-frequency",
                           "valueCode": "daily" if daily else "immediate"})
    if webhook:
        parameters.append({"name": "webhook", "valueUrl": webhook})
    body = {"resourceType": "Parameters", "parameter": parameters}
    try:
        result = await call(lambda: gw.operation(user.ctx, "notification-settings",
                                                 user.patient_id, method="POST", body=body))
    except ApiError as error:
        if error.status != 422:
            raise
        current = {"language": language, "email": email, "webhook": webhook,
                   "channels": [], "secret": "",
                   "email_frequency": "daily" if daily else "immediate"}
        return render(request, "citizen/settings.html", user, status=400, current=current,
                      problem=FormProblem("email", N_("This address could not be used. "
                                                      "Please check it.")),
                      erase_status=None)
    shown = _settings_view(result)
    if shown["secret"]:  # the webhook secret is shown once, on this page only
        return render(request, "citizen/settings.html", user, current=shown, problem=None,
                      erase_status=None)
    return redirect(request, "/portal/me/settings", user, "settings-saved")


@router.get("/export")
async def export(request: Request) -> Response:
    user = await citizen(request)
    gw = portal_of(request).gateway
    bundle = await call(lambda: gw.operation(user.ctx, "everything", user.patient_id))
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return download(bundle, f"my-dossier-{stamp}.json")


@router.post("/erase")
async def erase(request: Request) -> Response:
    user = await citizen(request)
    form = await form_of(request, user)
    gw = portal_of(request).gateway
    current = await call(lambda: gw.operation(user.ctx, "notification-settings",
                                              user.patient_id))
    if form.get("confirm") != "yes":
        return render(request, "citizen/settings.html", user, status=400,
                      current=_settings_view(current), erase_status=None,
                      problem=FormProblem("confirm", N_("Tick the box to confirm that you "
                                                        "want your dossier erased.")))
    result = await call(lambda: gw.operation(user.ctx, "erase", user.patient_id,
                                             method="POST"))
    status = next((p.get("valueCode") for p in result.get("parameter") or []
                   if p.get("name") == "status"), "requested")
    return render(request, "citizen/settings.html", user, current=_settings_view(current),
                  problem=None, erase_status=status)
