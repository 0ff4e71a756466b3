"""The notification worker (SPEC §6, §12): delivers the outbox rows that the audit wrote
in each consulting request's transaction.

Each run claims a small batch of due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; the
SQLite write lock serialises) by counting the attempt and leasing the rows, groups the
consultations of one actor within a window into one message that lists each, and:
- inbox: writes the §12 Communication and marks the rows sent in ONE transaction, so
  each consultation reaches the inbox exactly once;
- email / webhook: sends, then marks sent. At least once: a crash between the send and
  the commit resends. Receivers dedupe by the Message-ID / Idempotency-Key (the outbox
  id, or a digest of a group's ids) or by the record ids listed.
A failure counts the attempt, sets `last_error` (short, no personal data) and the next
attempt by exponential backoff; after `max_attempts` (or a permanent failure) the row is
`dead`. A worker that dies mid-delivery leaves the lease to expire: the rows come back.
"""

from __future__ import annotations

import copy
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

import schemas
from audit.notify import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Access,
    Message,
    RetryPolicy,
    access_from_record,
    compose,
    delivery_key,
    group_within,
)
from audit.transport import DeliveryError, SmtpConfig, post_webhook, send_email, webhook_body
from auth import Principal
from dossier.context import RequestContext
from dossier.db.models import (
    audit_records,
    notification_outbox,
    patient_keys,
    resource_versions,
    resources,
    search_index,
)
from dossier.errors import DossierError
from dossier.notification_settings import (
    NotificationSettings,
    get_notification_settings,
    set_notification_settings,
)
from dossier.repository import NullAudit, OpenPolicy, Repository, RowMeta, Stored, new_id

__all__ = ["DeliveryConfig", "NotificationSettings", "communication", "config_from_settings",
           "deliver_due", "get_notification_settings", "run_pending",
           "set_notification_settings", "write_server_resource"]

log = logging.getLogger("dossier.notifications")
OB = notification_outbox.c
R = resources.c
SENDER_RE = re.compile(
    r"^(Practitioner|PractitionerRole|Organization|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$")
SERVER = Principal(role="admin", roles=frozenset({"admin"}), fhir_user="Operator/notifier",
                   patient=None, practitioner=None, organizations=frozenset(),
                   professions=frozenset(), client_id=None, scopes=(), on_behalf_of=None,
                   subject="dossier-notifier")
_random = random.SystemRandom()


@dataclass(frozen=True)
class DeliveryConfig:
    smtp_host: str | None = None  # None: e-mail rows fail ("smtp not configured")
    smtp_port: int = 25
    smtp_from: str = "dossier@localhost"
    starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    timeout: float = 10.0
    max_attempts: int = 8
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 6 * 3600.0
    group_window_seconds: float = 600.0
    batch_size: int = 50
    lease_seconds: float = 300.0  # a claimed row comes back after this if the worker dies
    base_url: str = ""  # public base of links in e-mails and webhooks
    allow_local_webhooks: bool = False  # http:// and private addresses (tests, dev only)

    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_seconds,
                           self.backoff_cap_seconds)

    def smtp(self) -> SmtpConfig | None:
        if not self.smtp_host:
            return None
        return SmtpConfig(self.smtp_host, self.smtp_port, self.smtp_from, self.starttls,
                          self.timeout, self.smtp_username, self.smtp_password)


def config_from_settings(settings: Any) -> DeliveryConfig:
    """From the service settings (`notify_*` fields; defaults where absent)."""
    def get(name: str, default: Any) -> Any:
        value = getattr(settings, f"notify_{name}", None)
        return default if value is None else value

    d = DeliveryConfig()
    return DeliveryConfig(
        get("smtp_host", None), get("smtp_port", d.smtp_port), get("smtp_from", d.smtp_from),
        get("smtp_starttls", d.starttls), get("smtp_username", None),
        get("smtp_password", None), get("timeout_seconds", d.timeout),
        get("max_attempts", d.max_attempts), get("backoff_base_seconds",
                                                 d.backoff_base_seconds),
        get("backoff_cap_seconds", d.backoff_cap_seconds),
        get("group_window_seconds", d.group_window_seconds), d.batch_size, d.lease_seconds,
        getattr(settings, "public_base", ""), get("allow_local_webhooks", False))


