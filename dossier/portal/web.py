"""Shared plumbing of the portal's pages: who is signed in, language, rendering, headers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from audit.notify import LANGUAGES as NOTICE_LANGUAGES
from auth import AuthError
from dossier.core.context import RequestContext
from dossier.portal.csrf import checked_form
from dossier.portal.gateway import Gateway
from dossier.portal.i18n import LANGUAGE_NAMES, LANGUAGES, N_, Translator, negotiate
from dossier.portal.oidc import OidcClient
from dossier.portal.session import (
    LANG_COOKIE,
    LANG_MAX_AGE,
    SESSION_COOKIE,
    PortalSession,
    SessionCodec,
    set_secure_cookie,
    write_session,
)
from dossier.stores.portal_sessions import PortalSessions

TEMPLATES = Path(__file__).parent / "templates"
PREFIX = "/portal"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin (not no-referrer) so that browsers send a real Origin on our own forms
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-store",
}
HOME = {"citizen": f"{PREFIX}/me", "practitioner": f"{PREFIX}/pro",
        "auditor": f"{PREFIX}/audit", "admin": f"{PREFIX}/admin"}
ACTING_COOKIE = "dossier_acting_for"
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
NAV: dict[str, list[tuple[str, str]]] = {
    "citizen": [(f"{PREFIX}/me", N_("My dossier")),
                (f"{PREFIX}/me/access", N_("Who can see what")),
                (f"{PREFIX}/me/preview", N_("See what someone sees")),
                (f"{PREFIX}/me/log", N_("Who looked")),
                (f"{PREFIX}/me/notifications", N_("Messages")),
                (f"{PREFIX}/me/settings", N_("Settings and my data")),
                (f"{PREFIX}/services", N_("Find a service"))],
    "practitioner": [(f"{PREFIX}/pro", N_("My people")),
                     (f"{PREFIX}/pro/inbox", N_("Inbox")),
                     (f"{PREFIX}/services", N_("Find a service")),
                     (f"{PREFIX}/pro/break-glass", N_("Emergency access"))],
    "auditor": [(f"{PREFIX}/audit", N_("Access log")),
                (f"{PREFIX}/audit/integrity", N_("Integrity")),
                (f"{PREFIX}/audit/break-glass", N_("Emergency accesses"))],
    "admin": [],
}
FLASH = {
    "grant-added": N_("Done. The permission is saved and applies from now on."),
    "consent-changed": N_("Done. The permission is changed."),
    "consent-revoked": N_("Done. The permission is withdrawn: from now on they see nothing "
                          "of it."),
    "consent-deleted": N_("Done. The withdrawn permission is removed from your list."),
    "excluded": N_("Done. This person or organisation is excluded from your dossier."),
    "btg-refused": N_("Done. Emergency access is refused, even in an emergency."),
    "btg-allowed": N_("Done. Emergency access is possible again, with a notice to you."),
    "settings-saved": N_("Done. Your choices are saved."),
    "demarche-saved": N_("The démarche is recorded."),
    "answer-sent": N_("Your answer is sent."),
    "network-saved": N_("The network is updated."),
    "fragility-saved": N_("The assessment is recorded."),
    "btg-open": N_("Emergency access is open for 60 minutes. The person is notified and an "
                   "auditor will review it."),
    "review-saved": N_("Your review is written to the access log."),
    "signed-out": N_("You are signed out."),
}


class LoginRequired(Exception):
    """No valid session: sign in (again)."""


class PageError(Exception):
    """A page that cannot be shown: a status and a message (msgid) for the person."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


@dataclass
class Portal:
    gateway: Gateway
    codec: SessionCodec
    origin: str
    oidc_factory: Callable[[], OidcClient]
    sessions: PortalSessions
    env: Environment = field(default_factory=lambda: make_environment())
    _oidc: OidcClient | None = None

    @property
    def oidc(self) -> OidcClient:
        if self._oidc is None:
            self._oidc = self.oidc_factory()
        return self._oidc


