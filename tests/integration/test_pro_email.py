"""A professional's inbox notices by e-mail (issue 18 item 4), over HTTP and a real SMTP
server (aiosmtpd), on SQLite and PostgreSQL: a message to a professional who set an
address sends one e-mail there, with no personal data; none without one, none once it is
cleared; a bad address is refused with a clear form error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dossier.db.models import notification_outbox, practitioner_email
from dossier.notify.worker import deliver_due
from tests import factories as f
from tests.browser.seed import MARTIN_FAMILY, MARTIN_NISS
from tests.integration.test_notifications import Mailbox, body, config
from tests.integration.test_portal_security import BASE, Site, csrf_of
from tests.integration.test_portal_security import site as site  # the fixture

ORG_MM = "Organization/mm-midi"
ADDRESS = "anne.dupont@mm-midi.example.be"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.up()
    yield box
    box.down()


def set_address(client: TestClient, email: str, language: str = "fr", **extra: str) -> Any:
    token = csrf_of(client.get("/portal/pro/inbox").text)
    return client.post("/portal/pro/notices", data={"csrf": token, "email": email, **extra},
                       headers={"Accept-Language": language})


def writer(site: Site, fhir_user: str, role: str) -> TestClient:
    client = TestClient(site.app, base_url=BASE)
    client.headers.update(site.token(fhir_user, role))
    return client


def refer_to_the_medical_house(site: Site) -> None:
    """Martin lets the medical house see his démarches; his social worker refers one to
    it: its members (Dr Dupont) get a "referral" message."""
    martin = writer(site, f"Patient/{site.seeded.martin}", "citizen")
    r = martin.post("/fhir/Consent", json=f.consent(site.seeded.martin, ORG_MM,
                                                    categories=("identity", "demarches")))
    assert r.status_code == 201, r.text
    sw = writer(site, site.seeded.sw, "practitioner")
    r = sw.post("/fhir/Task", json=f.task(f"Patient/{site.seeded.martin}", "debt-mediation",
                                          "requested", owner=ORG_MM))
    assert r.status_code == 201, r.text


def deliver(site: Site, mailbox: Mailbox) -> None:
    runtime = site.app.state.runtime
    for _ in range(3):
        deliver_due(runtime, datetime.now(UTC), config(mailbox), rand=lambda: 0.5)


def pro_rows(site: Site) -> list[Any]:
    with Session(site.app.state.runtime.engine) as session:
        return list(session.execute(select(notification_outbox).where(
            notification_outbox.c.channel == "pro-email")).all())


def test_a_referral_sends_one_email_without_personal_data(site: Site,
                                                          mailbox: Mailbox) -> None:
    gp = site.sign_in("dr-dupont")
    r = set_address(gp, ADDRESS)
    assert r.status_code == 303, r.text
    assert ADDRESS in gp.get("/portal/pro/inbox").text
    deliver(site, mailbox)
    mailbox.messages.clear()
    refer_to_the_medical_house(site)
    assert [row.agent for row in pro_rows(site)] == [site.seeded.gp]
    deliver(site, mailbox)
    assert len(mailbox.messages) == 1
    to, message = mailbox.messages[0]
    assert to == [ADDRESS]
    text = body(message)
    assert "Vous avez un nouveau message dans votre boîte Dossier." in text
    assert "http://testserver/portal/pro/inbox" in text
    whole = message.as_string()
    for secret in (MARTIN_FAMILY, "Martin", MARTIN_NISS, site.seeded.martin,
                   "debt-mediation", "referral"):
        assert secret not in whole
    assert [row.status for row in pro_rows(site)] == ["sent"]
    deliver(site, mailbox)  # exactly once
    assert len(mailbox.messages) == 1


def test_the_email_speaks_the_portal_language_it_was_set_in(site: Site,
                                                            mailbox: Mailbox) -> None:
    gp = site.sign_in("dr-dupont")
    assert set_address(gp, ADDRESS, language="nl").status_code == 303
    refer_to_the_medical_house(site)
    deliver(site, mailbox)
    messages = [m for to, m in mailbox.messages if to == [ADDRESS]]
    assert len(messages) == 1
    assert messages[0]["Content-Language"] == "nl"
    assert "U hebt een nieuw bericht in uw Dossier-inbox." in body(messages[0])


def test_without_an_address_no_email(site: Site, mailbox: Mailbox) -> None:
    refer_to_the_medical_house(site)
    assert pro_rows(site) == []
    deliver(site, mailbox)
    assert mailbox.messages == []


def test_clearing_the_address_stops_the_emails(site: Site, mailbox: Mailbox) -> None:
    gp = site.sign_in("dr-dupont")
    assert set_address(gp, ADDRESS).status_code == 303
    assert set_address(gp, ADDRESS, clear="1").status_code == 303
    assert ADDRESS not in gp.get("/portal/pro/inbox").text
    refer_to_the_medical_house(site)
    deliver(site, mailbox)
    assert mailbox.messages == []
    # cleared after the message was queued: still nothing is sent
    assert set_address(gp, ADDRESS).status_code == 303
    sw = writer(site, site.seeded.sw, "practitioner")
    r = sw.post("/fhir/Task", json=f.task(f"Patient/{site.seeded.martin}", "housing-application",
                                          "requested", owner=ORG_MM))
    assert r.status_code == 201, r.text
    assert len([row for row in pro_rows(site) if row.status == "pending"]) == 1
    assert set_address(gp, "").status_code == 303
    deliver(site, mailbox)
    assert mailbox.messages == []


@pytest.mark.parametrize("bad", ["not-an-address", "a@b", "x" * 250 + "@example.be",
                                 "a b@example.be", "<a@example.be>"])
def test_a_bad_address_is_refused(site: Site, bad: str) -> None:
    gp = site.sign_in("dr-dupont")
    r = set_address(gp, bad)
    assert r.status_code == 400
    assert "not valid" in r.text or "pas valide" in r.text
    with Session(site.app.state.runtime.engine) as session:
        assert session.execute(select(practitioner_email)).all() == []


def test_setting_the_address_needs_the_csrf_token(site: Site) -> None:
    gp = site.sign_in("dr-dupont")
    r = gp.post("/portal/pro/notices", data={"email": ADDRESS})
    assert r.status_code == 403
    with Session(site.app.state.runtime.engine) as session:
        assert session.execute(select(practitioner_email)).all() == []
