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


def test_grant_form_has_nothing_ticked_and_summarises_in_words(visitors: Any,
                                                              live: Live) -> None:
    martin: Visitor = visitors("martin")
    expected = {"fr": "Anne Dupont verra votre réseau et votre fragilité jusqu'au 1 mars 2027.",
                "nl": "Anne Dupont zal uw netwerk en uw kwetsbaarheid zien tot en met "
                      "1 maart 2027.",
                "en": "Anne Dupont will see your network and your fragility until "
                      "1 March 2027."}
    for lang in LANGUAGES:
        martin.go(f"/portal/me/access?lang={lang}")
        form = martin.page.locator("form[action$='/me/access/grant']")
        assert form.locator("input[type=checkbox]:checked").count() == 0
        check(martin, "grant-form", lang)
        martin.page.select_option("#actor", "Practitioner/dr-dupont")
        for box in ("#category-network", "#category-fragility", "#action-access"):
            martin.page.check(box)
        martin.page.fill("#end", "2027-03-01")
        form.locator("button[type=submit]").click()
        martin.page.wait_for_load_state()
        assert martin.page.locator("#grant-summary").inner_text() == expected[lang]
        check(martin, "grant-summary", lang)
    before = len(martin.page.locator("form[action$='/me/access/grant'] [name=category]")
                 .all())
    assert before == 2  # network and fragility only, carried to the confirmation
    martin.page.locator("form[action$='/me/access/grant'] button[type=submit]").click()
    martin.page.wait_for_load_state()
    card = martin.page.locator("li.card", has_text="Anne Dupont")
    assert card.count() == 1 and "1 March 2027" in card.inner_text()


def test_the_bare_address_leads_to_the_portal(browser: Any, live: Live) -> None:
    for lang, locale, heading in (("fr", "fr-BE", "Dossier"), ("nl", "nl-BE", "Dossier"),
                                  ("en", "en-GB", "Dossier")):
        context = browser.new_context(locale=locale)
        try:
            page = context.new_page()
            response = page.goto(live.base + "/")
            assert response is not None and response.status == 200
            assert page.url.rstrip("/").endswith("/portal")
            assert page.locator("html").get_attribute("lang") == lang
            assert heading in page.locator("main").inner_text()
            from tests.browser.conftest import SCREENSHOTS

            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"issue19-root-{lang}.png"))
            assert serious(page) == []
        finally:
            context.close()
