"""CORS for browser apps served from another origin (SMART apps, JavaScript clients).

Off by default. `DOSSIER_CORS_ORIGINS` lists the allowed origins (or `*`); then the API
paths — `/fhir`, `/.well-known`, `/auth` (token, JWKS, discovery), `/bulk`, `/audit` —
answer preflights and carry `Access-Control-Allow-Origin`. The portal never does (it is
same-origin, with cookies). Credentials (cookies, HTTP auth) are allowed only with
`DOSSIER_CORS_ALLOW_CREDENTIALS=true` and explicit origins, never with `*` (the settings
refuse that); a Bearer token needs no credentials mode."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIXES = ("/fhir", "/.well-known", "/auth", "/bulk", "/audit")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
REQUEST_HEADERS = ["Authorization", "Content-Type", "Accept", "Prefer", "If-Match",
                   "If-None-Match", "If-None-Exist", "If-Modified-Since", "X-Request-Id"]
EXPOSED = ["Location", "Content-Location", "ETag", "Last-Modified", "X-Progress",
           "Retry-After", "Expires", "WWW-Authenticate"]


class ApiCors:
    """Starlette's CORSMiddleware, for the API paths only."""

    def __init__(self, app: ASGIApp, origins: list[str], allow_credentials: bool) -> None:
        if allow_credentials and "*" in origins:
            raise ValueError("credentials are never allowed for every origin")
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=METHODS,
                                   allow_headers=REQUEST_HEADERS,
                                   allow_credentials=allow_credentials,
                                   expose_headers=EXPOSED, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if any(path == p or path.startswith(p + "/") for p in API_PREFIXES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
