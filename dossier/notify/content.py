"""What a notification says and where the inbox copy is stored (SPEC §6, §12).

`prepare` reads, in the worker's transaction, the audit records of a group of outbox
rows, their log indexes, the actor's and organisations' directory names, the citizen's
language and the channel's (opened) contact; `communication` builds the §12 resource;
`write_server_resource` stores it through the repository's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

import schemas
from audit.notify import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Access,
    Message,
    access_from_record,
    compose,
    compose_digest,
)
from audit.transport import DeliveryError
from dossier.core.repository import Repository, Stored, new_id
from dossier.db.models import (
    audit_records,
    notification_settings,
    patient_keys,
    resources,
)
from dossier.db.tx import Tx
from dossier.notify.preferences import get_notification_settings

R = resources.c
SENDER_TYPES = ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson")


@dataclass(frozen=True)
class Prepared:
    message: Message
    accesses: list[Access]
    contact: dict[str, Any]  # {"email"} or {"url", "secret"}; {} for the inbox


def prepare(runtime: Any, session: Tx, patient_id: str, channel: str,
            record_ids: Sequence[str], urgent_ids: set[str], base_url: str,
            digest: bool = False) -> Prepared:
    """Everything one delivery needs, or a DeliveryError (no personal data in it)."""
    erased = session.execute(select(patient_keys.c.erased_at).where(
        patient_keys.c.patient_id == patient_id)).scalar_one_or_none()
    if erased is not None:
        raise DeliveryError("dossier erased", permanent=True)
    contact: dict[str, Any] = {}
    if channel == "inbox":  # the language only: no data key needed
        language = session.execute(select(notification_settings.c.language).where(
            notification_settings.c.patient_id == patient_id)).scalar_one_or_none()
    else:
        chosen = get_notification_settings(runtime, session, patient_id)
        language = chosen.language if chosen else None
        if channel == "email" and chosen and chosen.email:
            contact = {"email": chosen.email}
        elif channel == "webhook" and chosen and chosen.webhook_url and chosen.webhook_secret:
            contact = {"url": chosen.webhook_url, "secret": chosen.webhook_secret}
        else:
            raise DeliveryError("channel no longer chosen", permanent=True)
    accesses = load_accesses(runtime, session, record_ids, urgent_ids)
    write = compose_digest if digest else compose
    message = write(accesses, language or patient_language(session, patient_id),
                    "" if channel == "inbox" else base_url)
    return Prepared(message, accesses, contact)


def load_accesses(runtime: Any, session: Tx, record_ids: Sequence[str],
                  urgent_ids: set[str]) -> list[Access]:
    ids = list(dict.fromkeys(record_ids))
    records = {r.id: r.record for r in session.execute(
        select(audit_records.c.id, audit_records.c.record).where(
            audit_records.c.id.in_(ids))).all()}
    if len(records) != len(ids):
        raise DeliveryError("audit record missing", permanent=True)
    index = runtime.audit_store.index_of(session, ids)
    size = runtime.audit_store.signed_size(session)
    refs: set[str] = set()
    for record in records.values():
        agent = record.get("agent") or {}
        refs.update(r for r in (agent.get("who"), agent.get("on_behalf_of")) if r)
        refs.update(agent.get("organizations") or ())
    names = directory_names(session, refs)
    return [access_from_record(records[i], urgent=i in urgent_ids, names=names,
                               log_index=index.get(i), tree_size=size) for i in ids]


def directory_names(session: Tx, refs: set[str]) -> dict[str, str]:
    """Display names of practitioners and organisations (directory data, never sealed)."""
    wanted = [r.split("/", 1) for r in refs if r.startswith(("Practitioner/", "Organization/"))]
    names: dict[str, str] = {}
    if not wanted:
        return names
    rows = session.execute(select(R.res_type, R.res_id, R.content, R.sealed).where(
        R.res_type.in_({t for t, _ in wanted}), R.res_id.in_({i for _, i in wanted}))).all()
    for row in rows:
        content = row.content or {}
        if row.sealed:
            continue
        if row.res_type == "Organization" and isinstance(content.get("name"), str):
            names[f"Organization/{row.res_id}"] = content["name"]
        elif row.res_type == "Practitioner":
            name = (content.get("name") or [{}])[0]
            parts = [*(name.get("prefix") or []), *(name.get("given") or []),
                     name.get("family") or ""]
            text = " ".join(p for p in parts if isinstance(p, str) and p).strip()
            if text:
                names[f"Practitioner/{row.res_id}"] = text
    return names


def patient_language(session: Tx, patient_id: str) -> str:
    """The Patient's preferred communication language (fr/nl/en), else French."""
    content = session.execute(select(R.content).where(
        R.res_type == "Patient", R.res_id == patient_id)).scalar_one_or_none() or {}
    entries = sorted(content.get("communication") or [], key=lambda c: not c.get("preferred"))
    for entry in entries:
        for coding in (entry.get("language") or {}).get("coding") or []:
            code = str(coding.get("code") or "").split("-", 1)[0].lower()
            if code in LANGUAGES:
                return code
    return DEFAULT_LANGUAGE


def communication(patient_id: str, accesses: Sequence[Access], message: Message,
                  now: datetime) -> dict[str, Any]:
    """The §12 access notification for the citizen's inbox."""
    patient = {"reference": f"Patient/{patient_id}"}
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": new_id(),
        "status": "completed",
        "category": [{"coding": [{"system": schemas.COMMUNICATION_CATEGORY_SYSTEM,
                                  "code": schemas.ACCESS_NOTIFICATION}]}],
        "priority": "urgent" if message.urgent else "routine",
        "subject": patient,
        "recipient": [dict(patient)],
        "sent": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "about": [{"reference": f"AuditEvent/{rid}"} for rid in message.record_ids],
        "payload": [{"contentString": message.text}],
    }
    sender = accesses[0].actor if accesses else None
    if sender and sender.split("/", 1)[0] in SENDER_TYPES:  # operators, bare clients: none
        resource["sender"] = {"reference": sender}
    return resource


def write_server_resource(repo: Repository, resource: dict[str, Any]) -> Stored:
    """Store the server-written Communication through the choke point. The builder
    (`communication`) makes a valid R4 Communication whatever it lists (a property test
    checks it), so the model is not run again on every delivery."""
    return repo.create_server_resource(resource, check_model=False)  # test_notice_model.py
