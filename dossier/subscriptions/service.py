"""Topic-based subscriptions (FHIR R5 Subscriptions Backport IG, on R4): one topic, "an
entry of a dossier was created or changed", delivered by rest-hook as `id-only` or `empty`
notifications. The hub then reads the entry with its own token, like any read.

Consent holds twice. An event is queued, in the transaction of the change, only for the
subscribers whose consent covered that entry at that moment (`capture`). It is checked
again just before delivery (`run_deliveries`): a revocation in between drops it. Each
delivery is audited as a consultation by the subscriber, and so notified to the person,
before it leaves. Break-the-glass grants never feed a subscription. See docs/hubs.md.
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from audit.transport import DeliveryError, check_webhook_url, post
from auth import InvalidToken, Principal, parse_scopes, resolve_principal
from auth.actor import Directory
from auth.tokens import TokenClaims
from dossier.core.access import ConsentPolicy, load_consents
from dossier.core.context import RequestContext
from dossier.core.directory import PreloadedDirectory, StoreDirectory
from dossier.core.repository import Repository, RowMeta, Stored, row_meta
from dossier.crypto import envelope
from dossier.db.models import subscription_events, subscriptions
from dossier.errors import DossierError, Unprocessable
from dossier.fhir.bundles import instant
from dossier.notify.worker import DeliveryConfig, config_from_settings
from dossier.search.params import parse_date
from dossier.stores.subscriptions import ACTIVE, ACTIVE_MEMO
from dossier.stores.subscriptions import TOPIC as TOPIC  # the server's one topic

log = logging.getLogger("dossier")
_random = random.SystemRandom()

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
PROFILE = f"{BACKPORT}/backport-subscription"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
FILTER_URL = f"{BACKPORT}/backport-filter-criteria"
CONTENT_URL = f"{BACKPORT}/backport-payload-content"
TOPIC_CANONICAL_EXTENSION = ("http://hl7.org/fhir/uv/subscriptions-backport/"
                             "StructureDefinition/capabilitystatement-subscriptiontopic-canonical")
STATUS_OPERATION = ("http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
                    "backport-subscription-status")
# the entries of a dossier: démarches, network, fragility (and its Flag)
TOPIC_TYPES = ("Task", "CareTeam", "RelatedPerson", "Observation", "Flag")
SUBSCRIBER_ROLES = frozenset({"hub", "practitioner"})
DEFAULT_LIFETIME = timedelta(days=30)
MAX_LIFETIME = timedelta(days=90)
MAX_HEADERS = 5
HEADER = re.compile(r"([A-Za-z0-9][A-Za-z0-9\-]{0,63}): ?([\x20-\x7e]{1,1024})")
RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                              "connection", "user-agent", "te", "upgrade", "expect"})
FILTER = re.compile(r"(Task|CareTeam|RelatedPerson|Observation|Flag)"
                    r"(?:\?patient=(?:Patient/)?([A-Za-z0-9\-.]{1,64}))?")
PAYLOADS = frozenset({"application/fhir+json", "application/json"})
HANDSHAKE_TIMEOUT = 5.0
LEASE = timedelta(minutes=5)  # a claimed event comes back after this if the worker dies
BATCH = 100
SUB = subscriptions.c
# built once: building this select on each write cost as much as running it
EV = subscription_events.c
FIELDS = frozenset({"resourceType", "id", "meta", "status", "reason", "criteria",
                    "_criteria", "end", "channel"})
CHANNEL_FIELDS = frozenset({"type", "endpoint", "payload", "_payload", "header"})


def capability_entry() -> dict[str, Any]:
    """Subscription in the CapabilityStatement: the topic, and what may be done."""
    return {"type": "Subscription", "supportedProfile": [PROFILE],
            "extension": [{"url": TOPIC_CANONICAL_EXTENSION, "valueCanonical": TOPIC}],
            "interaction": [{"code": c} for c in ("create", "read", "delete", "search-type")],
            "searchParam": [{"name": "status", "type": "token", "definition":
                             "http://hl7.org/fhir/SearchParameter/Subscription-status"}],
            "operation": [{"name": "status", "definition": STATUS_OPERATION}]}


# ---------------------------------------------------------------- the request

@dataclass(frozen=True)
class Request:
    """A Subscription as asked for, checked."""

    filters: tuple[tuple[str, str | None], ...]  # (type, patient id or None); empty: all
    endpoint: str
    content: str  # id-only | empty
    payload: str | None
    headers: tuple[str, ...]
    end: datetime
    reason: str


def _bad(message: str, where: str) -> Unprocessable:
    return Unprocessable(message, expression=[f"Subscription.{where}"])


def _extensions(element: Any, url: str, where: str) -> list[Any]:
    """Values of the `url` extensions on a primitive's `_element`; anything else refused."""
    if element is None:
        return []
    if not isinstance(element, dict) or set(element) - {"extension"} or \
            not isinstance(element.get("extension"), list):
        raise _bad("Only extensions are allowed here.", where)
    values = []
    for ext in element["extension"]:
        if not isinstance(ext, dict) or ext.get("url") != url:
            raise _bad(f"Only the extension {url} is supported here.", where)
        value = ext.get("valueString", ext.get("valueCode"))
        if not isinstance(value, str) or set(ext) - {"url", "valueString", "valueCode"}:
            raise _bad("The extension needs one string value.", where)
        values.append(value)
    return values