@dataclass(frozen=True)
class Due:
    """One claimed outbox row; `attempts` includes the attempt under way."""

    id: str
    patient_id: str
    record_id: str
    agent: str | None
    urgent: bool
    created_at: datetime
    channel: str
    attempts: int


# ---------------------------------------------------------------------------- worker
def deliver_due(runtime: Any, now: datetime, config: DeliveryConfig | None = None, *,
                rand: Callable[[], float] | None = None) -> int:
    """Deliver one batch of due rows; returns how many rows were delivered."""
    return _batch(runtime, now, config or _config(runtime), rand or _random.random)[1]


def run_pending(runtime: Any, now: datetime | None = None,
                config: DeliveryConfig | None = None, max_batches: int = 20) -> int:
    """The periodic job: batches until none is full (bounded)."""
    config = config or _config(runtime)
    total = 0
    for _ in range(max_batches):
        claimed, delivered = _batch(runtime, now or datetime.now(UTC), config, _random.random)
        total += delivered
        if claimed < config.batch_size:
            break
    return total


def _config(runtime: Any) -> DeliveryConfig:
    found = runtime.extras.get("delivery_config")
    return found if isinstance(found, DeliveryConfig) else config_from_settings(
        runtime.settings)


def _batch(runtime: Any, now: datetime, config: DeliveryConfig,
           rand: Callable[[], float]) -> tuple[int, int]:
    rows = claim(runtime.engine, now, config)
    window = timedelta(seconds=config.group_window_seconds)
    groups = group_within(rows, lambda r: (r.patient_id, r.agent, r.channel, r.urgent),
                          lambda r: r.created_at, window)
    delivered = sum(deliver_group(runtime, g, now, config, rand) for g in groups)
    return len(rows), delivered


def claim(engine: Any, now: datetime, config: DeliveryConfig) -> list[Due]:
    """Count an attempt on each due row and lease it, in one short transaction."""
    with Session(engine) as session, session.begin():
        rows = session.execute(
            select(OB.id, OB.patient_id, OB.record_id, OB.agent, OB.urgent, OB.created_at,
                   OB.channel, OB.attempts)
            .where(OB.status == "pending", OB.next_attempt_at <= now)
            .order_by(OB.urgent.desc(), OB.next_attempt_at, OB.created_at, OB.id)
            .limit(config.batch_size).with_for_update(skip_locked=True)).all()
        spent = [r.id for r in rows if r.attempts >= config.max_attempts]
        live = [r for r in rows if r.attempts < config.max_attempts]
        if spent:  # the worker died on these too often
            session.execute(update(notification_outbox).where(OB.id.in_(spent)).values(
                status="dead", last_error="gave up after interrupted attempts"))
        if live:
            session.execute(update(notification_outbox).where(
                OB.id.in_([r.id for r in live])).values(
                attempts=OB.attempts + 1,
                next_attempt_at=now + timedelta(seconds=config.lease_seconds)))
    return [Due(r.id, r.patient_id, r.record_id, r.agent, bool(r.urgent), r.created_at,
                r.channel, r.attempts + 1) for r in live]


