"""HTTP endpoints of the dev issuer, mounted by the service at ``/auth``."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from auth.accounts import authenticate
from auth.devflows import (
    AuthorizationRequest,
    RedirectError,
    check_authorization_request,
    client_credentials,
    exchange_code,
    issue_code,
    token_exchange,
)
from auth.devissuer import TOKEN_EXCHANGE, DevIssuer
from auth.errors import OAuthError
from auth.signin_texts import STYLE, language_of, texts
from auth.tokenevents import TokenEvent, token_event

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_AUTHORIZE_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state",
                     "code_challenge", "code_challenge_method", "nonce", "ui_locales")
FormField = Annotated[str | None, Form()]


def build_router(issuer: DevIssuer) -> APIRouter:
    router = APIRouter(tags=["dev issuer"])

    @router.get("/.well-known/openid-configuration")
    def discovery() -> JSONResponse:
        return JSONResponse(issuer.discovery())

    @router.get("/jwks")
    def jwks() -> JSONResponse:
        return JSONResponse(issuer.jwks(), headers={"Cache-Control": "max-age=300"})

    @router.get("/authorize")
    def authorize_page(request: Request) -> Response:
        params = {name: request.query_params.get(name, "") for name in _AUTHORIZE_FIELDS}
        try:
            checked = check_authorization_request(issuer, params)
        except OAuthError as error:
            return _error_page(error)
        except RedirectError as error:
            return _redirect(error.redirect_uri, issuer, error=error.error, state=error.state)
        return HTMLResponse(_sign_in_page(checked, params),
                            headers=_sign_in_headers(checked.redirect_uri))

    @router.post("/authorize")
    def authorize(
        request: Request, username: FormField = None, password: FormField = None,
        response_type: FormField = None, client_id: FormField = None,
        redirect_uri: FormField = None, scope: FormField = None, state: FormField = None,
        code_challenge: FormField = None, code_challenge_method: FormField = None,
        nonce: FormField = None, ui_locales: FormField = None,
    ) -> Response:
        params = {
            "response_type": response_type, "client_id": client_id,
            "redirect_uri": redirect_uri, "scope": scope, "state": state,
            "code_challenge": code_challenge, "code_challenge_method": code_challenge_method,
            "nonce": nonce, "ui_locales": ui_locales,
        }
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            checked = check_authorization_request(issuer, clean)
            chosen = authenticate(issuer.state, username or "", password or "")
            if chosen is None:  # the same page again: nobody is signed in without a password
                _refused(issuer, request)
                return HTMLResponse(_sign_in_page(checked, clean, failed=True),
                                    status_code=401,
                                    headers=_sign_in_headers(checked.redirect_uri))
            code = issue_code(issuer, checked, chosen)
        except OAuthError as error:
            if error.error == "invalid_scope" and clean.get("redirect_uri"):
                return _redirect(clean["redirect_uri"], issuer, error=error.error,
                                 state=clean.get("state"))
            return _error_page(error)
        except RedirectError as error:
            return _redirect(error.redirect_uri, issuer, error=error.error, state=error.state)
        return _redirect(checked.redirect_uri, issuer, code=code, state=checked.state)

    @router.post("/token")
    def token(
        request: Request, grant_type: FormField = None, code: FormField = None,
        redirect_uri: FormField = None,
        client_id: FormField = None, code_verifier: FormField = None, scope: FormField = None,
        client_assertion_type: FormField = None, client_assertion: FormField = None,
        subject_token: FormField = None, subject_token_type: FormField = None,
        requested_token_type: FormField = None, actor_token: FormField = None,
        resource: FormField = None, audience: FormField = None,
    ) -> JSONResponse:
        form = {
            "code": code, "redirect_uri": redirect_uri, "client_id": client_id,
            "code_verifier": code_verifier, "scope": scope,
            "client_assertion_type": client_assertion_type, "client_assertion": client_assertion,
            "subject_token": subject_token, "subject_token_type": subject_token_type,
            "requested_token_type": requested_token_type, "actor_token": actor_token,
            "resource": resource, "audience": audience,
        }
        clean = {k: v for k, v in form.items() if v is not None}
        try:
            if grant_type == "authorization_code":
                body: dict[str, Any] = exchange_code(issuer, clean)
            elif grant_type == "client_credentials":
                body = client_credentials(issuer, clean)
            elif grant_type == TOKEN_EXCHANGE:
                body = token_exchange(issuer, clean)
            elif not grant_type:
                raise OAuthError("invalid_request", "grant_type is required.")
            else:
                raise OAuthError("unsupported_grant_type", "This grant type is not supported.")
        except OAuthError as error:
            _refused(issuer, request)
            if not _told(issuer, token_event(grant_type, clean, error.error, None)):
                return _unavailable()
            return JSONResponse(error.body(), status_code=error.status,
                                headers={**_NO_STORE, **_challenge(error)})
        if grant_type != "authorization_code" and not _told(
                issuer, token_event(grant_type, clean, "success", body["access_token"])):
            return _unavailable()  # a hub's token that cannot be logged is not issued
        return JSONResponse(body, headers=_NO_STORE)

    return router


def _refused(issuer: DevIssuer, request: Request) -> None:
    if issuer.on_refusal is not None:
        issuer.on_refusal(request.client.host if request.client else "unknown")


def _sign_in_headers(redirect_uri: str) -> dict[str, str]:
    """The sign-in page's headers. Its form posts here and is answered by a redirect to
    the client's registered redirect URI; browsers apply `form-action` to that redirect
    too, so the client's origin is allowed besides 'self' (a SMART app on another origin)."""
    parts = urlsplit(redirect_uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    csp = _PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {origin}")
    return {**_PAGE_HEADERS, "Content-Security-Policy": csp}


def _told(issuer: DevIssuer, event: TokenEvent) -> bool:
    """Tell the service (its audit log) of a token decision; False when it could not."""
    if issuer.on_token is None:
        return True
    try:
        issuer.on_token(event)
    except Exception:  # noqa: BLE001 - fail closed, whatever the cause
        return False
    return True


def _unavailable() -> JSONResponse:
    return JSONResponse({"error": "temporarily_unavailable",
                         "error_description": "The access log cannot be written; no token "
                                              "was issued."},
                        status_code=503, headers=_NO_STORE)


def _challenge(error: OAuthError) -> dict[str, str]:
    # RFC 6749 §5.2: a 401 carries the scheme the client should use.
    return {"WWW-Authenticate": 'Bearer realm="dossier-dev-issuer"'} if error.status == 401 else {}


def _redirect(redirect_uri: str, issuer: DevIssuer, **params: str | None) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    values = {k: v for k, v in params.items() if v is not None}
    values["iss"] = issuer.issuer  # RFC 9207
    query = "&".join(filter(None, [parts.query, urlencode(values)]))
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=303,
                            headers=_NO_STORE)


