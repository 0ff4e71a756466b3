"""The citizen's notification choices: GET/POST Patient/{id}/$notification-settings
(language; e-mail; webhook with its HMAC secret). Only the person themself."""

from __future__ import annotations

from typing import Any

from dossier.core.repository import Repository
from dossier.errors import Forbidden, Unprocessable, not_found
from dossier.fhir import operations
from dossier.fhir.operations import Call
from dossier.notify.preferences import get_notification_settings, set_notification_settings

DB = "https://dossier.brussels/fhir"
FIELDS = {"language": "valueCode", "email": "valueString", "webhook": "valueUrl",
          "webhook-secret": "valueString", "email-frequency": "valueCode"}
FREQUENCIES = ("immediate", "daily")


def _values(body: dict[str, Any] | None) -> dict[str, str]:
    if not body or body.get("resourceType") != "Parameters":
        raise Unprocessable("Send a Parameters resource with language, email or webhook.")
    out: dict[str, str] = {}
    for p in body.get("parameter", []):
        name = p.get("name") if isinstance(p, dict) else None
        if name not in FIELDS or not isinstance(p.get(FIELDS[name]), str) or name in out:
            raise Unprocessable("Parameters are language (valueCode), email (valueString), "
                                "webhook (valueUrl), webhook-secret (valueString) and "
                                "email-frequency (valueCode immediate or daily), once each.",
                                expression=["Parameters.parameter"])
        out[name] = p[FIELDS[name]]
    return out


def notification_settings(repo: Repository, call: Call) -> Any:
    ctx = repo.ctx
    rid = call.resource_id
    body = call.body
    assert rid is not None
    repo.begin("operation", "Patient", "r")
    if ctx.principal.role != "citizen":
        raise Forbidden("Only the person chooses how they are notified.")
    if ctx.principal.patient != f"Patient/{rid}" or repo.current_row("Patient", rid) is None:
        raise not_found("Patient")
    repo.note_access("operation", "Patient", rid, f"Patient/{rid}",
                     detail="notification-settings")
    secret = None
    if body is None:
        current = get_notification_settings(repo.services, repo.session, rid)
    else:
        values = _values(body)
        if values.get("email-frequency", "immediate") not in FREQUENCIES:
            raise Unprocessable("email-frequency is immediate or daily.",
                                expression=["Parameters.parameter"])
        try:
            current = set_notification_settings(
                repo.services, repo.session, rid, language=values.get("language", "fr"),
                email=values.get("email"), webhook_url=values.get("webhook"),
                webhook_secret=values.get("webhook-secret"),
                allow_local_webhooks=repo.services.settings.notify_allow_local_webhooks,
                email_digest=values.get("email-frequency") == "daily")
        except ValueError as exc:
            raise Unprocessable(str(exc), expression=["Parameters.parameter"]) from None
        if "webhook" in values and "webhook-secret" not in values:
            secret = current.webhook_secret  # shown once, when the server made it
    parameters: list[dict[str, Any]] = [
        {"name": "language", "valueCode": current.language if current else "fr"}]
    for channel in (current.channels if current else ("inbox",)):
        parameters.append({"name": "channel", "valueCode": channel})
    if current and current.email:
        parameters.append({"name": "email", "valueString": current.email})
    if current and current.email:
        parameters.append({"name": "email-frequency",
                           "valueCode": "daily" if current.email_digest else "immediate"})
    if current and current.webhook_url:
        parameters.append({"name": "webhook", "valueUrl": current.webhook_url})
    if secret:
        parameters.append({"name": "webhook-secret", "valueString": secret})
    return {"resourceType": "Parameters", "parameter": parameters}


operations.register(operations.Operation(
    "notification-settings", "instance", "Patient", frozenset({"GET", "POST"}),
    notification_settings, f"{DB}/OperationDefinition/Patient-notification-settings"))
