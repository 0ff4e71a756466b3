"""What the token endpoint tells the service about each decision, for its audit log.

Refusals carry the client id the request *claimed* (unverified: the form's client_id or
the client assertion's `iss`), reduced to a safe client-id shape; issued tokens carry
what the issuer itself put in the token."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

_CLIENT_ID = re.compile(r"[A-Za-z0-9\-._~]{1,64}")


@dataclass(frozen=True)
class TokenEvent:
    grant: str  # the grant_type asked for (cut to 64 characters)
    outcome: str  # "success" or the OAuth error code
    client: str | None  # verified when outcome is success, claimed otherwise
    fhir_user: str | None = None  # success only: whom the token names
    on_behalf_of: str | None = None  # success of a token exchange: the practitioner
    role: str | None = None  # success only


def _payload(token: str | None) -> dict[str, Any]:
    """The JSON payload of a compact JWS, unverified ({} when it is not one)."""
    try:
        part = (token or "").split(".")[1]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _safe(value: Any) -> str | None:
    return value if isinstance(value, str) and _CLIENT_ID.fullmatch(value) else None


def token_event(grant_type: str | None, form: dict[str, str], outcome: str,
                issued: str | None) -> TokenEvent:
    grant = (grant_type or "")[:64]
    if issued is None:
        claimed = _safe(form.get("client_id")) or _safe(
            _payload(form.get("client_assertion")).get("iss"))
        return TokenEvent(grant, outcome[:64], claimed)
    claims = _payload(issued)  # our own token, just signed
    roles = claims.get("roles") or [None]
    act = claims.get("act") if isinstance(claims.get("act"), dict) else None
    return TokenEvent(grant, outcome, _safe(claims.get("client_id")), claims.get("fhirUser"),
                      claims.get("fhirUser") if act else None, roles[0])