@dataclass
class User:
    session: PortalSession
    ctx: RequestContext
    t: Translator

    @property
    def role(self) -> str:
        return self.ctx.role

    acting_for: str = ""  # a representative's chosen person (SPEC §13), from a cookie

    @property
    def patient_id(self) -> str:
        """The dossier a citizen's pages show: their own, or the person they act for (the
        unit's policy decides whether they may)."""
        if self.ctx.role == "citizen" and self.acting_for:
            return self.acting_for
        patient = self.ctx.fhir_user or "" if self.ctx.role == "citizen" else ""
        return patient.split("/", 1)[1] if "/" in patient else ""


def make_environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)),
                       autoescape=select_autoescape(["html", "svg"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def portal_of(request: Request) -> Portal:
    return request.app.state.portal  # type: ignore[no-any-return]


def language(request: Request) -> str:
    return negotiate(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                     request.headers.get("accept-language"))


def translator(request: Request) -> Translator:
    return Translator(language(request))


def session_of(request: Request) -> PortalSession | None:
    return portal_of(request).codec.session(request.cookies.get(SESSION_COOKIE))


async def signed_in(request: Request, *roles: str) -> User:
    """The signed-in user, with the RequestContext /fhir would build from their token."""
    session = session_of(request)
    if session is None or not await run_in_threadpool(
            portal_of(request).sessions.alive, session.sid):
        raise LoginRequired  # no cookie, or one whose session was ended (logout, expiry)
    try:
        ctx = await portal_of(request).gateway.context(session.token)
    except AuthError:
        raise LoginRequired from None
    if roles and ctx.role not in roles:
        raise PageError(403, N_("This page is not for your role."))
    acting = request.cookies.get(ACTING_COOKIE, "")
    return User(session, ctx, translator(request),
                acting if ctx.role == "citizen" and ID_PATTERN.fullmatch(acting) else "")


async def form_of(request: Request, user: User) -> FormData:
    """The posted form once its CSRF token is checked (CsrfError otherwise)."""
    return await checked_form(request, user.session, portal_of(request).origin)


# the languages a person may choose for their messages (e-mails are written by audit.notify)
MESSAGE_LANGUAGES = [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES
                     if code in NOTICE_LANGUAGES]


def lang_links(request: Request, current: str) -> list[dict[str, Any]]:
    """Links to this page in each language (keeping a GET page's own query)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] \
        if request.method == "GET" else []
    return [{"code": code, "name": LANGUAGE_NAMES[code], "current": code == current,
             "href": f"{request.url.path}?{urlencode([*params, ('lang', code)])}"}
            for code in LANGUAGES]


def render(request: Request, template: str, user: User | None = None, *, status: int = 200,
           session: PortalSession | None = None, **values: Any) -> HTMLResponse:
    portal = portal_of(request)
    t = user.t if user else translator(request)
    session = user.session if user else session
    role = user.role if user else (session.role if session else None)
    flash = None
    if session is not None and session.flash:
        flash = t(FLASH.get(session.flash, ""))
    path = request.url.path
    nav = [{"href": href, "label": t(label),
            "current": path == href or (href != HOME.get(role or "", "") and
                                        path.startswith(href + "/"))}
           for href, label in NAV.get(role or "", [])]
    html = portal.env.get_template(template).render(
        _=t, t=t, lang=t.lang, direction=t.direction, message_languages=MESSAGE_LANGUAGES,
        languages=lang_links(request, t.lang), nav=nav, role=role,
        csrf=session.csrf if session else "", flash=flash, signed_in=session is not None,
        prefix=PREFIX, path=path, **values)
    response = HTMLResponse(html, status_code=status)
    if session is not None and session.flash:
        session.flash = None
        write_session(response, portal.codec, session)
    remember_language(request, response)
    return response


def remember_language(request: Request, response: Response) -> None:
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        set_secure_cookie(response, LANG_COOKIE, str(chosen), max_age=LANG_MAX_AGE)


def redirect(request: Request, url: str, user: User | None = None,
             flash: str | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if user is not None and flash:
        user.session.flash = flash
        write_session(response, portal_of(request).codec, user.session)
    return response


def origin_of(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


class PortalHeaders:
    """ASGI middleware: the strict headers on every /portal response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(f"{PREFIX}/static/")

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in _REPLACED]
                for name, value in PAGE_HEADERS.items():
                    if static and name == "Cache-Control":
                        value = "public, max-age=3600"
                    headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


_REPLACED = {name.lower() for name in PAGE_HEADERS}

Endpoint = Callable[[Request], Awaitable[Response]]