def deliver_group(runtime: Any, group: Sequence[Due], now: datetime, config: DeliveryConfig,
                  rand: Callable[[], float]) -> int:
    channel = group[0].channel
    try:
        if channel == "inbox":
            return _deliver_inbox(runtime, group, now, config)
        with Session(runtime.engine) as session, session.begin():
            message, contact, _ = _prepare(runtime, session, group, config)
        key = delivery_key([d.id for d in group])
        if channel == "email":
            smtp = config.smtp()
            if smtp is None:
                raise DeliveryError("smtp not configured")
            send_email(smtp, contact["email"], message, key)
        elif channel == "webhook":
            body = webhook_body({"type": "access-notification", "id": key,
                                 "patient": f"Patient/{group[0].patient_id}",
                                 "records": list(message.record_ids),
                                 "urgent": message.urgent, "language": message.language,
                                 "text": message.text})
            post_webhook(contact["url"], body, contact["secret"], key=key,
                         now=int(now.timestamp()), timeout=config.timeout,
                         allow_local=config.allow_local_webhooks)
        else:
            raise DeliveryError("unknown channel", permanent=True)
        _mark_sent(runtime.engine, group, now)
        return len(group)
    except DeliveryError as exc:
        _failed(runtime.engine, group, now, config, exc.reason, exc.permanent, rand())
    except DossierError as exc:  # erased dossier (410), unreadable settings
        _failed(runtime.engine, group, now, config, f"dossier {exc.status}",
                exc.status == 410, rand())
    except Exception as exc:  # noqa: BLE001 - a bad row must not stop the worker; the
        # message is never logged: it may hold personal data
        log.error("notification delivery failed: %s", type(exc).__name__)
        _failed(runtime.engine, group, now, config, f"internal {type(exc).__name__}"[:60],
                False, rand())
    return 0


class _AlreadyDone(Exception):
    """Another worker delivered these rows first: roll back."""


def _deliver_inbox(runtime: Any, group: Sequence[Due], now: datetime,
                   config: DeliveryConfig) -> int:
    try:
        with Session(runtime.engine) as session, session.begin():
            message, _, accesses = _prepare(runtime, session, group, config)
            ctx = RequestContext(principal=SERVER, now=now)
            repo = Repository(session, ctx, policy=OpenPolicy(), sealer=runtime.sealer(),
                              audit=NullAudit())
            write_server_resource(repo, communication(group[0].patient_id, accesses,
                                                      message, now))
            done = session.execute(update(notification_outbox).where(
                OB.id.in_([d.id for d in group]), OB.status == "pending").values(
                status="sent", sent_at=now, last_error=None))
            if done.rowcount != len(group):  # type: ignore[attr-defined]
                raise _AlreadyDone()
    except _AlreadyDone:
        return 0
    return len(group)


def _mark_sent(engine: Any, group: Sequence[Due], now: datetime) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(notification_outbox).where(
            OB.id.in_([d.id for d in group]), OB.status == "pending").values(
            status="sent", sent_at=now, last_error=None))


def _failed(engine: Any, group: Sequence[Due], now: datetime, config: DeliveryConfig,
            reason: str, permanent: bool, rand: float) -> None:
    policy = config.retry()
    log.warning("notification %s delivery failed (%s): %d row(s)", group[0].channel, reason,
                len(group))
    with Session(engine) as session, session.begin():
        for due in group:
            later = None if permanent else policy.next_attempt(now, due.attempts, rand)
            values: dict[str, Any] = {"last_error": reason[:200]}
            if later is None:
                values["status"] = "dead"
            else:
                values["next_attempt_at"] = later
            session.execute(update(notification_outbox).where(
                OB.id == due.id, OB.status == "pending").values(**values))


# ---------------------------------------------------------------------------- content
def _prepare(runtime: Any, session: Session, group: Sequence[Due],
             config: DeliveryConfig) -> tuple[Message, dict[str, Any], list[Access]]:
    """The message, the channel's contact (opened) and the accesses; or DeliveryError."""
    patient_id = group[0].patient_id
    erased = session.execute(select(patient_keys.c.erased_at).where(
        patient_keys.c.patient_id == patient_id)).scalar_one_or_none()
    if erased is not None:
        raise DeliveryError("dossier erased", permanent=True)
    chosen = get_notification_settings(runtime, session, patient_id)
    language = chosen.language if chosen else _patient_language(session, patient_id)
    contact: dict[str, Any] = {}
    channel = group[0].channel
    if channel == "email":
        if chosen is None or not chosen.email:
            raise DeliveryError("channel no longer chosen", permanent=True)
        contact = {"email": chosen.email}
    elif channel == "webhook":
        if chosen is None or not chosen.webhook_url or not chosen.webhook_secret:
            raise DeliveryError("channel no longer chosen", permanent=True)
        contact = {"url": chosen.webhook_url, "secret": chosen.webhook_secret}
    accesses = _accesses(runtime, session, group)
    base = config.base_url if channel != "inbox" else ""
    return compose(accesses, language, base), contact, accesses


