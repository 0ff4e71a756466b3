"""The audit record: what one request did to one person's dossier, pseudonymous.

No names, identifiers or search values in clear: patient and actors are named by their
resource ids (pseudonymous), search parameters by a keyed hash of their values.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

READ_ACTIONS = frozenset({"read", "vread", "search", "history", "operation"})
# a professional's list of their own people (names only): recorded and provable, but not
# a consultation the person is told about (a message per name on a list is noise)
LISTING = "caseload-list"


@dataclass(frozen=True)
class Agent:
    who: str | None  # fhirUser: Practitioner/x, Patient/x, Operator/x, Organization/x
    role: str
    client: str | None = None
    on_behalf_of: str | None = None
    organizations: tuple[str, ...] = ()


@dataclass
class Event:
    action: str  # create | read | vread | update | delete | search | history | operation
    resource_type: str
    resource_id: str | None = None
    outcome: str = "success"  # success | denied | not-found | error
    operation: str | None = None
    query: Sequence[tuple[str, str]] | None = None
    detail: str | None = None
    patients: set[str] = field(default_factory=set)
    # the consent decision's reasons, e.g. "permit:Consent/x", "no-grant:psy" (ids, codes)
    reasons: tuple[str, ...] = ()


def hash_query(key: bytes, query: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Parameter names in clear, values as keyed hashes (identifying values stay secret)."""
    out = []
    for name, value in query:
        digest = hmac.new(key, f"{name}={value}".encode(), hashlib.sha256).hexdigest()[:32]
        out.append({"name": name[:64], "value_hash": digest})
    return out


def build_record(*, record_id: str, recorded: datetime, request_id: str, agent: Agent,
                 patient: str | None, events: Sequence[Event], purpose: str | None,
                 query_key: bytes) -> dict[str, Any]:
    """One record: the request's events that concern `patient` (or none)."""
    worst = "success"
    for e in events:
        if e.outcome != "success":
            worst = e.outcome
    return {
        "id": record_id,
        "recorded": recorded.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "request": request_id,
        "action": events[0].action if len({e.action for e in events}) == 1 else "multiple",
        "outcome": worst,
        "purpose": purpose or "TREAT",
        "patient": patient,
        "agent": {k: v for k, v in {
            "who": agent.who, "role": agent.role, "client": agent.client,
            "on_behalf_of": agent.on_behalf_of,
            "organizations": sorted(agent.organizations) or None}.items() if v},
        "events": [{k: v for k, v in {
            "action": e.action, "type": e.resource_type, "id": e.resource_id,
            "operation": e.operation, "outcome": e.outcome, "detail": e.detail,
            "query": hash_query(query_key, e.query) if e.query else None,
            "reasons": list(e.reasons[:10]) or None}.items() if v}
            for e in events],
    }


def is_consultation(record: dict[str, Any]) -> bool:
    """A successful read of a person's dossier by someone other than that person."""
    if record.get("outcome") != "success" or not record.get("patient"):
        return False
    if record["agent"].get("who") == record["patient"]:
        return False
    return any(e["action"] in READ_ACTIONS and e.get("detail") != LISTING
               for e in record["events"])
