"""What one request carries through the choke point: who acts, why, when."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from auth import Principal


@dataclass
class RequestContext:
    principal: Principal
    purpose: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    base_url: str = ""


def owner_of(p: Principal) -> str:
    """Who owns what a request starts (an export, a subscription, a roster): the same role,
    client and user (or the practitioner relayed) — only they see it afterwards."""
    return "|".join([p.role, p.client_id or "", p.fhir_user or "", p.on_behalf_of or ""])[:255]