def _filters(body: dict[str, Any]) -> tuple[tuple[str, str | None], ...]:
    out = []
    for value in _extensions(body.get("_criteria"), FILTER_URL, "criteria"):
        match = FILTER.fullmatch(value)
        if match is None:
            raise _bad("A filter is Type or Type?patient=Patient/id, with Type one of "
                       f"{', '.join(TOPIC_TYPES)}.", "criteria.extension")
        out.append((match[1], match[2]))
    return tuple(out)


def _end(body: dict[str, Any], now: datetime) -> datetime:
    if "end" not in body:
        return now + DEFAULT_LIFETIME
    value = body["end"]
    try:
        if not isinstance(value, str) or "T" not in value:
            raise ValueError
        end = parse_date(value).low
    except (ValueError, DossierError):
        raise _bad("end must be an instant, e.g. 2027-03-01T00:00:00Z.", "end") from None
    if end <= now:
        raise _bad("end is in the past.", "end")
    return min(end, now + MAX_LIFETIME)


def _headers(channel: dict[str, Any]) -> tuple[str, ...]:
    raw = channel.get("header", [])
    if not isinstance(raw, list) or len(raw) > MAX_HEADERS:
        raise _bad(f"channel.header is a list of at most {MAX_HEADERS} headers.",
                   "channel.header")
    for value in raw:
        match = HEADER.fullmatch(value) if isinstance(value, str) else None
        if match is None or match[1].lower() in RESERVED_HEADERS:
            raise _bad("Each header is 'Name: value' (printable ASCII; not Host, "
                       "Content-Type or another transport header).", "channel.header")
    return tuple(raw)


