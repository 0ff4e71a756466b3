"""The notification worker (SPEC §6, §12): delivers the outbox rows that the audit wrote
in each consulting request's transaction.

Each run groups the consultations of one actor within a window into one message that
lists each, and:
- inbox, a row never attempted: takes a batch of them (`FOR UPDATE SKIP LOCKED` on
  PostgreSQL; the SQLite write lock serialises), writes the §12 Communications and marks
  the rows sent in ONE transaction (`_inbox_at_once`), so each consultation reaches the
  inbox exactly once. The row locks are the lease: no UPDATE of each row beforehand. A
  `notify_runs` row written before that transaction and deleted in it tells the next run
  when one died mid-batch; that run then leases what it takes (below), so a notice that
  kills the worker has its attempts counted like any other;
- every other row (e-mail, webhook, an inbox row retried) is claimed first, in a short
  transaction of its own, by counting the attempt and leasing the row; the inbox groups
  of a claimed batch are then delivered in one transaction too;
- email / webhook: sends, then marks sent. At least once: a crash between the send and
  the commit resends. Receivers dedupe by the Message-ID / Idempotency-Key (the outbox
  id, or a digest of a group's ids) or by the record ids listed.
A failure counts the attempt, sets `last_error` (short, no personal data) and the next
attempt by exponential backoff; after `max_attempts` (or a permanent failure) the row is
`dead`. A worker that dies mid-delivery leaves the lease to expire: the rows come back.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, literal_column, select, update
from sqlalchemy.orm import Session

from audit.notify import RetryPolicy, delivery_key, group_within, next_digest
from audit.transport import DeliveryError, SmtpConfig, post_webhook, send_email, webhook_body
from audit.tx import among
from auth import Principal
from dossier.core.context import RequestContext
from dossier.core.repository import NullAudit, OpenPolicy, Repository
from dossier.db.models import notification_outbox, notification_settings, notify_runs
from dossier.db.tx import Tx
from dossier.errors import DossierError
from dossier.notify.content import (
    Prepared,
    communication,
    prepare,
    prepare_inboxes,
    write_server_resource,
)
from dossier.notify.preferences import (
    NotificationSettings,
    get_notification_settings,
    set_notification_settings,
)
from dossier.notify.professionals import notice
from dossier.stores.pro_email import CHANNEL, ProEmail

__all__ = ["DeliveryConfig", "NotificationSettings", "communication", "config_from_settings",
           "deliver_due", "get_notification_settings", "run_pending",
           "set_notification_settings", "write_server_resource"]

log = logging.getLogger("dossier.notify.worker")
RUN_SECONDS = 30.0  # one run of the notifier delivers for at most this long
# a `notify_runs` row older than this is a run that died: a batch's transaction writes
# nothing outside the database and lasts milliseconds to seconds
DIED_AFTER = timedelta(seconds=60)
OB = notification_outbox.c
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
    batch_size: int = 500  # rows claimed at once; their inbox groups share a transaction
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
    digest: bool = False  # an e-mail row of the daily digest


# ---------------------------------------------------------------------------- worker
def deliver_due(runtime: Any, now: datetime, config: DeliveryConfig | None = None, *,
                rand: Callable[[], float] | None = None) -> int:
    """Deliver one batch of due rows (and, after a full batch of new inbox rows, the
    leased rows' turn); returns how many rows were delivered."""
    config = config or _config(runtime)
    _, delivered, leased = _batch(runtime, now, config, rand or _random.random)
    if not leased:  # a full batch of new inbox rows: the leased rows' turn, in this call too
        delivered += _batch(runtime, now, config, rand or _random.random, fresh=False)[1]
    return delivered


def run_pending(runtime: Any, now: datetime | None = None,
                config: DeliveryConfig | None = None, max_batches: int | None = None,
                budget_seconds: float = RUN_SECONDS) -> int:
    """The periodic job: batches until one is not full or `budget_seconds` have passed
    (checked between batches; the next run goes on). It was 20 batches a run, 1,000 rows
    every 5 s: under sustained reads the backlog, and each person's wait for their
    notice, grew without bound (issue 13)."""
    config = config or _config(runtime)
    total, batches, leased = 0, 0, False
    deadline = time.monotonic() + budget_seconds
    while max_batches is None or batches < max_batches:
        claimed, delivered, leased = _batch(runtime, now or datetime.now(UTC), config,
                                            _random.random)
        total += delivered
        batches += 1
        if claimed < config.batch_size or time.monotonic() >= deadline:
            break
    if not leased:  # stopped on a full batch of new inbox rows: the others get their turn
        total += _batch(runtime, now or datetime.now(UTC), config, _random.random,
                        fresh=False)[1]
    return total


def _config(runtime: Any) -> DeliveryConfig:
    found = runtime.extras.get("delivery_config")
    return found if isinstance(found, DeliveryConfig) else config_from_settings(
        runtime.settings)


def _batch(runtime: Any, now: datetime, config: DeliveryConfig, rand: Callable[[], float],
           *, fresh: bool = True) -> tuple[int, int, bool]:
    """(rows taken, rows delivered, whether the leased rows had their turn). `fresh`:
    new inbox rows first, without a lease (`_inbox_at_once`); when they fill a batch, the
    leased rows wait for the next batch (run_pending gives them a turn before it ends),
    else a backlog of new notices would be leased half of it, batch after batch."""
    claimed = delivered = 0
    at_once = _inbox_at_once(runtime, now, config, rand) if fresh else None
    if at_once is not None:
        claimed, delivered = at_once
        if claimed >= config.batch_size:
            return claimed, delivered, False
    for _ in range(2):  # the inbox first; then the e-mail and webhook rows it fanned out
        rows = claim(runtime.engine, now, config)
        groups = _windowed([r for r in rows if not r.digest and r.channel != CHANNEL],
                           config)
        digests: dict[str, list[Due]] = {}
        for row in rows:  # the day's digest: one e-mail per person, every actor in it
            if row.digest:
                digests.setdefault(row.patient_id, []).append(row)
        groups += list(digests.values())
        pros: dict[str | None, list[Due]] = {}
        for row in rows:  # a professional's notices: one e-mail for what is due
            if row.channel == CHANNEL:
                pros.setdefault(row.agent, []).append(row)
        groups += list(pros.values())
        claimed += len(rows)
        inboxes = [g for g in groups if g[0].channel == "inbox"]
        delivered += deliver_inboxes(runtime, inboxes, now, config, rand)
        delivered += sum(deliver_group(runtime, g, now, config, rand) for g in groups
                         if g[0].channel != "inbox")
        if not any(r.channel == "inbox" for r in rows):
            break
    return claimed, delivered, True


def _windowed(rows: Sequence[Due], config: DeliveryConfig) -> list[list[Due]]:
    """One actor's consultations of one person, channel and urgency within the group
    window: one message each."""
    return group_within(rows, lambda r: (r.patient_id, r.agent, r.channel, r.urgent),
                        lambda r: r.created_at,
                        timedelta(seconds=config.group_window_seconds))


# a literal, not a bound parameter: a plan made for any status (a prepared statement's
# generic plan) could not use the partial index, which holds only pending rows
PENDING: Any = literal_column("'pending'")


def _due(urgent: bool, now: datetime, limit: int, *, fresh_inbox: bool = False) -> Any:
    """Due pending rows of one urgency, oldest first: `ix_notification_outbox_pending`
    (only pending rows, in this order) is read from its start and the scan stops at the
    limit or at the first row not yet due, whatever the backlog. `fresh_inbox`: only
    inbox rows never attempted (`_inbox_at_once`)."""
    query = (select(OB.id, OB.patient_id, OB.record_id, OB.agent, OB.urgent, OB.created_at,
                    OB.channel, OB.attempts, OB.digest)
             .where(OB.status == PENDING, OB.urgent == urgent, OB.next_attempt_at <= now))
    if fresh_inbox:
        query = query.where(OB.channel == INBOX, OB.attempts == 0)
    return (query.order_by(OB.next_attempt_at, OB.created_at, OB.id)
            .limit(limit).with_for_update(skip_locked=True))


INBOX: Any = literal_column("'inbox'")  # a literal, as PENDING


def _due_rows(session: Tx, now: datetime, limit: int, *,
              fresh_inbox: bool = False) -> list[Any]:
    """Up to `limit` due rows, the urgent ones first: each an index range scan."""
    rows: list[Any] = []
    for urgent in (True, False):
        if len(rows) < limit:
            rows += session.execute(_due(urgent, now, limit - len(rows),
                                         fresh_inbox=fresh_inbox)).all()
    return rows


def claim(engine: Any, now: datetime, config: DeliveryConfig) -> list[Due]:
    """Count an attempt on each due row and lease it, in one short transaction."""
    with Session(engine) as session, session.begin():
        rows = _due_rows(session, now, config.batch_size)
        spent = [r.id for r in rows if r.attempts >= config.max_attempts]
        live = [r for r in rows if r.attempts < config.max_attempts]
        if spent:  # the worker died on these too often
            session.execute(update(notification_outbox).where(among(session, OB.id, spent)).values(
                status="dead", last_error="gave up after interrupted attempts"))
        if live:
            session.execute(update(notification_outbox).where(
                among(session, OB.id, [r.id for r in live])).values(
                attempts=OB.attempts + 1,
                next_attempt_at=now + timedelta(seconds=config.lease_seconds)))
    return [Due(r.id, r.patient_id, r.record_id, r.agent, bool(r.urgent), r.created_at,
                r.channel, r.attempts + 1, bool(r.digest)) for r in live]


def deliver_group(runtime: Any, group: Sequence[Due], now: datetime, config: DeliveryConfig,
                  rand: Callable[[], float]) -> int:
    channel = group[0].channel
    try:
        if channel == "inbox":
            return _deliver_inbox(runtime, group, now, config)
        if channel == CHANNEL:
            return _deliver_pro(runtime, group, now, config)
        with Session(runtime.engine) as session, session.begin():
            ready = _prepare(runtime, session, group, config)
        message, contact = ready.message, ready.contact
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


def deliver_inboxes(runtime: Any, groups: Sequence[Sequence[Due]], now: datetime,
                    config: DeliveryConfig, rand: Callable[[], float]) -> int:
    """All the inbox groups of a batch in ONE transaction: their lookups in a fixed
    number of statements, their Communications in one multi-row INSERT, their rows marked
    sent, the chosen channels fanned out. One transaction per group cost about 12
    statements and 3 ms of CPU per notice, more than the read it reported: under
    sustained reads the backlog grew (issue 13). A group that cannot be delivered (an
    erased dossier, a missing record) is failed on its own after the commit. If the batch
    fails as a whole (another worker delivered some of its rows first, a database
    error), each group is delivered again on its own, as `deliver_group` does."""
    if len(groups) < 2:
        return sum(deliver_group(runtime, g, now, config, rand) for g in groups)
    try:
        with Session(runtime.engine) as session, session.begin():
            sent, refused = _write_inboxes(runtime, session, groups, now)
    except Exception as exc:  # noqa: BLE001 - each group again, alone: one bad group
        # must not hold back the others
        if not isinstance(exc, _AlreadyDone):
            log.warning("inbox batch failed (%s); delivering group by group",
                        type(exc).__name__)
        return sum(deliver_group(runtime, g, now, config, rand) for g in groups)
    _refused(runtime, refused, now, config, rand)
    return sent


def _write_inboxes(runtime: Any, session: Tx, groups: Sequence[Sequence[Due]],
                   now: datetime) -> tuple[int, list[tuple[Sequence[Due], DeliveryError]]]:
    """In the caller's transaction: the groups' lookups in a fixed number of
    statements, their Communications in one multi-row INSERT, their rows marked sent and
    the chosen channels fanned out. Returns how many rows were delivered and the groups
    that cannot be (an erased dossier, a missing record), to fail after the commit."""
    sealer = runtime.sealer()
    ready = prepare_inboxes(runtime, session, sealer, [
        (g[0].patient_id, [d.record_id for d in g],
         {d.record_id for d in g if d.urgent}) for g in groups])
    repo = Repository(session, RequestContext(principal=SERVER, now=now),
                      policy=OpenPolicy(), sealer=sealer, audit=NullAudit())
    sent: list[Due] = []
    refused: list[tuple[Sequence[Due], DeliveryError]] = []
    with repo.buffered():
        for group, prepared in zip(groups, ready, strict=True):
            if isinstance(prepared, Prepared):
                write_server_resource(repo, communication(
                    group[0].patient_id, prepared.accesses, prepared.message, now))
                sent += group
            else:
                refused.append((group, prepared))
    if sent:
        _inboxed(session, sent, now)
    return len(sent), refused


def _refused(runtime: Any, refused: Sequence[tuple[Sequence[Due], DeliveryError]],
             now: datetime, config: DeliveryConfig, rand: Callable[[], float]) -> None:
    for group, error in refused:
        _failed(runtime.engine, group, now, config, error.reason, error.permanent, rand())


def _inbox_at_once(runtime: Any, now: datetime, config: DeliveryConfig,
                   rand: Callable[[], float]) -> tuple[int, int] | None:
    """Inbox rows never attempted, up to a batch: taken (row locks), written to the
    inbox and marked sent in ONE transaction, with no lease beforehand (the lease was an
    UPDATE of every notice in a transaction of its own: docs/benchmarks.md, "Session
    14"). Returns (rows taken, rows delivered), or None when this run leases what it takes
    instead: a run died mid-batch, or this batch failed (it rolled back whole)."""
    run = _run_started(runtime.engine)
    if run is None:
        return None
    try:
        with Session(runtime.engine) as session, session.begin():
            rows = _due_rows(session, now, config.batch_size, fresh_inbox=True)
            dues = [Due(r.id, r.patient_id, r.record_id, r.agent, bool(r.urgent),
                        r.created_at, r.channel, r.attempts + 1, bool(r.digest))
                    for r in rows]
            groups = _windowed(dues, config)
            sent, refused = _write_inboxes(runtime, session, groups, now) if groups \
                else (0, [])
            session.execute(delete(notify_runs).where(notify_runs.c.id == run))
    except Exception as exc:  # noqa: BLE001 - rolled back whole; the leased path takes over
        if not isinstance(exc, _AlreadyDone):
            log.warning("inbox batch failed (%s); leasing its rows instead",
                        type(exc).__name__)
        with Session(runtime.engine) as session, session.begin():
            session.execute(delete(notify_runs).where(notify_runs.c.id == run))
        return None
    _refused(runtime, refused, now, config, rand)
    return len(dues), sent


def _run_started(engine: Any) -> str | None:
    """This run's `notify_runs` row, committed; None if a run died mid-batch (a row
    older than DIED_AFTER, on the clock, not the business time a test passes as `now`):
    its rows are then removed, and this run leases what it takes."""
    clock = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        died = session.execute(delete(notify_runs).where(
            notify_runs.c.started_at < clock - DIED_AFTER))
        if died.rowcount:  # type: ignore[attr-defined]
            log.warning("a notifier run died mid-batch: this run leases its rows")
            return None
        run = str(uuid.uuid4())
        session.execute(insert(notify_runs).values(id=run, started_at=clock))
    return run


def _deliver_inbox(runtime: Any, group: Sequence[Due], now: datetime,
                   config: DeliveryConfig) -> int:
    try:
        with Session(runtime.engine) as session, session.begin():
            ready = _prepare(runtime, session, group, config)
            ctx = RequestContext(principal=SERVER, now=now)
            repo = Repository(session, ctx, policy=OpenPolicy(), sealer=runtime.sealer(),
                              audit=NullAudit())
            write_server_resource(repo, communication(group[0].patient_id, ready.accesses,
                                                      ready.message, now))
            _inboxed(session, group, now)
    except _AlreadyDone:
        return 0
    return len(group)


def _inboxed(session: Tx, dues: Sequence[Due], now: datetime) -> None:
    """In the transaction that wrote their messages: the rows marked sent (all of them
    still pending, else another worker delivered some: _AlreadyDone, roll back) and the
    chosen channels fanned out."""
    if _sent(session, dues, now) != len(dues):
        raise _AlreadyDone()
    fan_out(session, dues, now)


def _sent(session: Tx, dues: Sequence[Due], now: datetime) -> int:
    """Mark the rows still pending as sent; how many were."""
    done = session.execute(update(notification_outbox).where(
        among(session, OB.id, [d.id for d in dues]), OB.status == "pending").values(
        status="sent", sent_at=now, last_error=None))
    return int(done.rowcount)  # type: ignore[attr-defined]


def fan_out(session: Tx, dues: Sequence[Due], now: datetime) -> None:
    """A request writes one outbox row per notice (the inbox, always); once it is in the
    inbox, the channels the person chose (e-mail, webhook) get their own rows, in the
    same transaction, so each is retried on its own. A person who chose the daily digest
    gets their e-mail rows at the next digest time; urgent ones go at once."""
    NS = notification_settings.c
    chosen = {r.patient_id: r for r in session.execute(
        select(NS.patient_id, NS.sealed, NS.email_digest).where(
            among(session, NS.patient_id, sorted({d.patient_id for d in dues})))).all()}
    rows = []
    for due in dues:
        settings = chosen.get(due.patient_id)
        channels = [c for c in ("email", "webhook") if c in ((settings and settings.sealed)
                                                              or {})]
        daily = bool(settings and settings.email_digest)
        for channel in channels:
            digest = daily and channel == "email" and not due.urgent
            rows.append({
                "id": str(uuid.uuid4()), "patient_id": due.patient_id,
                "record_id": due.record_id, "agent": due.agent, "urgent": due.urgent,
                "created_at": due.created_at, "channel": channel, "status": "pending",
                "attempts": 0, "digest": digest,
                "next_attempt_at": next_digest(now) if digest else now})
    if rows:
        session.execute(insert(notification_outbox), rows)


def _deliver_pro(runtime: Any, group: Sequence[Due], now: datetime,
                 config: DeliveryConfig) -> int:
    """The address is read at sending time: a professional who cleared it gets nothing."""
    with Session(runtime.engine) as session, session.begin():
        chosen = ProEmail(session).get(group[0].agent or "")
    if chosen is not None:
        smtp = config.smtp()
        if smtp is None:
            raise DeliveryError("smtp not configured")
        send_email(smtp, chosen[0], notice(chosen[1], config.base_url),
                   delivery_key([d.id for d in group]))
    _mark_sent(runtime.engine, group, now)
    return len(group)


def _mark_sent(engine: Any, group: Sequence[Due], now: datetime) -> None:
    with Session(engine) as session, session.begin():
        _sent(session, group, now)


def _failed(engine: Any, group: Sequence[Due], now: datetime, config: DeliveryConfig,
            reason: str, permanent: bool, rand: float) -> None:
    policy = config.retry()
    log.warning("notification %s delivery failed (%s): %d row(s)", group[0].channel, reason,
                len(group))
    with Session(engine) as session, session.begin():
        for due in group:
            later = None if permanent else policy.next_attempt(now, due.attempts, rand)
            # the attempt under way: already counted by a lease, not by `_inbox_at_once`
            values: dict[str, Any] = {"last_error": reason[:200], "attempts": due.attempts}
            if later is None:
                values["status"] = "dead"
            else:
                values["next_attempt_at"] = later
            session.execute(update(notification_outbox).where(
                OB.id == due.id, OB.status == "pending").values(**values))


def _prepare(runtime: Any, session: Tx, group: Sequence[Due],
             config: DeliveryConfig) -> Prepared:
    return prepare(runtime, session, group[0].patient_id, group[0].channel,
                   [d.record_id for d in group], {d.record_id for d in group if d.urgent},
                   config.base_url, digest=group[0].digest)
