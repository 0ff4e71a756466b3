"""What one request carries through the choke point: who acts, why, when."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Principal:
    """The authenticated actor, as resolved by auth/ (roles from the token, the rest from
    the server's own directory)."""

    role: str  # citizen | practitioner | auditor | admin | hub | operator
    fhir_user: str | None = None
    patient: str | None = None  # "Patient/x" when the actor is the citizen
    practitioner: str | None = None
    organizations: frozenset[str] = frozenset()
    professions: frozenset[str] = frozenset()
    client_id: str | None = None
    scopes: tuple[Any, ...] = ()
    on_behalf_of: str | None = None
    roles: frozenset[str] = frozenset()


@dataclass
class RequestContext:
    principal: Principal
    purpose: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    base_url: str = ""
