"""Messages to a professional: server-written Communications in the person's dossier that
only their addressee reads (resources.addressee; core/access.py). Coded, never free text:
the portal and clients render them from the category and what they are about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import schemas
from dossier.core.repository import Repository, Stored, new_id
from dossier.stores.pro_email import ProEmail

CATEGORIES = ("referral", "referral-answer", "discharge-request", "discharge-confirmation",
              "discharge-refusal", "access-granted", "access-withdrawn")


def message(patient_id: str, recipient: str, category: str, about: list[str], now: datetime,
            *, sender: str | None = None, reason: dict[str, Any] | None = None,
            in_response_to: str | None = None) -> dict[str, Any]:
    assert category in CATEGORIES
    resource: dict[str, Any] = {
        "resourceType": "Communication", "id": new_id(), "status": "completed",
        "category": [{"coding": [{"system": schemas.COMMUNICATION_CATEGORY_SYSTEM,
                                  "code": category}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "recipient": [{"reference": recipient}],
        "sent": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "about": [{"reference": a} for a in about],
    }
    if sender:
        resource["sender"] = {"reference": sender}
    if reason:
        resource["reasonCode"] = [reason]
    if in_response_to:
        resource["inResponseTo"] = [{"reference": in_response_to}]
    return resource


def send(repo: Repository, resource: dict[str, Any]) -> Stored:
    """Store the message for its one recipient, in the request's transaction; if they set
    an address for inbox notices, queue one e-mail (no personal data) in the same one."""
    recipient = resource["recipient"][0]["reference"]
    assert recipient.startswith("Practitioner/")
    stored = repo.create_server_resource(resource, addressee=recipient)
    patient_id = resource["subject"]["reference"].split("/", 1)[1]
    repo.store(ProEmail).enqueue(recipient, patient_id, resource["id"], repo.ctx.now)
    return stored
