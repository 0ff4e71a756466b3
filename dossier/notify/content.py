"""What a notification says and where the inbox copy is stored (SPEC §6, §12).

`prepare` reads, in the worker's transaction, the audit records of a group of outbox
rows, their log indexes, the actor's and organisations' directory names, the citizen's
language and the channel's (opened) contact; `prepare_inboxes` does the same for all
the inbox groups of a batch with a fixed number of statements. `communication` builds
the §12 resource; `write_server_resource` stores it through the repository's tables.
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
from audit.tx import among
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
    return Lookups.load(runtime, session, record_ids).accesses(record_ids, urgent_ids)


@dataclass(frozen=True)
class Lookups:
    """What notices about some audit records need, read with a fixed number of
    statements however many records: the records, their log indexes, the signed tree
    size, the directory names of their actors and organisations."""

    records: dict[str, Any]
    index: dict[str, int]
    size: int
    names: dict[str, str]

    @classmethod
    def load(cls, runtime: Any, session: Tx, record_ids: Sequence[str]) -> Lookups:
        ids = list(dict.fromkeys(record_ids))
        records = {r.id: r.record for r in session.execute(
            select(audit_records.c.id, audit_records.c.record).where(
                among(session, audit_records.c.id, ids))).all()} if ids else {}
        refs: set[str] = set()
        for record in records.values():
            agent = record.get("agent") or {}
            refs.update(r for r in (agent.get("who"), agent.get("on_behalf_of")) if r)
            refs.update(agent.get("organizations") or ())
        return cls(records, runtime.audit_store.index_of(session, ids),
                   runtime.audit_store.signed_size(session), directory_names(session, refs))

    def accesses(self, record_ids: Sequence[str], urgent_ids: set[str]) -> list[Access]:
        ids = list(dict.fromkeys(record_ids))
        if any(i not in self.records for i in ids):
            raise DeliveryError("audit record missing", permanent=True)
        return [access_from_record(self.records[i], urgent=i in urgent_ids, names=self.names,
                                   log_index=self.index.get(i), tree_size=self.size)
                for i in ids]


def prepare_inboxes(runtime: Any, session: Tx, sealer: Any,
                    groups: Sequence[tuple[str, Sequence[str], set[str]]]
                    ) -> list[Prepared | DeliveryError]:
    """`prepare` for many inbox groups (patient id, record ids, urgent ids) at once, in
    five statements whatever their number; a group that cannot be delivered gets its
    DeliveryError in its place. The patients' key rows are handed to `sealer`, which
    seals their Communications without reading them again."""
    pids = sorted({pid for pid, _, _ in groups})
    K = patient_keys.c
    keys = {r.patient_id: r for r in session.execute(
        select(K.patient_id, K.erased_at, K.kek_id, K.wrapped).where(
            among(session, K.patient_id, pids))).all()}
    for pid, row in keys.items():
        sealer.know(pid, row.kek_id, row.wrapped, True)
    S = notification_settings.c
    languages = {r.patient_id: r.language for r in session.execute(
        select(S.patient_id, S.language).where(among(session, S.patient_id, pids))).all()
        if r.language}
    unset = [pid for pid in pids if pid not in languages]
    if unset:
        for patient in session.execute(select(R.res_id, R.content).where(
                R.res_type == "Patient", among(session, R.res_id, unset))).all():
            languages[patient.res_id] = language_of(patient.content)
    look = Lookups.load(runtime, session, [i for _, ids, _ in groups for i in ids])
    out: list[Prepared | DeliveryError] = []
    for pid, ids, urgent in groups:
        try:
            if pid in keys and keys[pid].erased_at is not None:
                raise DeliveryError("dossier erased", permanent=True)
            accesses = look.accesses(ids, urgent)
            message = compose(accesses, languages.get(pid) or DEFAULT_LANGUAGE, "")
            out.append(Prepared(message, accesses, {}))
        except DeliveryError as exc:
            out.append(exc)
    return out


def directory_names(session: Tx, refs: set[str]) -> dict[str, str]:
    """Display names of practitioners and organisations (directory data, never sealed)."""
    wanted = [r.split("/", 1) for r in refs if r.startswith(("Practitioner/", "Organization/"))]
    names: dict[str, str] = {}
    if not wanted:
        return names
    rows = session.execute(select(R.res_type, R.res_id, R.content, R.sealed).where(
        R.res_type.in_({t for t, _ in wanted}),
        among(session, R.res_id, {i for _, i in wanted}))).all()
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
    return language_of(session.execute(select(R.content).where(
        R.res_type == "Patient", R.res_id == patient_id)).scalar_one_or_none())


def language_of(content: dict[str, Any] | None) -> str:
    """The preferred communication language (fr/nl/en) of a Patient's content, else
    French."""
    entries = sorted((content or {}).get("communication") or [],
                     key=lambda c: not c.get("preferred"))
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
