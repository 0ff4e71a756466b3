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