def _error_page(error: OAuthError) -> HTMLResponse:
    body = (f"<h1>Sign-in request refused</h1><p>{escape(error.description)}</p>"
            f"<p><code>{escape(error.error)}</code></p>")
    return HTMLResponse(_page(body), status_code=400, headers=_PAGE_HEADERS)


def _sign_in_page(request: AuthorizationRequest, params: dict[str, str],
                  failed: bool = False) -> str:
    lang = language_of(params.get("ui_locales"))
    words = texts(lang)
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(value)}">'
        for name, value in params.items() if value and name in _AUTHORIZE_FIELDS
    )
    client = f"<strong>{escape(request.client.client_id)}</strong>"
    error = (f'<p role="alert" id="error"><strong>{escape(words["wrong"])}</strong></p>'
             if failed else "")
    body = (
        f"<h1>{escape(words['title'])}</h1>"
        f"<p>{escape(words['asks']).format(client=client)}</p>"
        f'{error}<form method="post" action="authorize">{hidden}'
        f'<p><label for="username">{escape(words["username"])}</label><br>'
        '<input id="username" name="username" autocomplete="username" required'
        ' maxlength="64"></p>'
        f'<p><label for="password">{escape(words["password"])}</label><br>'
        '<input id="password" name="password" type="password" required'
        ' autocomplete="current-password" maxlength="1024"></p>'
        f'<p><button type="submit">{escape(words["submit"])}</button></p></form>'
        f'<p class="hint">{escape(words["dev"])}</p>'
    )
    return _page(body, lang)


def _page(body: str, lang: str = "en") -> str:
    """The page around `body`, in `lang`, with the portal's look (inline style)."""
    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(texts(lang)['title'])}</title>"
        f"<style>{STYLE}</style>"
        '</head><body><header><p>Dossier</p></header>'
        f"<main>{body}</main></body></html>"
    )
