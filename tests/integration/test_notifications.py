"""Access notifications end to end (SPEC §6, §12): the GP's consultations over HTTP fill
the outbox; the worker delivers to the inbox (Communication), a real SMTP server
(aiosmtpd) and a real HTTP listener on loopback, through outages, exactly once each."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.notify import SIGNATURE_HEADER, verify_webhook_signature
from dossier.db.models import notification_outbox, notification_settings
from dossier.notify.worker import DeliveryConfig, deliver_due, set_notification_settings
from tests import factories as f
from tests.integration.conftest import World

OB = notification_outbox.c
CATEGORY = "https://dossier.brussels/fhir/CodeSystem/communication-category|access-notification"
RECORD_LINK = re.compile(r"/fhir/AuditEvent/([0-9a-f-]{36})")
FAMILY, GIVEN, NISS = "Vandermeulen", "Josette", f.niss("520304", 77)
ADDRESS = "josette.vdm@example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ real peers
class Mailbox:
    """An aiosmtpd server that can go down and come back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def up(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def records(self) -> list[str]:
        return [rid for _, m in self.messages for rid in RECORD_LINK.findall(body(m))]


def body(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class Hook:
    """A webhook receiver on loopback; `status` is what it answers; it can go down."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dossier-hook"

    def up(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.status < 300:
                    hook.received.append((dict(self.headers.items()), data))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.server = None

    def records(self) -> list[str]:
        return [r for _, data in self.received for r in json.loads(data)["records"]]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.up()
    yield box
    box.down()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    receiver.up()
    yield receiver
    receiver.down()


# ------------------------------------------------------------------ helpers
def config(mailbox: Mailbox | None = None, **kw: Any) -> DeliveryConfig:
    return DeliveryConfig(smtp_host="127.0.0.1" if mailbox else None,
                          smtp_port=mailbox.port if mailbox else 25,
                          smtp_from="dossier@dossier.test", timeout=5.0,
                          base_url="http://testserver", allow_local_webhooks=True, **kw)


def choose(world: World, pid: str, **kw: Any) -> Any:
    runtime = world.app.state.runtime
    with Session(runtime.engine) as session, session.begin():
        return set_notification_settings(runtime, session, pid, allow_local_webhooks=True,
                                         **kw)


def deliver(world: World, cfg: DeliveryConfig, at: datetime | None = None) -> int:
    return deliver_due(world.app.state.runtime, at or datetime.now(UTC), cfg,
                       rand=lambda: 0.5)


def outbox(world: World, pid: str) -> list[Any]:
    with Session(world.app.state.runtime.engine) as session:
        return list(session.execute(select(notification_outbox).where(
            OB.patient_id == pid).order_by(OB.created_at, OB.channel)).all())


def inbox(world: World, pid: str) -> list[dict[str, Any]]:
    r = world.citizen(pid).get("/fhir/Communication", params={
        "recipient": f"Patient/{pid}", "category": CATEGORY})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def consult(world: World, pid: str, times: int = 1) -> None:
    for _ in range(times):
        assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 200


def person() -> dict[str, Any]:
    return f.patient(ssin=NISS, family=FAMILY, given=GIVEN, language="nl")


# ------------------------------------------------------------------ cases
def test_inbox_communication_per_section_12(world: World) -> None:
    pid = world.consented()
    consult(world, pid)
    world.app.state.runtime.integrate_audit()
    assert deliver(world, config()) == 1
    [note] = inbox(world, pid)
    assert note["status"] == "completed" and note["priority"] == "routine"
    assert note["recipient"] == [{"reference": f"Patient/{pid}"}]
    assert note["subject"] == {"reference": f"Patient/{pid}"}
    assert note["sender"] == {"reference": world.gp_ref}
    assert note["category"][0]["coding"][0]["code"] == "access-notification"
    assert note["sent"].endswith("Z")
    [about] = note["about"]
    record_id = about["reference"].split("/", 1)[1]
    text = note["payload"][0]["contentString"]
    assert "Anne Dupont" in text and "CPAS de Saint-Gilles" in text  # who, organisation
    assert "a consulté votre dossier" in text and "lecture (identité)" in text  # what
    assert f"/fhir/AuditEvent/{record_id}" in text
    proof = re.search(r"/audit/proof/inclusion\?index=(\d+)&tree_size=(\d+)", text)
    assert proof is not None
    # the links work for the citizen
    assert world.citizen(pid).get(f"/fhir/AuditEvent/{record_id}").status_code == 200
    assert world.citizen(pid).get(proof.group(0)).status_code == 200
    # delivered once: the row is sent, a second run finds nothing
    assert [(r.channel, r.status) for r in outbox(world, pid)] == [("inbox", "sent")]
    assert deliver(world, config()) == 0
    assert len(inbox(world, pid)) == 1
    # professionals never read the citizen's notifications: their own inbox only (§14)
    others = world.gp.get("/fhir/Communication", params={"recipient": f"Patient/{pid}"})
    assert others.status_code == 200 and others.json()["total"] == 0
    assert world.gp.get(f"/fhir/Communication/{note['id']}").status_code == 404


def test_without_choices_the_inbox_speaks_the_patients_language(world: World) -> None:
    pid = world.consented(person())  # Patient.communication: nl
    consult(world, pid)
    assert deliver(world, config()) == 1
    [note] = inbox(world, pid)
    assert "heeft uw dossier geraadpleegd" in note["payload"][0]["contentString"]
    assert [r.channel for r in outbox(world, pid)] == ["inbox"]


def test_email_in_the_citizens_language(world: World, mailbox: Mailbox) -> None:
    pid = world.consented(person())
    choose(world, pid, language="nl", email=ADDRESS)
    consult(world, pid)
    assert deliver(world, config(mailbox)) == 2  # inbox and e-mail
    [(rcpt, message)] = mailbox.messages
    assert rcpt == [ADDRESS]
    assert message["Subject"] == "Uw dossier werd geraadpleegd"
    assert message["Content-Language"] == "nl"
    text = body(message)
    assert "Anne Dupont voor CPAS de Saint-Gilles heeft uw dossier geraadpleegd." in text
    assert "(Brusselse tijd)" in text and "inzage (identiteit)" in text
    [row] = [r for r in outbox(world, pid) if r.channel == "email"]
    assert message["Message-ID"] == f"<{row.id}@dossier.test>"
    assert mailbox.records() == [row.record_id]
    assert "http://testserver/fhir/AuditEvent/" in text
    # the address is sealed, never stored in clear
    with Session(world.app.state.runtime.engine) as session:
        raw = session.execute(select(notification_settings.c.sealed).where(
            notification_settings.c.patient_id == pid)).scalar_one()
    assert set(raw) == {"email"} and ADDRESS not in json.dumps(raw)


def test_consultations_in_a_window_are_grouped_each_listed(world: World,
                                                           mailbox: Mailbox) -> None:
    pid = world.consented()
    choose(world, pid, language="en", email=ADDRESS)
    consult(world, pid, times=3)
    assert deliver(world, config(mailbox)) == 6
    [(_, message)] = mailbox.messages
    assert "Anne Dupont for CPAS de Saint-Gilles consulted your dossier 3 times." in body(
        message)
    records = {r.record_id for r in outbox(world, pid)}
    assert sorted(mailbox.records()) == sorted(records)
    [note] = inbox(world, pid)
    assert {a["reference"] for a in note["about"]} == {f"AuditEvent/{r}" for r in records}


def test_webhook_is_signed(world: World, hook: Hook) -> None:
    pid = world.consented()
    chosen = choose(world, pid, language="fr", webhook_url=hook.url)
    consult(world, pid)
    assert deliver(world, config()) == 2
    [(headers, data)] = hook.received
    assert verify_webhook_signature(chosen.webhook_secret, data,
                                    headers[SIGNATURE_HEADER], now=time.time())
    assert not verify_webhook_signature(chosen.webhook_secret, data + b" ",
                                        headers[SIGNATURE_HEADER], now=time.time())
    assert not verify_webhook_signature("another-secret-of-length", data,
                                        headers[SIGNATURE_HEADER], now=time.time())
    payload = json.loads(data)
    [row] = [r for r in outbox(world, pid) if r.channel == "webhook"]
    assert headers["Idempotency-Key"] == payload["id"] == row.id
    assert payload["type"] == "access-notification"
    assert payload["patient"] == f"Patient/{pid}"
    assert payload["records"] == [row.record_id] and payload["urgent"] is False
    assert "a consulté votre dossier" in payload["text"]


def test_outage_then_recovery_delivers_everything_exactly_once(
        world: World, mailbox: Mailbox, hook: Hook) -> None:
    pid = world.consented()
    choose(world, pid, language="fr", email=ADDRESS, webhook_url=hook.url)
    cfg = config(mailbox, group_window_seconds=60)
    mailbox.down()
    hook.status = 503
    consult(world, pid, times=2)
    start = datetime.now(UTC)
    assert deliver(world, cfg, start) == 2  # the inbox only
    errors = {r.channel: (r.attempts, r.last_error) for r in outbox(world, pid)
              if r.status == "pending"}
    assert errors == {"email": (1, "smtp connect refused"), "webhook": (1, "http 503")}
    assert deliver(world, cfg, start) == 0  # not due before the backoff
    hook.down()  # now refusing connections too
    consult(world, pid)
    later = start + timedelta(hours=1)
    assert deliver(world, cfg, later) == 1  # the third consultation's inbox row
    assert {r.last_error for r in outbox(world, pid) if r.status == "pending"} == {
        "smtp connect refused", "http connect refused"}
    mailbox.up()
    hook.status = 200
    hook.up()
    assert deliver(world, cfg, later + timedelta(days=1)) == 6
    rows = outbox(world, pid)
    assert {r.status for r in rows} == {"sent"} and len(rows) == 9
    records = sorted({r.record_id for r in rows})
    assert sorted(mailbox.records()) == records  # every one, none twice
    assert sorted(hook.records()) == records
    assert sorted(a["reference"].split("/")[1] for n in inbox(world, pid)
                  for a in n["about"]) == records
    # nothing left: further runs send nothing more
    assert deliver(world, cfg, later + timedelta(days=30)) == 0
    assert sorted(mailbox.records()) == records and sorted(hook.records()) == records


def test_max_attempts_then_dead(world: World, mailbox: Mailbox) -> None:
    pid = world.consented()
    choose(world, pid, language="fr", email=ADDRESS)
    mailbox.down()
    cfg = config(mailbox, max_attempts=3)
    consult(world, pid)
    at = datetime.now(UTC)
    for _ in range(5):
        deliver(world, cfg, at)
        at += timedelta(days=1)
    [row] = [r for r in outbox(world, pid) if r.channel == "email"]
    assert (row.status, row.attempts, row.last_error) == ("dead", 3, "smtp connect refused")
    mailbox.up()
    assert deliver(world, cfg, at + timedelta(days=1)) == 0
    assert mailbox.messages == []


def test_break_the_glass_is_urgent(world: World, mailbox: Mailbox) -> None:
    pid = world.consented()
    choose(world, pid, language="fr", email=ADDRESS)
    nurse_ref = world.add_practitioner("Urgent", "persnurse")
    nurse = world.as_("practitioner", nurse_ref)
    reason = {"resourceType": "Parameters",
              "parameter": [{"name": "reason", "valueString": "unconscious at admission"}]}
    assert nurse.post(f"/fhir/Patient/{pid}/$break-glass", reason).status_code == 200
    assert nurse.get(f"/fhir/Patient/{pid}").status_code == 200
    rows = outbox(world, pid)
    urgent = {r.record_id for r in rows if r.urgent}
    assert {r.channel for r in rows if r.urgent} == {"inbox"}  # the request: its inbox notice
    delivered = deliver(world, config(mailbox))
    rows = outbox(world, pid)  # the worker fanned the urgent notice out to e-mail too
    assert {r.channel for r in rows if r.urgent} == {"inbox", "email"}
    assert delivered == len(rows)
    [note] = [n for n in inbox(world, pid) if n["priority"] == "urgent"]
    assert {a["reference"] for a in note["about"]} == {f"AuditEvent/{r}" for r in urgent}
    assert note["sender"] == {"reference": nurse_ref}
    assert "bris de glace" in note["payload"][0]["contentString"]
    assert "unconscious" not in json.dumps(inbox(world, pid))
    [message] = [m for _, m in mailbox.messages if set(RECORD_LINK.findall(body(m))) & urgent]
    assert message["Subject"].startswith("URGENT") and message["Importance"] == "high"
    assert "bris de glace" in body(message)


def test_no_personal_data_in_errors_or_logs(world: World, mailbox: Mailbox, hook: Hook,
                                            caplog: pytest.LogCaptureFixture) -> None:
    pid = world.consented(person())
    choose(world, pid, language="nl", email=ADDRESS, webhook_url=hook.url)
    mailbox.down()
    hook.down()
    consult(world, pid)
    with caplog.at_level(logging.DEBUG):
        deliver(world, config(mailbox))
    rows = outbox(world, pid)
    errors = " ".join(r.last_error or "" for r in rows)
    assert errors.strip()
    logged = caplog.text + errors + json.dumps(inbox(world, pid))
    for secret in (FAMILY, GIVEN, NISS, ADDRESS, hook.url):
        assert secret not in logged


def test_the_citizens_own_reads_notify_nobody(world: World) -> None:
    pid = world.consented()
    citizen = world.citizen(pid)
    assert citizen.get(f"/fhir/Patient/{pid}").status_code == 200
    assert citizen.get("/fhir/Task", params={"patient": f"Patient/{pid}"}).status_code == 200
    assert outbox(world, pid) == []
    assert deliver(world, config()) == 0
    assert inbox(world, pid) == []


def test_concurrent_workers_deliver_each_once(world: World, mailbox: Mailbox) -> None:
    pids = [world.consented(f.patient(ssin=f.niss("700101", n))) for n in (11, 12, 13)]
    for pid in pids:
        choose(world, pid, language="en", email=ADDRESS)
        consult(world, pid, times=3)
    cfg = config(mailbox, batch_size=2, group_window_seconds=0)
    at = datetime.now(UTC)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while deliver(world, cfg, at):
                pass
        except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    while deliver(world, cfg, at):  # whatever a worker left when it saw an empty batch
        pass
    for pid in pids:
        rows = outbox(world, pid)
        assert len(rows) == 6 and {r.status for r in rows} == {"sent"}
        assert sorted(a["reference"] for n in inbox(world, pid) for a in n["about"]) == \
            sorted(f"AuditEvent/{r.record_id}" for r in rows if r.channel == "inbox")
    records = [r.record_id for pid in pids for r in outbox(world, pid) if r.channel == "email"]
    assert sorted(mailbox.records()) == sorted(records)


def test_citizen_sets_channels_over_fhir(world: World) -> None:
    pid = world.consented()
    citizen = world.citizen(pid)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "language", "valueCode": "nl"},
        {"name": "email", "valueString": "simone@example.org"}]}
    r = citizen.post(f"/fhir/Patient/{pid}/$notification-settings", body)
    assert r.status_code == 200, r.text
    got = citizen.get(f"/fhir/Patient/{pid}/$notification-settings").json()
    values = {(p["name"], next(v for k, v in p.items() if k.startswith("value")))
              for p in got["parameter"]}
    assert ("language", "nl") in values and ("channel", "email") in values
    assert world.gp.get(f"/fhir/Patient/{pid}/$notification-settings").status_code == 403
    bad = {"resourceType": "Parameters", "parameter": [{"name": "email",
                                                        "valueString": "not an address"}]}
    assert citizen.post(f"/fhir/Patient/{pid}/$notification-settings", bad).status_code == 422
    with world.app.state.runtime.engine.connect() as conn:
        from sqlalchemy import text

        raw = str(conn.execute(text("SELECT sealed FROM notification_settings")).all())
    assert "simone@example.org" not in raw


def test_a_claim_takes_urgent_rows_first_then_the_oldest_due(world: World) -> None:
    """`claim` reads two index ranges of `ix_notification_outbox_pending` (urgent, then
    the rest), each in the order due, and leaves rows not yet due or not pending."""
    from dossier.notify.worker import claim

    pid = world.consented()
    consult(world, pid)  # one real record for the rows to name
    [record] = {r.record_id for r in outbox(world, pid)}
    now = datetime.now(UTC)
    rows = []
    for i, (urgent, due_in, status) in enumerate([
            (False, -50, "pending"), (False, -40, "pending"), (True, -5, "pending"),
            (False, +60, "pending"), (True, -1, "sent"), (False, -45, "dead"),
            (True, -9, "pending"), (False, -60, "pending")]):
        rows.append({"id": f"claim-{i}", "patient_id": pid, "record_id": record,
                     "agent": world.gp_ref, "urgent": urgent, "channel": "webhook",
                     "created_at": now + timedelta(seconds=due_in), "status": status,
                     "attempts": 0, "digest": False,
                     "next_attempt_at": now + timedelta(seconds=due_in)})
    runtime = world.app.state.runtime
    with Session(runtime.engine) as session, session.begin():
        session.execute(notification_outbox.delete().where(OB.patient_id == pid))
        session.execute(notification_outbox.insert(), rows)
    first = claim(runtime.engine, now, config(batch_size=3))
    assert [d.id for d in first] == ["claim-6", "claim-2", "claim-7"]  # urgent first
    second = claim(runtime.engine, now, config(batch_size=3))
    assert [d.id for d in second] == ["claim-0", "claim-1"]  # the rest: due, pending
    assert claim(runtime.engine, now, config(batch_size=3)) == []  # leased, or not due


def test_the_notifier_runs_until_the_backlog_is_gone(world: World) -> None:
    """One run delivers batches until one is not full: it stopped after 20 batches, and
    under sustained reads each person waited longer and longer (issue 13)."""
    from dossier.notify.worker import run_pending

    pids = [world.consented() for _ in range(3)]
    for pid in pids:
        consult(world, pid, times=15)
    delivered = run_pending(world.app.state.runtime, config=config(batch_size=1))
    assert delivered == 45  # 23 batches of two claims of one row each
    assert all(r.status == "sent" for pid in pids for r in outbox(world, pid))
    assert run_pending(world.app.state.runtime, config=config(batch_size=1)) == 0


def _statements(world: World, run: Any) -> tuple[Any, list[str]]:
    """What `run()` returns and the SQL statements it sent (the worker's engine)."""
    from sqlalchemy import event

    engine = world.app.state.runtime.engine
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.lstrip()[:30].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        return run(), seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_batch_delivers_every_inbox_in_one_transaction(world: World,
                                                         mailbox: Mailbox) -> None:
    """The inbox groups of a batch share one transaction and a fixed number of
    statements: a group per transaction cost ~12 statements and 3 ms of CPU a notice, and
    under sustained reads the backlog grew (issue 13). Each person still gets their own
    Communication, in their language, listing their consultations only, and their chosen
    channels fanned out."""
    dutch = world.consented(person())  # Patient.communication: nl
    english = world.consented(f.patient(ssin=f.niss("700101", 21)))
    choose(world, english, language="en", email=ADDRESS)
    french = world.consented(f.patient(ssin=f.niss("700101", 22)))
    consult(world, dutch, times=2)
    consult(world, english)
    consult(world, french, times=3)
    cfg = config(mailbox)
    delivered = deliver(world, cfg)
    assert delivered == 2 + 1 + 3 + 1  # six inbox rows, then the English e-mail
    texts = {}
    for pid, times in ((dutch, 2), (english, 1), (french, 3)):
        [note] = inbox(world, pid)
        rows = outbox(world, pid)
        assert {r.status for r in rows} == {"sent"}
        assert {a["reference"] for a in note["about"]} == {
            f"AuditEvent/{r.record_id}" for r in rows if r.channel == "inbox"}
        assert len(note["about"]) == times
        texts[pid] = note["payload"][0]["contentString"]
    assert "heeft uw dossier 2 keer geraadpleegd" in texts[dutch]
    assert "consulted your dossier." in texts[english]
    assert "a consulté votre dossier 3 fois" in texts[french]
    assert sorted(r.channel for r in outbox(world, english)) == ["email", "inbox"]
    assert [r.channel for r in outbox(world, french)] == ["inbox"] * 3
    [(rcpt, _)] = mailbox.messages
    assert rcpt == [ADDRESS]


def test_a_batchs_statements_do_not_grow_with_its_people(world: World) -> None:
    """The inbox part of a batch: the same statements for two people consulted once as
    for six consulted twice (the claim, five lookups, one INSERT, the rows marked sent,
    the channels chosen)."""
    def batch(people: int, times: int, serial: int) -> list[str]:
        pids = [world.consented(f.patient(ssin=f.niss("700101", serial + n)))
                for n in range(people)]
        for pid in pids:
            consult(world, pid, times=times)
        delivered, seen = _statements(world, lambda: deliver(world, config()))
        assert delivered == people * times
        assert all(len(inbox(world, pid)) == 1 for pid in pids)
        return seen

    small, large = batch(2, 1, 60), batch(6, 2, 70)
    assert len(large) == len(small) and sorted(large) == sorted(small)
    assert sum(s.startswith(("INSERT INTO RESOURCES ", "WITH INTO_RESOURCES"))
               for s in large) == 1  # every Communication (PostgreSQL: with its index rows)


def test_a_group_that_cannot_be_delivered_fails_alone(world: World) -> None:
    """An erased dossier in the batch: its rows are failed for good, the others are
    delivered in the same run."""
    gone = world.consented(f.patient(ssin=f.niss("700101", 41)))
    kept = world.consented(f.patient(ssin=f.niss("700101", 42)))
    consult(world, gone, times=2)
    consult(world, kept)
    assert world.citizen(gone).post(f"/fhir/Patient/{gone}/$erase", {
        "resourceType": "Parameters"}).status_code == 200
    assert world.admin.post(f"/fhir/Patient/{gone}/$erase", {
        "resourceType": "Parameters"}).status_code == 200
    assert deliver(world, config()) == 1
    assert len(inbox(world, kept)) == 1
    assert {(r.status, r.last_error) for r in outbox(world, gone) if r.channel == "inbox"} \
        <= {("dead", "dossier erased")}


def test_rows_another_worker_delivered_are_not_delivered_twice(world: World) -> None:
    """Between the claim and the delivery, another worker delivered one group (its lease
    expired): the batch's transaction sees it and rolls back, and each group is delivered
    on its own: the others once, that one not again."""
    from dossier.notify.worker import claim, deliver_inboxes

    pids = [world.consented(f.patient(ssin=f.niss("700101", n))) for n in (51, 52, 53)]
    for pid in pids:
        consult(world, pid, times=2)
    runtime, now = world.app.state.runtime, datetime.now(UTC)
    cfg = config()
    claimed = claim(runtime.engine, now, cfg)
    assert len(claimed) == 6
    with Session(runtime.engine) as session, session.begin():
        session.execute(notification_outbox.update().where(
            OB.patient_id == pids[0]).values(status="sent", sent_at=now))
    groups = [[d for d in claimed if d.patient_id == pid] for pid in pids]
    assert deliver_inboxes(runtime, groups, now, cfg, lambda: 0.5) == 4
    assert inbox(world, pids[0]) == []
    for pid in pids[1:]:
        [note] = inbox(world, pid)
        assert len(note["about"]) == 2


def test_inbox_rows_go_to_the_inbox_without_a_lease(world: World) -> None:
    """Inbox rows never attempted are taken, written and marked sent in one transaction:
    no UPDATE of each row beforehand (a lease cost an UPDATE per request served), and
    nothing left in `notify_runs` after the run."""
    from dossier.db.models import notify_runs

    pids = [world.consented(f.patient(ssin=f.niss("700101", n))) for n in (81, 82)]
    for pid in pids:
        consult(world, pid, times=2)
    delivered, seen = _statements(world, lambda: deliver(world, config()))
    assert delivered == 4
    for pid in pids:
        [note] = inbox(world, pid)
        assert len(note["about"]) == 2
        assert {(r.status, r.attempts) for r in outbox(world, pid)} == {("sent", 0)}
    assert not any(s.startswith("UPDATE NOTIFICATION_OUTBOX SET ATTEMPTS") for s in seen)
    with Session(world.app.state.runtime.engine) as session:
        assert session.execute(select(notify_runs)).all() == []


class _Died(BaseException):
    """A worker that dies mid-batch: no `except Exception` catches it, as no handler
    runs when the process is killed."""


def test_after_a_run_died_mid_batch_the_next_counts_attempts_and_gives_up(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notice whose delivery kills the worker: the run dies holding no lease, its
    `notify_runs` row left behind. The next run sees it and leases its rows, so each death
    counts an attempt, and after `max_attempts` the rows are given up: the worker is not
    killed for ever by the same notices. A run in flight (a recent row) is not taken for a
    dead one."""
    from sqlalchemy import update

    from dossier.db.models import notify_runs
    from dossier.notify import worker

    runtime = world.app.state.runtime
    cfg = config(max_attempts=2)
    poisoned = world.consented(f.patient(ssin=f.niss("700101", 91)))
    consult(world, poisoned, times=2)
    real = worker.communication

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise _Died()

    monkeypatch.setattr(worker, "communication", dies)
    now = datetime.now(UTC)
    with pytest.raises(_Died):
        deliver(world, cfg, now)
    # rolled back: nothing counted, nothing leased; the run's row stayed behind
    assert {(r.status, r.attempts) for r in outbox(world, poisoned)} == {("pending", 0)}
    with Session(runtime.engine) as session:
        [left] = session.execute(select(notify_runs)).all()
    # a row this recent could be a run in flight: the next run still goes without a lease
    with pytest.raises(_Died):
        deliver(world, cfg, now)
    assert {r.attempts for r in outbox(world, poisoned)} == {0}

    def age_the_runs() -> None:
        with Session(runtime.engine) as session, session.begin():
            session.execute(update(notify_runs).values(
                started_at=datetime.now(UTC) - worker.DIED_AFTER - timedelta(seconds=1)))

    age_the_runs()
    with pytest.raises(_Died):  # leased this time: the attempt is counted
        deliver(world, cfg, now)
    with Session(runtime.engine) as session:
        assert session.execute(select(notify_runs)).all() == []
    assert {(r.status, r.attempts) for r in outbox(world, poisoned)} == {("pending", 1)}
    # the rows attempted are never taken without a lease again, and the lease holds them
    assert deliver(world, cfg, now) == 0
    later = now + timedelta(seconds=cfg.lease_seconds + 1)
    with pytest.raises(_Died):
        deliver(world, cfg, later)
    assert {(r.status, r.attempts) for r in outbox(world, poisoned)} == {("pending", 2)}
    # the lease expired once more: given up, and the worker lives on
    assert deliver(world, cfg, later + timedelta(seconds=cfg.lease_seconds + 1)) == 0
    assert {(r.status, r.last_error) for r in outbox(world, poisoned)} == {
        ("dead", "gave up after interrupted attempts")}
    # others are delivered as before, without a lease
    monkeypatch.setattr(worker, "communication", real)
    other = world.consented(f.patient(ssin=f.niss("700101", 92)))
    consult(world, other)
    assert deliver(world, cfg) == 1
    assert {(r.status, r.attempts) for r in outbox(world, other)} == {("sent", 0)}
    assert left.id  # the row that told the next run


def test_a_full_batch_of_new_notices_leaves_the_others_their_turn(world: World,
                                                                    mailbox: Mailbox) -> None:
    """New inbox rows that fill a batch are not followed by a leased claim in the same
    batch (it would lease half of a backlog); the leased rows (here the e-mail the inbox
    delivery fanned out) still get their turn in the same call."""
    pid = world.consented(f.patient(ssin=f.niss("700101", 95)))
    choose(world, pid, language="fr", email=ADDRESS)
    consult(world, pid)
    assert deliver(world, config(mailbox, batch_size=1)) == 2  # the inbox, then the e-mail
    assert {(r.channel, r.status) for r in outbox(world, pid)} == {
        ("inbox", "sent"), ("email", "sent")}
    assert len(mailbox.messages) == 1