def parse_request(body: Any, now: datetime, *, allow_local: bool) -> Request:
    """Check a Subscription (R4 + Backport IG); 422 naming the element otherwise."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise Unprocessable("Send a Subscription resource.")
    for key in body:
        if key not in FIELDS:
            raise _bad(f"The element {key[:64]} is not supported here.", key[:64])
    if body.get("status") not in ("requested", "active"):
        raise _bad("status must be 'requested'.", "status")
    if body.get("criteria") != TOPIC:
        raise _bad(f"Unknown topic: the topic of this server is {TOPIC}.", "criteria")
    reason = body.get("reason")  # required by R4 (1..1); the subscriber's own words
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise _bad("reason is required: a short text (200 characters at most).", "reason")
    channel = body.get("channel")
    if not isinstance(channel, dict) or set(channel) - CHANNEL_FIELDS:
        raise _bad("channel takes type, endpoint, payload and header.", "channel")
    if channel.get("type") != "rest-hook":
        raise _bad("Only the rest-hook channel is offered.", "channel.type")
    given = channel.get("endpoint")
    endpoint = given if isinstance(given, str) else ""
    try:
        check_webhook_url(endpoint, allow_local=allow_local)
    except ValueError:
        raise _bad("channel.endpoint must be an https:// URL without credentials.",
                   "channel.endpoint") from None
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOADS:
        raise _bad("channel.payload must be application/fhir+json.", "channel.payload")
    contents = _extensions(channel.get("_payload"), CONTENT_URL, "channel.payload")
    content = contents[0] if contents else ("id-only" if payload else "empty")
    if len(contents) > 1 or content not in ("id-only", "empty"):
        raise _bad("The payload content is id-only or empty. full-resource is not offered: "
                   "a notification must not carry a person's data outside a consented "
                   "read; read the entries with your token.", "channel.payload.extension")
    return Request(_filters(body), endpoint, content, payload, _headers(channel),
                   _end(body, now), reason)


def resource_of(sub_id: str, req: Request, status: str, created: datetime) -> dict[str, Any]:
    """The Subscription as shown; the channel headers are never shown again. Stored without
    its reason (sealed apart, see `seal`)."""
    out: dict[str, Any] = {
        "resourceType": "Subscription", "id": sub_id,
        "meta": {"versionId": "1", "lastUpdated": instant(created), "profile": [PROFILE]},
        "status": status, "reason": req.reason, "criteria": TOPIC, "end": instant(req.end),
        "channel": {"type": "rest-hook", "endpoint": req.endpoint,
                    "payload": req.payload or "application/fhir+json",
                    "_payload": {"extension": [{"url": CONTENT_URL,
                                                "valueCode": req.content}]}},
    }
    if req.filters:
        out["_criteria"] = {"extension": [
            {"url": FILTER_URL, "valueString": t + (f"?patient=Patient/{p}" if p else "")}
            for t, p in req.filters]}
    return out


# ---------------------------------------------------------------- the subscriber

def subscriber_claims(principal: Principal, relay_org: str | None = None) -> dict[str, Any]:
    """What the subscriber's later decisions are made on (their token expires long before).
    `relay_org`: for a hub acting for a practitioner, the Organization the hub is
    registered for — the practitioner must still work there at every event."""
    return {"role": principal.role, "client_id": principal.client_id,
            "fhir_user": principal.fhir_user, "subject": principal.subject,
            "scope": " ".join(str(s) for s in principal.scopes), "relay_org": relay_org}


def subscriber_principal(claims: dict[str, Any], directory: Directory,
                         now: datetime) -> Principal | None:
    """The subscriber as of `now`, from the directory (None when no longer valid, e.g. a
    practitioner who left the hub's organisation)."""
    try:
        principal = resolve_principal(TokenClaims(
            subject=claims["subject"], issuer="", client_id=claims["client_id"],
            fhir_user=claims["fhir_user"], roles=frozenset({claims["role"]}),
            scopes=parse_scopes(claims["scope"]), expires_at=now,
            raw_scope=claims["scope"]), directory, now)
    except (InvalidToken, KeyError):
        return None
    relay_org = claims.get("relay_org")
    if relay_org and relay_org not in principal.organizations:
        return None  # the hub may no longer act for this practitioner
    return principal


def relay_org_of(rt: Any, principal: Principal) -> str | None:
    """The Organization a hub acting for a practitioner is registered for (embedded issuer;
    with an external provider, the provider checks the relay when it issues tokens)."""
    issuer = rt.issuer
    if principal.role != "hub" or not principal.on_behalf_of or issuer is None \
            or not principal.client_id:
        return None
    client = issuer.client(principal.client_id)
    return client.fhir_user if client is not None else None


def may_see(policy: Any, meta: RowMeta) -> bool:
    """Role, scopes and consent of the subscriber for this entry, break-the-glass off."""
    policy.break_glass_allowed = False
    try:
        policy.gate(meta.resource_type, "r")
    except DossierError:
        return False
    return bool(policy.can_read(meta))


def _matches(filters: list[list[Any]], resource_type: str, patient_id: str) -> bool:
    return not filters or any(t == resource_type and p in (None, patient_id)
                              for t, p in filters)


# ---------------------------------------------------------------- events

def capture(repo: Repository, stored: Stored) -> None:
    """Called by the Repository for every write: queue an event for each active
    subscription whose filters match and whose subscriber may see the entry now."""
    meta = stored.meta
    if stored.resource_type not in TOPIC_TYPES or meta.patient_id is None:
        return
    now = repo.ctx.now
    session = repo.session
    active = repo.memo(ACTIVE_MEMO, lambda: session.connection().execute(
        ACTIVE, {"now": now}).all())
    subs = [sub for sub in active
            if _matches(sub.filters, stored.resource_type, meta.patient_id)]
    if not subs:
        return
    # read once per write, in this transaction: the person's Consents (break-the-glass is
    # off for subscriptions, so they are the same for every subscriber) and the directory
    # entries of every subscriber; each decision is still the subscriber's own
    provisions = load_consents(session, [meta.patient_id])[meta.patient_id]
    directory = PreloadedDirectory(session, [sub.subscriber.get("fhir_user") or ""
                                             for sub in subs])
    rows = []
    for sub in subs:
        principal = subscriber_principal(sub.subscriber, directory, now)
        if principal is None:
            continue
        policy = ConsentPolicy(session, principal, now)
        policy.break_glass_allowed = False
        policy.preload(meta.patient_id, provisions)
        if not may_see(policy, meta):
            continue
        rows.append({"subscription_id": sub.id, "patient_id": meta.patient_id,
                     "res_type": stored.resource_type, "res_id": stored.id,
                     "version_id": stored.version_id, "created_at": now,
                     "next_attempt_at": now, "attempts": 0})
    if rows:
        session.execute(insert(subscription_events), rows)


# ---------------------------------------------------------------- notifications

def status_parameters(base: str, sub_id: str, status: str, kind: str, events_sent: int,
                      events: list[tuple[int, datetime, str | None]]) -> dict[str, Any]:
    """A SubscriptionStatus (R4 backport: a Parameters)."""
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub_id}"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_sent)},
    ]
    for number, at, focus in events:
        part: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(number)},
                                      {"name": "timestamp", "valueInstant": instant(at)}]
        if focus:
            part.append({"name": "focus", "valueReference": {"reference": focus}})
        params.append({"name": "notification-event", "part": part})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()),
            "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def notification(base: str, sub_id: str, status: str, kind: str, events_sent: int,
                 events: list[tuple[int, datetime, str | None, int]],
                 now: datetime) -> dict[str, Any]:
    """The notification Bundle (type history): the status, then one entry per focus."""
    status_res = status_parameters(base, sub_id, status, kind, events_sent,
                                   [(n, at, focus) for n, at, focus, _ in events])
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{status_res['id']}", "resource": status_res,
        "request": {"method": "GET", "url": f"{base}/Subscription/{sub_id}/$status"},
        "response": {"status": "200"}}]
    for _, _, focus, version in events:
        if focus:
            created = version == 1
            current = focus.split("/_history")[0]  # fullUrl never names a version (bdl-8)
            entries.append({"fullUrl": current, "request": {
                "method": "POST" if created else "PUT",
                "url": current.removeprefix(base + "/")},
                "response": {"status": "201" if created else "200"}})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "history",
            "timestamp": instant(now), "entry": entries}


