"""The dev issuer's OAuth flows, apart from HTTP: authorization code + PKCE, client credentials.

Each function raises ``OAuthError`` with the RFC 6749 error code to answer.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from auth.accounts import Account
from auth.clientauth import (
    ASSERTION_TYPE,
    assertion_client_id,
    verify_assertion,
    verify_subject_token,
)
from auth.devissuer import DEFAULT_SCOPES, Client, DevIssuer, demo_user
from auth.errors import InvalidToken, OAuthError, invalid_client
from auth.rules import SCOPE_CONTEXT, Role
from auth.scopes import NON_RESOURCE_SCOPES, Scope, covered, format_scopes, parse_scopes

CODE_TTL = 60
USER_TOKEN_TTL = 3600
HUB_TOKEN_TTL = 300
_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_VERIFIER = _CHALLENGE
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN, not a secret
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636)."""

    client: Client
    redirect_uri: str
    state: str | None
    scope: str
    code_challenge: str
    nonce: str | None


class RedirectError(Exception):
    """An authorization error to report by redirecting back to the client (RFC 6749 §4.1.2.1)."""

    def __init__(self, redirect_uri: str, error: str, state: str | None) -> None:
        super().__init__(error)
        self.redirect_uri = redirect_uri
        self.error = error
        self.state = state


def check_authorization_request(issuer: DevIssuer,
                                params: Mapping[str, str]) -> AuthorizationRequest:
    """Validate an authorization request.

    An unknown client or redirect URI is an ``OAuthError`` shown to the user, never
    a redirect; any other fault is a ``RedirectError`` back to the client.
    """
    client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
    client = issuer.client(client_id) if client_id else None
    if client is None or client.backend:
        raise OAuthError("invalid_request", "Unknown client.")
    if redirect_uri not in client.redirect_uris:
        raise OAuthError("invalid_request", "The redirect URI is not registered for this client.")
    state = params.get("state") or None
    if params.get("response_type") != "code":
        raise RedirectError(redirect_uri, "unsupported_response_type", state)
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256" or not _CHALLENGE.fullmatch(challenge):
        raise RedirectError(redirect_uri, "invalid_request", state)
    scope = params.get("scope", "")
    try:
        parse_scopes(scope)
    except InvalidToken:
        raise RedirectError(redirect_uri, "invalid_scope", state) from None
    return AuthorizationRequest(client, redirect_uri, state, scope, challenge,
                                params.get("nonce") or None)


def granted_scope(requested: str, role: Role, registered: str) -> str:
    """What is granted of ``requested``: scopes in the role's context that the client may ask for.

    Nothing requested gives the role's default scopes.
    """
    context = SCOPE_CONTEXT[role]
    allowed = [s for s in parse_scopes(registered) if s.context == context]
    wanted = parse_scopes(requested)
    resource = [s for s in wanted if s.context == context and covered(allowed, s)]
    if not wanted:
        resource = [s for s in parse_scopes(DEFAULT_SCOPES[role]) if covered(allowed, s)]
    if not resource:
        raise OAuthError("invalid_scope", "None of the requested scopes can be granted.")
    kept = [t for t in requested.split(" ") if t in NON_RESOURCE_SCOPES
            and t in registered.split() and (t != "launch/patient" or role == "citizen")]
    return " ".join([*dict.fromkeys(kept), format_scopes(resource)])


def issue_code(issuer: DevIssuer, request: AuthorizationRequest, user: Account) -> str:
    """A single-use authorization code for ``user``, valid one minute (kept in the
    issuer's state: any process of the service redeems it, only once)."""
    scope = granted_scope(request.scope, user.roles[0], request.client.scope)
    code = secrets.token_urlsafe(32)
    issuer.state.put_code(code, {
        "client_id": request.client.client_id, "redirect_uri": request.redirect_uri,
        "challenge": request.code_challenge, "user": user.username, "scope": scope,
        "nonce": request.nonce,
    }, time.time() + CODE_TTL)
    return code


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def exchange_code(issuer: DevIssuer, form: Mapping[str, str]) -> dict[str, Any]:
    """The token response for ``grant_type=authorization_code``."""
    client = issuer.client(form.get("client_id", ""))
    if client is None or client.backend:
        raise invalid_client("Unknown public client.")
    code = form.get("code", "")
    entry = issuer.state.take_code(code, time.time()) if code else None  # single use
    verifier = form.get("code_verifier", "")
    if (entry is None or entry["client_id"] != client.client_id
            or entry["redirect_uri"] != form.get("redirect_uri")):
        raise OAuthError("invalid_grant", "The authorization code is invalid or expired.")
    if not _VERIFIER.fullmatch(verifier) or not secrets.compare_digest(
            pkce_challenge(verifier), entry["challenge"]):
        raise OAuthError("invalid_grant", "The PKCE code verifier does not match.")
    found = issuer.state.account(entry["user"])  # removed since: no token
    user = found[0] if found else None
    if user is None:
        raise OAuthError("invalid_grant", "The authorization code is invalid or expired.")
    token = issuer.mint(user.fhir_user, list(user.roles), entry["scope"], USER_TOKEN_TTL,
                        client_id=client.client_id, niss=_niss_of(user.username))
    response: dict[str, Any] = {"access_token": token, "token_type": "Bearer",
                                "expires_in": USER_TOKEN_TTL, "scope": entry["scope"]}
    if user.fhir_user.startswith("Patient/"):
        response["patient"] = user.fhir_user.removeprefix("Patient/")  # SMART launch context
    if "openid" in entry["scope"].split():
        response["id_token"] = _id_token(issuer, user, client.client_id, entry["nonce"])
    return response


