"""E-mail as a daily digest, the citizen's choice (issue 19): a real SMTP server (aiosmtpd).
Consultations wait for the digest time and arrive as one e-mail listing each; emergency
access still goes at once; the inbox is unchanged; a list of names notifies nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from audit.notify import BRUSSELS, next_digest
from tests import factories as f
from tests.integration.conftest import World
from tests.integration.test_notifications import (
    ADDRESS,
    RECORD_LINK,
    Mailbox,
    body,
    choose,
    config,
    consult,
    deliver,
    inbox,
    mailbox,
    outbox,
)

__all__ = ["mailbox"]  # the fixture


def test_next_digest_is_seven_in_the_morning_brussels_time() -> None:
    evening = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
    assert next_digest(evening).astimezone(BRUSSELS).isoformat() == \
        "2026-12-06T07:00:00+01:00"
    early = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)  # 05:00 in Brussels (summer)
    assert next_digest(early).astimezone(BRUSSELS).isoformat() == \
        "2026-07-01T07:00:00+02:00"


def test_daily_digest_waits_and_lists_every_look_of_every_actor(world: World,
                                                                 mailbox: Mailbox) -> None:
    pid = world.consented()
    choose(world, pid, language="en", email=ADDRESS, email_digest=True)
    consult(world, pid, times=2)
    nurse_ref = world.add_practitioner("Wauters", "persnurse")
    world.as_("citizen", f"Patient/{pid}").post("/fhir/Consent", f.consent(
        pid, nurse_ref, categories=("identity",), actions=("access",)))
    assert world.as_("practitioner", nurse_ref).get(f"/fhir/Patient/{pid}").status_code == 200
    now = datetime.now(UTC)
    assert deliver(world, config(mailbox), now) == 3  # the inbox at once
    assert len(inbox(world, pid)) == 2  # one per actor
    assert mailbox.messages == []  # the e-mails wait for the digest
    emails = [r for r in outbox(world, pid) if r.channel == "email"]
    assert len(emails) == 3 and all(r.digest and r.status == "pending" for r in emails)
    assert {r.next_attempt_at for r in emails} == {next_digest(now)}
    assert deliver(world, config(mailbox), next_digest(now) + timedelta(seconds=1)) == 3
    [(rcpt, message)] = mailbox.messages  # one e-mail for the day
    assert rcpt == [ADDRESS]
    assert message["Subject"] == "Your dossier: the day's consultations"
    text = body(message)
    assert "consulted your dossier 2 times" in text and "Wauters" in text
    assert sorted(RECORD_LINK.findall(text)) == sorted(r.record_id for r in emails)


def test_break_the_glass_is_not_held_for_the_digest(world: World, mailbox: Mailbox) -> None:
    pid = world.consented()
    choose(world, pid, language="fr", email=ADDRESS, email_digest=True)
    nurse = world.as_("practitioner", world.add_practitioner("Urgent", "persnurse"))
    reason = {"resourceType": "Parameters",
              "parameter": [{"name": "reason", "valueString": "unconscious at admission"}]}
    assert nurse.post(f"/fhir/Patient/{pid}/$break-glass", reason).status_code == 200
    assert nurse.get(f"/fhir/Patient/{pid}").status_code == 200
    deliver(world, config(mailbox))
    urgent = [m for _, m in mailbox.messages if m["Subject"].startswith("URGENT")]
    assert len(urgent) == 1  # at once, not at seven tomorrow
    assert all(not r.digest for r in outbox(world, pid) if r.urgent)


def test_the_frequency_is_chosen_over_the_api(world: World) -> None:
    pid = world.consented()
    api = world.citizen(pid)
    url = f"/fhir/Patient/{pid}/$notification-settings"
    sent = {"resourceType": "Parameters", "parameter": [
        {"name": "language", "valueCode": "nl"}, {"name": "email", "valueString": ADDRESS},
        {"name": "email-frequency", "valueCode": "daily"}]}
    r = api.post(url, sent)
    assert r.status_code == 200, r.text
    assert {"name": "email-frequency", "valueCode": "daily"} in r.json()["parameter"]
    bad = {"resourceType": "Parameters", "parameter": [
        {"name": "language", "valueCode": "nl"}, {"name": "email-frequency",
                                                  "valueCode": "hourly"}]}
    r = api.post(url, bad)
    assert r.status_code == 422 and "immediate or daily" in r.text
