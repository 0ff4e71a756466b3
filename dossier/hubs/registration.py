"""POST Organization/{id}/$register-hub: an administrator registers a hub (a regional hub
or another Dossier instance) as a SMART Backend Services client of the embedded issuer.

The hub speaks for that Organization: its tokens carry `fhirUser Organization/{id}`, and
it may act for practitioners with an active PractitionerRole there (token exchange, see
docs/hubs.md). With an external OpenID provider, clients are registered there: 501."""

from __future__ import annotations

import json
import re
from typing import Any

from auth import InvalidToken, parse_scopes
from auth.devissuer import DEV_CLI_CLIENT
from dossier.core.repository import Repository
from dossier.errors import Conflict, Forbidden, NotImplementedHere, Unprocessable
from dossier.fhir import operations
from dossier.fhir.operations import Call

DB = "https://dossier.brussels/fhir"
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-._~]{2,63}")
FIELDS = {"client-id": ("valueString", "valueId", "valueCode"), "jwks": ("valueString",),
          "jwks-uri": ("valueUrl", "valueUri"), "scope": ("valueString",)}
DEFAULT_SCOPE = "system/*.rs"
MAX_JWKS_CHARS = 65_536


def _values(body: dict[str, Any] | None) -> dict[str, str]:
    if not body or body.get("resourceType") != "Parameters":
        raise Unprocessable("Send a Parameters resource with client-id, jwks or jwks-uri, "
                            "and scope.")
    out: dict[str, str] = {}
    for p in body.get("parameter", []):
        name = p.get("name") if isinstance(p, dict) else None
        if name not in FIELDS or name in out:
            raise Unprocessable("Parameters are client-id, jwks (valueString), jwks-uri "
                                "(valueUrl) and scope (valueString), once each.",
                                expression=["Parameters.parameter"])
        value = next((p[k] for k in FIELDS[name] if isinstance(p.get(k), str)), None)
        if value is None:
            raise Unprocessable(f"The parameter {name} has no value of the expected type.",
                                expression=[f"Parameters.parameter.{name}"])
        out[name] = value
    return out


def _client_id(values: dict[str, str]) -> str:
    client_id = values.get("client-id", "")
    if not CLIENT_ID.fullmatch(client_id) or client_id == DEV_CLI_CLIENT:
        raise Unprocessable("client-id must be 3 to 64 letters, digits or -._~.",
                            expression=["Parameters.parameter.client-id"])
    return client_id


def _keys(values: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    if ("jwks" in values) == ("jwks-uri" in values):
        raise Unprocessable("Give the hub's public keys: either jwks or jwks-uri.",
                            expression=["Parameters.parameter"])
    if "jwks-uri" in values:
        return None, values["jwks-uri"]
    text = values["jwks"]
    try:
        jwks = json.loads(text) if len(text) <= MAX_JWKS_CHARS else None
    except ValueError:
        jwks = None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise Unprocessable("jwks must be a JSON Web Key Set: {\"keys\": [...]}.",
                            expression=["Parameters.parameter.jwks"])
    return jwks, None


def _scope(values: dict[str, str]) -> str:
    scope = values.get("scope", DEFAULT_SCOPE)
    try:
        scopes = parse_scopes(scope)
    except InvalidToken:
        scopes = ()
    if not scopes or any(s.context != "system" for s in scopes):
        raise Unprocessable("scope must list SMART system/ scopes, e.g. system/*.rs.",
                            expression=["Parameters.parameter.scope"])
    return scope


def register_hub(repo: Repository, call: Call) -> Any:
    ctx = repo.ctx
    rid = call.resource_id
    params = call.params
    body = call.body
    assert rid is not None
    if any(k != "_format" for k, _ in params):
        raise Unprocessable("$register-hub takes its parameters in a Parameters body.")
    # admin only: the role that keeps the directory may update an Organization
    repo.begin("operation", "Organization", "u")
    if ctx.principal.role != "admin":
        raise Forbidden("Only an administrator registers hubs.")
    repo.read("Organization", rid)  # 404 when it does not exist
    issuer = repo.services.issuer
    if issuer is None:
        raise NotImplementedHere("This server uses an external OpenID provider: register "
                                 "the client at your OpenID provider.")
    values = _values(body)
    client_id, (jwks, jwks_uri), scope = _client_id(values), _keys(values), _scope(values)
    organization = f"Organization/{rid}"
    existing = issuer.client(client_id)
    if existing is not None and (not existing.backend or existing.fhir_user != organization):
        raise Conflict("That client-id is already registered for another client.")
    try:
        issuer.register_client(client_id, jwks=jwks, jwks_uri=jwks_uri, scope=scope,
                               fhir_user=organization)
    except ValueError:
        raise Unprocessable(
            "The keys cannot be registered: give public signing keys (RSA 2048+, P-256, "
            "P-384, Ed25519) or an https jwks-uri (http only on a loopback host).",
            expression=["Parameters.parameter"]) from None
    repo.note_access("operation", "Organization", rid, None)
    out: list[dict[str, Any]] = [
        {"name": "client-id", "valueString": client_id},
        {"name": "organization", "valueReference": {"reference": organization}},
        {"name": "scope", "valueString": scope},
        {"name": "token-endpoint", "valueUrl": issuer.token_endpoint},
    ]
    if jwks_uri:
        out.append({"name": "jwks-uri", "valueUrl": jwks_uri})
    return {"resourceType": "Parameters", "parameter": out}


operations.register(operations.Operation(
    "register-hub", "instance", "Organization", frozenset({"POST"}), register_hub,
    f"{DB}/OperationDefinition/Organization-register-hub"))