def _accesses(runtime: Any, session: Session, group: Sequence[Due]) -> list[Access]:
    ids = [d.record_id for d in group]
    records = {r.id: r.record for r in session.execute(
        select(audit_records.c.id, audit_records.c.record).where(
            audit_records.c.id.in_(ids))).all()}
    if len(records) != len(set(ids)):
        raise DeliveryError("audit record missing", permanent=True)
    index = runtime.audit_store.index_of(session, ids)
    size = runtime.audit_store.signed_size(session)
    refs: set[str] = set()
    for record in records.values():
        agent = record.get("agent") or {}
        refs.update(r for r in (agent.get("who"), agent.get("on_behalf_of")) if r)
        refs.update(agent.get("organizations") or ())
    names = directory_names(session, refs)
    urgent = {d.record_id for d in group if d.urgent}
    return [access_from_record(records[i], urgent=i in urgent, names=names,
                               log_index=index.get(i), tree_size=size)
            for i in dict.fromkeys(ids)]


def directory_names(session: Session, refs: set[str]) -> dict[str, str]:
    """Display names of practitioners and organisations (directory data, never sealed)."""
    wanted = [tuple(r.split("/", 1)) for r in refs
              if r.split("/", 1)[0] in ("Practitioner", "Organization")]
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


def _patient_language(session: Session, patient_id: str) -> str:
    """The Patient's preferred communication language (fr/nl/en), else French."""
    content = session.execute(select(R.content).where(
        R.res_type == "Patient", R.res_id == patient_id)).scalar_one_or_none() or {}
    langs = sorted(content.get("communication") or [], key=lambda c: not c.get("preferred"))
    for entry in langs:
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
    if sender and SENDER_RE.match(sender):  # operators and bare clients: no sender
        resource["sender"] = {"reference": sender}
    return resource


def write_server_resource(repo: Repository, resource: dict[str, Any]) -> Stored:
    """Store a server-written resource (Communication) through the repository's tables:
    version 1, its versions row and its search index. It is checked as FHIR R4 only:
    `schemas.validate` refuses every server-written type, and `about → AuditEvent/x`
    points into the audit log, not at a stored resource, so `Repository._write`
    cannot be used. The lead will make this `Repository.create_server_resource`."""
    resource = copy.deepcopy(resource)
    resource_type = resource.get("resourceType", "")
    if resource_type not in schemas.SERVER_WRITTEN_TYPES:
        raise ValueError("only server-written resource types")
    resource_id = resource.setdefault("id", new_id())
    get_fhir_model_class(resource_type).model_validate(resource)
    patient_ref = schemas.patient_of(resource)
    patient_id = patient_ref.split("/", 1)[1] if patient_ref else None
    now = repo.ctx.now
    resource["meta"] = {"versionId": "1",
                        "lastUpdated": now.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    clear, sealed = repo.sealer.seal(repo.session, resource, patient_id, 1)
    values = {"res_type": resource_type, "res_id": resource_id, "version_id": 1,
              "last_updated": now, "deleted": False, "patient_id": patient_id,
              "categories": "", "content": clear, "sealed": sealed}
    repo.session.execute(insert(resources).values(**values))
    repo.session.execute(insert(resource_versions).values(method="POST", **values))
    rows = repo._index_rows(resource_type, resource_id, resource)
    if rows:
        repo.session.execute(insert(search_index), rows)
    meta = RowMeta(resource_type, resource_id, patient_id, frozenset())
    return Stored(resource_type, resource_id, 1, now, False, resource, meta, "POST")