def seal(rt: Any, sub_id: str, req: Request) -> dict[str, Any]:
    """Column values keeping the channel headers (often a secret) and the reason (free
    text, which may describe a person) encrypted with a per-subscription key."""
    plain = json.dumps({"headers": list(req.headers), "reason": req.reason}).encode()
    box = envelope.seal(rt.key_provider, plain, f"subscription/{sub_id}".encode())
    return {"kek_id": box.kek_id, "wrapped_key": box.wrapped_key, "sealed": box.sealed}


def unseal(rt: Any, sub: Any) -> dict[str, Any]:
    """{"headers": [...], "reason": ...} of a stored subscription."""
    raw = envelope.open_sealed(rt.key_provider, sub.kek_id, sub.wrapped_key, sub.sealed,
                               f"subscription/{sub.id}".encode())
    value: dict[str, Any] = json.loads(raw)
    return value


def header_fields(headers: list[str] | tuple[str, ...]) -> dict[str, str]:
    """'Name: value' lines (checked by parse_request) as a header mapping."""
    return {name.strip(): value.strip() for name, _, value in
            (h.partition(":") for h in headers)}


def send(rt: Any, endpoint: str, headers: dict[str, str], bundle: dict[str, Any], *,
         config: DeliveryConfig, timeout: float | None = None) -> None:
    body = json.dumps(bundle, separators=(",", ":")).encode()
    post(endpoint, body, {**headers, "Content-Type": "application/fhir+json"},
         timeout=timeout or config.timeout, allow_local=config.allow_local_webhooks)


def handshake(rt: Any, base: str, sub_id: str, req: Request) -> None:
    """The handshake the Backport IG sends on creation; DeliveryError when refused."""
    send(rt, req.endpoint, header_fields(req.headers),
         notification(base, sub_id, "requested", "handshake", 0, [], datetime.now(UTC)),
         config=config_from_settings(rt.settings), timeout=HANDSHAKE_TIMEOUT)


# ---------------------------------------------------------------- delivery worker

def fhir_base(rt: Any) -> str:
    return str(rt.settings.public_base).rstrip("/") + "/fhir"


def run_deliveries(rt: Any, now: datetime | None = None) -> int:
    """Deliver due events, oldest first per subscription; returns how many were sent."""
    now = now or datetime.now(UTC)
    config = config_from_settings(rt.settings)
    _end_expired(rt, now)
    sent = 0
    claimed = _claim(rt, now)
    for sub_id, events in groupby(claimed, key=lambda e: e.subscription_id):
        for event in events:
            outcome = _deliver(rt, sub_id, event, now, config)
            sent += outcome == "sent"
            if outcome == "failed":
                break  # keep the order: the rest wait for this one
    return sent


