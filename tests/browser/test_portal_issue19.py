"""Issue 19, what people see: each change in a real Chromium, in French, Dutch and English,
with axe-core (no serious or critical violation) and a screenshot of each page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dossier.db.models import notification_outbox
from tests.browser.conftest import Live, Visitor
from tests.browser.test_portal_accessibility import serious

pytestmark = pytest.mark.browser
LANGUAGES = ("fr", "nl", "en")


def check(visitor: Visitor, name: str, lang: str) -> None:
    assert visitor.page.locator("html").get_attribute("lang") == lang
    visitor.shot(f"issue19-{name}-{lang}")
    assert serious(visitor.page) == [], f"{name} [{lang}]"


def outbox_rows(live: Live, patient: str) -> int:
    with Session(live.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(notification_outbox)
                                   .where(notification_outbox.c.patient_id == patient,
                                          notification_outbox.c.channel == "inbox"))
                   .scalar_one())


def test_my_people_does_not_notify_and_messages_are_grouped_in_words(
        visitors: Any, live: Live) -> None:
    janssens: Visitor = visitors("sw-janssens")
    before = outbox_rows(live, "martin")
    for _ in range(3):
        janssens.go("/portal/pro")
    assert janssens.page.locator("main a[href$='/patients/martin']").count() == 1
    assert outbox_rows(live, "martin") == before  # a list of names is not a consultation
    for _ in range(3):
        janssens.go("/portal/pro/patients/martin")
    assert outbox_rows(live, "martin") > before
    live.seal_log()
    live.deliver_notifications()
    martin: Visitor = visitors("martin")
    for lang in LANGUAGES:
        martin.go(f"/portal/me/notifications?lang={lang}")
        messages = martin.page.locator("li.message", has_text="Els Janssens")
        assert messages.count() == 1  # one actor, one day: one message
        assert messages.locator(".consultations li").count() >= 3  # each look listed
        text = martin.page.locator("main").inner_text()
        assert "/fhir/AuditEvent" not in text and "/audit/proof" not in text
        assert "CPAS de Saint-Gilles" in messages.inner_text()
        check(martin, "messages", lang)
    martin.go("/portal/me/notifications?lang=nl")
    assert "bekeken" in martin.page.locator("li.message").first.inner_text()
    martin.go("/portal/me/notifications?lang=fr")
    assert "a consulté" in martin.page.locator("li.message").first.inner_text()