def _niss_of(username: str) -> str | None:
    """A demo citizen's national number: their token carries it (SPEC §8, §13)."""
    demo = demo_user(username)
    return demo.niss if demo is not None else None


def _id_token(issuer: DevIssuer, user: Account, client_id: str, nonce: str | None) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {"iss": issuer.issuer, "sub": user.fhir_user or user.username,
                              "aud": client_id, "iat": now, "exp": now + USER_TOKEN_TTL,
                              "azp": client_id, "name": user.name}
    if user.fhir_user:  # a representative without a dossier has none (SPEC §13)
        claims["fhirUser"] = user.fhir_user
    if nonce:
        claims["nonce"] = nonce
    return issuer.sign(claims, typ="JWT")


def backend_client(issuer: DevIssuer, form: Mapping[str, str]) -> Client:
    """The backend client that ``form`` authenticates with ``private_key_jwt``."""
    assertion = form.get("client_assertion", "")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        raise invalid_client("private_key_jwt client authentication is required.")
    client_id = assertion_client_id(assertion)
    if form.get("client_id") not in (None, "", client_id):
        raise invalid_client("client_id does not match the client_assertion.")
    client = issuer.client(client_id)
    if client is None or not client.backend:
        raise invalid_client("Unknown client.")
    verify_assertion(assertion, client_id=client_id, jwks=issuer.client_jwks(client),
                     token_endpoint=issuer.token_endpoint, replay=issuer.state,
                     now=datetime.now(UTC))
    return client


def client_credentials(issuer: DevIssuer, form: Mapping[str, str]) -> dict[str, Any]:
    """The token response for ``grant_type=client_credentials`` (SMART Backend Services)."""
    client = backend_client(issuer, form)
    scope = _system_scope(form.get("scope", ""), client.scope)
    token = issuer.mint(client.fhir_user, ["hub"], scope, HUB_TOKEN_TTL,
                        client_id=client.client_id, subject=client.client_id)
    return {"access_token": token, "token_type": "Bearer", "expires_in": HUB_TOKEN_TTL,
            "scope": scope}


def token_exchange(issuer: DevIssuer, form: Mapping[str, str]) -> dict[str, Any]:
    """RFC 8693 token exchange: a hub relays a practitioner it authenticated.

    The hub authenticates itself (``private_key_jwt``) and sends a ``subject_token``: a
    JWT it signs with the same registered keys, ``sub`` = ``Practitioner/x``. The access
    token then acts for that practitioner (``fhirUser``, ``sub``) with ``act.sub`` = the
    hub. A hub may only act for an active practitioner with an active PractitionerRole in
    the Organization it was registered for (read from the service's directory)."""
    client = backend_client(issuer, form)
    if issuer.directory is None or not (client.fhir_user or "").startswith("Organization/"):
        raise OAuthError("unauthorized_client", "Only a client registered for an Organization "
                                                "may act for its practitioners.")
    if form.get("subject_token_type") != JWT_TOKEN_TYPE or not form.get("subject_token"):
        raise OAuthError("invalid_request", f"subject_token_type must be {JWT_TOKEN_TYPE} "
                                            "with a subject_token.")
    if form.get("requested_token_type") not in (None, "", ACCESS_TOKEN_TYPE):
        raise OAuthError("invalid_request", "Only access tokens are issued.")
    if form.get("actor_token") or form.get("resource") or form.get("audience"):
        raise OAuthError("invalid_request", "actor_token, resource and audience are not "
                                            "supported: the client is the actor.")
    now = datetime.now(UTC)
    subject = verify_subject_token(
        form["subject_token"], client_id=client.client_id, jwks=issuer.client_jwks(client),
        token_endpoint=issuer.token_endpoint, replay=issuer.state, now=now)
    practitioner = _fhir_reference(subject, issuer.audience)
    if not may_act_for(issuer, client, practitioner, now):
        raise OAuthError("invalid_request", "This client may not act for that user.")
    scope = _system_scope(form.get("scope", ""), client.scope)
    token = issuer.mint(practitioner, ["hub"], scope, HUB_TOKEN_TTL,
                        client_id=client.client_id, subject=practitioner,
                        extra_claims={"act": {"sub": client.client_id}})
    return {"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer", "expires_in": HUB_TOKEN_TTL, "scope": scope}


def may_act_for(issuer: DevIssuer, client: Client, practitioner: str, at: datetime) -> bool:
    """The client speaks for an Organization where ``practitioner`` is active now."""
    directory, org = issuer.directory, client.fhir_user
    if directory is None or not org or not org.startswith("Organization/"):
        return False
    if not practitioner.startswith("Practitioner/") or \
            not directory.practitioner_active(practitioner):
        return False
    return any(member == org for member, _ in directory.active_roles(practitioner, at))


def _fhir_reference(subject: str, fhir_base: str) -> str:
    """``Practitioner/x``, also when the subject token names it by absolute URL."""
    prefix = fhir_base.rstrip("/") + "/"
    return subject[len(prefix):] if subject.startswith(prefix) else subject


def _system_scope(requested: str, registered: str) -> str:
    try:
        wanted = parse_scopes(requested)
    except InvalidToken:
        raise OAuthError("invalid_scope", "The scope is not understood.") from None
    allowed: list[Scope] = list(parse_scopes(registered))
    if not wanted:
        return format_scopes(allowed)
    if any(s.context != "system" or not covered(allowed, s) for s in wanted):
        raise OAuthError("invalid_scope", "The client may not be granted that scope.")
    return format_scopes(wanted)