def _end_expired(rt: Any, now: datetime) -> None:
    with Session(rt.engine) as session, session.begin():
        ended = select(SUB.id).where(SUB.status == "active", SUB.end_at <= now)
        session.execute(delete(subscription_events).where(EV.subscription_id.in_(ended)))
        session.execute(update(subscriptions).where(SUB.status == "active",
                                                    SUB.end_at <= now).values(status="off"))


def _claim(rt: Any, now: datetime) -> list[Any]:
    with Session(rt.engine) as session, session.begin():
        stmt = select(subscription_events).where(
            EV.next_attempt_at <= now,
            EV.subscription_id.in_(select(SUB.id).where(SUB.status == "active")),
        ).order_by(EV.subscription_id, EV.id).limit(BATCH)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.execute(stmt).all()
        if rows:
            session.execute(update(subscription_events).where(
                EV.id.in_([r.id for r in rows])).values(next_attempt_at=now + LEASE))
    return list(rows)


def _deliver(rt: Any, sub_id: str, event: Any, now: datetime,
             config: DeliveryConfig) -> str:
    """'sent', 'dropped' (no longer allowed, nothing disclosed) or 'failed'."""
    with Session(rt.engine) as session:
        sub = session.execute(select(subscriptions).where(SUB.id == sub_id)).first()
        principal = None if sub is None else subscriber_principal(
            sub.subscriber, StoreDirectory(rt.engine, session), now)
    if sub is None or sub.status != "active" or principal is None:
        _drop(rt, event.id)
        return "dropped"
    ctx = RequestContext(principal=principal, now=now, request_id=f"subscription-{sub_id}",
                         base_url=fhir_base(rt))
    with rt.unit(ctx) as repo:
        repo.begin("operation", event.res_type, None)
        row = repo.current_row(event.res_type, event.res_id)
        if row is None or row.deleted or not may_see(repo.policy, row_meta(row)):
            repo.session.execute(delete(subscription_events).where(EV.id == event.id))
            return "dropped"
        number = event.event_number
        if number is None:
            number = int(repo.session.execute(select(SUB.events_sent).where(
                SUB.id == sub_id)).scalar_one()) + 1
            repo.session.execute(update(subscriptions).where(SUB.id == sub_id).values(
                events_sent=number))
            repo.session.execute(update(subscription_events).where(
                EV.id == event.id).values(event_number=number))
        # audited before it leaves: a consultation by the subscriber, notified to the person
        repo.note_access("operation", event.res_type, event.res_id,
                         f"Patient/{event.patient_id}", detail="subscription-notification")
    base = fhir_base(rt)
    focus = (f"{base}/{event.res_type}/{event.res_id}/_history/{event.version_id}"
             if sub.content == "id-only" else None)
    bundle = notification(base, sub_id, "active", "event-notification", number,
                          [(number, event.created_at, focus, event.version_id)], now)
    try:
        send(rt, sub.endpoint, header_fields(unseal(rt, sub)["headers"]), bundle,
             config=config)
    except DeliveryError as exc:
        _failed(rt, sub_id, event, now, config, exc)
        return "failed"
    with Session(rt.engine) as session, session.begin():
        session.execute(delete(subscription_events).where(EV.id == event.id))
        session.execute(update(subscriptions).where(SUB.id == sub_id).values(failures=0))
    return "sent"


def _drop(rt: Any, event_id: int) -> None:
    with Session(rt.engine) as session, session.begin():
        session.execute(delete(subscription_events).where(EV.id == event_id))


def _failed(rt: Any, sub_id: str, event: Any, now: datetime, config: DeliveryConfig,
            exc: DeliveryError) -> None:
    """Retry with backoff; after the last attempt (or a permanent refusal) the
    subscription goes to `error` and its queue is dropped."""
    attempts = event.attempts + 1
    later = None if exc.permanent else config.retry().next_attempt(now, attempts,
                                                                   _random.random())
    log.warning("subscription delivery failed (%s), attempt %d", exc.reason, attempts)
    with Session(rt.engine) as session, session.begin():
        if later is None:
            session.execute(delete(subscription_events).where(
                EV.subscription_id == sub_id))
            session.execute(update(subscriptions).where(SUB.id == sub_id).values(
                status="error", failures=attempts))
        else:
            session.execute(update(subscription_events).where(EV.id == event.id).values(
                attempts=attempts, next_attempt_at=later))
            session.execute(update(subscriptions).where(SUB.id == sub_id).values(
                failures=attempts))
