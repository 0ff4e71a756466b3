"""What one request carries through the choke point: who acts, why, when.

The token is validated before the unit (signature and claims: no database); the
principal — a practitioner's organisations and professions from the directory — is
resolved inside the unit's own transaction, so roles, consents and data are read from one
snapshot (SPEC §15). Until then `principal` is UNRESOLVED, which every gate refuses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from auth import Principal, TokenClaims, role_of

UNRESOLVED = Principal(role="none", roles=frozenset(), fhir_user=None,  # type: ignore[arg-type]
                       patient=None, practitioner=None, organizations=frozenset(),
                       professions=frozenset(), client_id=None, scopes=(), on_behalf_of=None)


@dataclass
class RequestContext:
    principal: Principal = UNRESOLVED
    claims: TokenClaims | None = None  # a validated token, resolved in the unit
    purpose: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    base_url: str = ""

    @property
    def role(self) -> str:
        """The actor's role, known from the token before the principal is resolved."""
        if self.principal is not UNRESOLVED:
            return self.principal.role
        return role_of(self.claims) if self.claims is not None else "none"

    @property
    def fhir_user(self) -> str | None:
        if self.principal is not UNRESOLVED:
            return self.principal.fhir_user
        return self.claims.fhir_user if self.claims is not None else None


def owner_of(p: Principal) -> str:
    """Who owns what a request starts (an export, a subscription, a roster): the same role,
    client and user (or the practitioner relayed) — only they see it afterwards."""
    return "|".join([p.role, p.client_id or "", p.fhir_user or "", p.on_behalf_of or ""])[:255]
