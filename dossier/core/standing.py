"""Who a long-running piece of work acts as (a Bulk Data export, a subscription): the
claims of the token that started it, kept so that every later unit resolves the principal
afresh from the directory (a practitioner who left an organisation loses its grants)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auth import Principal, TokenClaims, parse_scopes


def standing_claims(principal: Principal, relay_org: str | None = None) -> dict[str, Any]:
    """What later decisions are made on (the token itself expires long before).
    `relay_org`: for a hub acting for a practitioner, the Organization the hub is
    registered for — the practitioner must still work there at every later unit."""
    return {"role": principal.role, "client_id": principal.client_id,
            "fhir_user": principal.fhir_user, "subject": principal.subject,
            "scope": " ".join(str(s) for s in principal.scopes), "relay_org": relay_org}


def token_claims(claims: dict[str, Any], now: datetime) -> TokenClaims:
    """Standing claims as the validated claims a unit resolves (KeyError when damaged)."""
    return TokenClaims(subject=claims["subject"], issuer="", client_id=claims["client_id"],
                       fhir_user=claims["fhir_user"], roles=frozenset({claims["role"]}),
                       scopes=parse_scopes(claims["scope"]), expires_at=now,
                       raw_scope=claims["scope"])
