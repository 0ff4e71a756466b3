"""The portal's front door: welcome page, sign-in (authorization code + PKCE), sign-out,
and the error pages every portal route shares."""

from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from auth import AuthError
from dossier.portal.csrf import CsrfError, checked_form
from dossier.portal.gateway import ApiError, OperationUnavailable
from dossier.portal.i18n import N_
from dossier.portal.oidc import SignInError, pkce_pair
from dossier.portal.session import (
    LOGIN_COOKIE,
    LOGIN_TTL,
    SESSION_COOKIE,
    SESSION_TTL,
    PortalSession,
    clear_cookie,
    new_csrf,
    new_sid,
    set_secure_cookie,
    write_session,
)
from dossier.portal.web import (
    HOME,
    LoginRequired,
    PageError,
    language,
    portal_of,
    render,
    session_of,
    signed_in,
)

router = APIRouter(prefix="/portal", include_in_schema=False)
front = APIRouter(include_in_schema=False)
API_MESSAGES = {
    400: N_("Something in the request was not right. Nothing was changed."),
    403: N_("You are not allowed to do this."),
    404: N_("This is not available to you."),
    409: N_("This cannot be done right now."),
    410: N_("This information was erased."),
    422: N_("This could not be saved: it does not follow the dossier's rules."),
    503: N_("The service is busy or the access log cannot be written. Nothing was changed. "
            "Please try again in a moment."),
}


@front.get("/")
async def root() -> Response:
    """People who type the bare address land on the portal (the API lives at /fhir)."""
    return RedirectResponse("/portal/", status_code=303)


@router.get("")
@router.get("/")
async def welcome(request: Request) -> Response:
    session = session_of(request)
    if session is not None and session.role in HOME:
        return RedirectResponse(HOME[session.role], status_code=303)
    return render(request, "welcome.html")


def safe_next(value: str | None) -> str | None:
    """A path inside the portal to come back to after signing in (never another site)."""
    if not value or not value.startswith("/portal/") or "//" in value or "\\" in value \
            or len(value) > 300:
        return None
    return value


@router.get("/login")
async def login(request: Request) -> Response:
    portal = portal_of(request)
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    try:
        url = await run_in_threadpool(portal.oidc.authorize_url, state, challenge, nonce,
                                      language(request))
    except SignInError:
        raise PageError(503, N_("Signing in is not possible right now. Please try again "
                                "later.")) from None
    response = RedirectResponse(url, status_code=303)
    pending = {"state": state, "verifier": verifier, "nonce": nonce,
               "next": safe_next(request.query_params.get("next"))}
    set_secure_cookie(response, LOGIN_COOKIE, portal.codec.seal(pending), max_age=LOGIN_TTL)
    return response


def token_expiry(token: str) -> int:
    """The exp claim of a token the API has just accepted."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return 0


@router.get("/callback")
async def callback(request: Request) -> Response:
    portal = portal_of(request)
    params = request.query_params
    pending = portal.codec.open(request.cookies.get(LOGIN_COOKIE), LOGIN_TTL)
    state = params.get("state") or ""
    if pending is None or not secrets.compare_digest(state.encode(),
                                                     str(pending.get("state")).encode()):
        raise PageError(400, N_("The sign-in took too long or was started elsewhere. Please "
                                "sign in again."))
    if params.get("error"):
        raise PageError(400, N_("The sign-in was cancelled. You can try again."))
    if params.get("iss") and params.get("iss") != portal.oidc.issuer:
        raise PageError(400, N_("The sign-in answer came from an unexpected place."))
    try:
        token = await run_in_threadpool(portal.oidc.redeem, params.get("code") or "",
                                        str(pending["verifier"]))
        ctx = await portal.gateway.context(token)
    except (SignInError, AuthError):
        raise PageError(400, N_("The sign-in could not be completed. Please try "
                                "again.")) from None
    role = ctx.role
    if role not in HOME:
        raise PageError(403, N_("This portal is for citizens, professionals and auditors."))
    session = PortalSession(token=token, role=role, user=str(ctx.fhir_user),
                            csrf=new_csrf(), expires=token_expiry(token), sid=new_sid())
    await run_in_threadpool(portal.sessions.open, session.sid,
                            min(session.expires, int(time.time()) + SESSION_TTL))
    response = RedirectResponse(pending.get("next") or HOME[role], status_code=303)
    write_session(response, portal.codec, session)
    clear_cookie(response, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = session_of(request)
    await checked_form(request, session, portal_of(request).origin)
    if session is not None:  # the cookie stops working everywhere, not only here
        await run_in_threadpool(portal_of(request).sessions.end, session.sid)
    response = RedirectResponse("/portal/", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.get("/admin")
async def admin(request: Request) -> Response:
    user = await signed_in(request, "admin")
    return render(request, "admin.html", user)


# ------------------------------------------------------------------ error pages
async def login_required(request: Request, exc: Exception) -> Response:
    if request.method != "GET":
        return render(request, "error.html", status=401,
                      message=N_("Your session has ended. Please sign in again."), detail=None)
    target = f"/portal/login?{urlencode({'next': request.url.path})}" \
        if safe_next(request.url.path) else "/portal/login"
    response = RedirectResponse(target, status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return render(request, "error.html", session=session_of(request), status=exc.status,
                  message=exc.message, detail=None,
                  emergency_dossier=exc.detail if exc.status == 404 else None)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    status = exc.status if exc.status in API_MESSAGES else 500
    message = API_MESSAGES.get(status, N_("Something went wrong. Nothing was changed."))
    return render(request, "error.html", session=session_of(request), status=status,
                  message=message, detail=exc.message if status in (400, 409, 422) else None)


async def csrf_error(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", session=session_of(request), status=403,
                  message=N_("This form could not be accepted: it did not come from this "
                             "page, or it is too old. Please go back, reload the page and "
                             "try again."), detail=None)


async def unavailable(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", session=session_of(request), status=501,
                  message=N_("This function is not available on this server yet."),
                  detail=None)


HANDLERS = {LoginRequired: login_required, PageError: page_error, ApiError: api_error,
            CsrfError: csrf_error, OperationUnavailable: unavailable}
