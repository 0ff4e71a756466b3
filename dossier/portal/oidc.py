"""Signing in: OAuth 2.0 authorization code with PKCE (S256), as a public client.

On the embedded default the portal registers itself with the dev issuer at start and
exchanges the code in-process (the same `exchange_code` the issuer's /auth/token runs).
With an external issuer it reads the issuer's discovery document and posts to its token
endpoint. Settings for the external case (read with defaults, see the lead's report):
`portal_client_id` ("dossier-portal"), `portal_client_secret` (none: public client),
`portal_scope`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

DEFAULT_CLIENT_ID = "dossier-portal"
DEFAULT_SCOPE = "openid fhirUser launch/patient patient/*.cruds user/*.cruds"


class SignInError(Exception):
    """The sign-in could not be completed (the reason is for logs, never shown raw)."""


@dataclass
class OidcClient:
    client_id: str
    redirect_uri: str
    scope: str
    issuer: str
    discover: Callable[[], dict[str, Any]]
    exchange: Callable[[dict[str, str]], dict[str, Any]]

    def authorize_url(self, state: str, challenge: str, nonce: str,
                      language: str | None = None) -> str:
        """`language`: the portal's, as `ui_locales`, so the sign-in page speaks it."""
        endpoint = str(self.discover()["authorization_endpoint"])
        params = {
            "response_type": "code", "client_id": self.client_id,
            "redirect_uri": self.redirect_uri, "scope": self.scope, "state": state,
            "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256",
        }
        if language:
            params["ui_locales"] = language
        query = urlencode(params)
        return f"{endpoint}?{query}"

    def redeem(self, code: str, verifier: str) -> str:
        """The access token for an authorization code."""
        body = self.exchange({"grant_type": "authorization_code", "code": code,
                              "redirect_uri": self.redirect_uri, "client_id": self.client_id,
                              "code_verifier": verifier})
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise SignInError("no access token in the token response")
        return token


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def embedded_client(issuer: Any, base: str) -> OidcClient:
    """The portal as a public client of the embedded dev issuer (registered here)."""
    from auth.devflows import exchange_code
    from auth.errors import OAuthError

    redirect_uri = f"{base}/portal/callback"
    issuer.register_client(DEFAULT_CLIENT_ID, redirect_uris=[redirect_uri])

    def exchange(form: dict[str, str]) -> dict[str, Any]:
        try:
            return exchange_code(issuer, form)
        except OAuthError as error:
            raise SignInError(error.error) from None

    return OidcClient(DEFAULT_CLIENT_ID, redirect_uri, DEFAULT_SCOPE, issuer.issuer,
                      issuer.discovery, exchange)


def external_client(settings: Any, base: str) -> OidcClient:
    """The portal as a client of an external OpenID provider."""
    issuer = str(settings.oidc_issuer).rstrip("/")
    client_id = getattr(settings, "portal_client_id", None) or DEFAULT_CLIENT_ID
    secret = getattr(settings, "portal_client_secret", None)
    scope = getattr(settings, "portal_scope", None) or DEFAULT_SCOPE
    cache: dict[str, Any] = {}

    def discover() -> dict[str, Any]:
        if not cache:
            try:
                with httpx.Client(timeout=10.0, follow_redirects=False) as http:
                    doc = http.get(f"{issuer}/.well-known/openid-configuration")
                    doc.raise_for_status()
                    value = doc.json()
            except (httpx.HTTPError, ValueError):
                raise SignInError("issuer discovery failed") from None
            if not isinstance(value, dict) or value.get("issuer") != issuer:
                raise SignInError("issuer discovery document does not match")
            cache.update(value)
        return cache

    def exchange(form: dict[str, str]) -> dict[str, Any]:
        data = dict(form)
        if secret:
            data["client_secret"] = str(secret)
        try:
            with httpx.Client(timeout=10.0, follow_redirects=False) as http:
                answer = http.post(str(discover()["token_endpoint"]), data=data)
                answer.raise_for_status()
                value = answer.json()
        except (httpx.HTTPError, ValueError):
            raise SignInError("token request failed") from None
        if not isinstance(value, dict):
            raise SignInError("token response is not an object")
        return value

    return OidcClient(client_id, f"{base}/portal/callback", scope, issuer, discover, exchange)
