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


def api(live: Live, who: str, roles: list[str]) -> Any:
    import httpx

    token = live.app.state.dev_issuer.mint(who, roles, None, 600)
    return httpx.Client(base_url=live.base, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})


def test_professional_sees_own_permission_one_status_form_and_contact_data(
        visitors: Any, live: Live) -> None:
    from tests import factories as f

    with api(live, "Person/admin", ["admin"]) as admin:
        org = admin.get("/fhir/Organization/cpas-saint-gilles").json()
        org["telecom"] = [{"system": "phone", "value": "+32 2 600 54 11"}]
        org["address"] = [{"line": ["Rue Fernand Bernier 40"], "postalCode": "1060",
                           "city": "Saint-Gilles"}]
        assert admin.put("/fhir/Organization/cpas-saint-gilles", json=org).status_code == 200
        gp = admin.get("/fhir/Practitioner/dr-dupont").json()
        gp["telecom"] = [{"system": "phone", "value": "+32 2 538 11 11"}]
        assert admin.put("/fhir/Practitioner/dr-dupont", json=gp).status_code == 200
    with api(live, "Patient/martin", ["citizen"]) as martin:  # no fragility for the GP
        assert martin.post("/fhir/Consent", json=f.consent(
            "martin", "Practitioner/dr-dupont", categories=("identity", "network"),
            actions=("access",))).status_code == 201
    dupont: Visitor = visitors("dr-dupont")
    janssens: Visitor = visitors("sw-janssens")
    for lang in LANGUAGES:
        dupont.go(f"/portal/pro/patients/martin?lang={lang}")
        section = dupont.page.locator("section[aria-labelledby=fragility-title]")
        english = dupont.page.evaluate("document.documentElement.lang") == "en"
        assert section.locator("p.empty").count() == 1
        if english:
            assert "Your access does not include fragility." in section.inner_text()
        members = dupont.page.locator("ul.members").inner_text()
        assert "+32 2 600 54 11" in members and "1060 Saint-Gilles" in members
        assert "+32 2 538 11 11" in members
        check(dupont, "pro-no-fragility", lang)
        dupont.go(f"/portal/pro/patients/martin/discharge?lang={lang}")
        dupont.page.fill("#at", "2027-07-21T10:00")
        dupont.page.locator("form[action$='/discharge'] button").click()
        dupont.page.wait_for_load_state()
        result = dupont.page.locator("section.result").inner_text()
        assert "assess" not in result.lower() and "évaluez" not in result
        assert "beoordeel" not in result
        assert dupont.page.locator("section.result p.notice").count() == 1
        check(dupont, "pro-discharge-no-fragility", lang)
        janssens.go(f"/portal/pro/patients/martin?lang={lang}")
        forms = janssens.page.locator("form.status-form")
        assert forms.count() == 1  # one form, not one per démarche
        assert forms.locator("#status").input_value() == ""  # starts on "keep as it is"
        assert janssens.page.locator("section[aria-labelledby=fragility-title] p.level") \
            .count() == 1  # she may see it: the level is shown
        check(janssens, "pro-person", lang)


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
    card = martin.page.locator("li.card", has_text="Anne Dupont").filter(
        has_text="1 March 2027")
    assert card.count() == 1 and "Fragility" in card.inner_text()
    assert "Procedures" not in card.inner_text()  # only what was ticked


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


def test_auditor_reads_words_reviews_every_emergency_and_reads_the_reason(
        visitors: Any, live: Live) -> None:
    import csv
    import io
    from pathlib import Path

    from dossier.db.models import audit_records

    with api(live, "Practitioner/dr-dupont", ["practitioner"]) as dupont:
        r = dupont.post("/fhir/Patient/simone/$break-glass", json={
            "resourceType": "Parameters",
            "parameter": [{"name": "reason", "valueString": "Found unconscious at home"}]})
        assert r.status_code == 200, r.text
        assert dupont.get("/fhir/Patient/simone").status_code == 200
    with api(live, "Patient/martin", ["citizen"]) as martin:  # a citizen's own visit
        assert martin.get("/fhir/Patient/martin").status_code == 200
    live.seal_log()
    auditor: Visitor = visitors("auditor")
    words = {"fr": ("Lecture", "La personne elle-même"), "nl": ("Lezen", "De persoon zelf"),
             "en": ("Read", "The person themself")}
    for lang in LANGUAGES:
        auditor.go(f"/portal/audit?lang={lang}")
        table = auditor.page.locator("table.log-table").inner_text()
        assert "\tE\t" not in table and "TREAT" not in table
        assert words[lang][1] in table  # never "You"
        assert auditor.page.locator("#agent option[value='Practitioner/dr-dupont']").count() == 1
        assert auditor.page.locator("#patient option[value='simone']").count() == 1
        check(auditor, "auditor-log", lang)
        auditor.go(f"/portal/audit/break-glass?lang={lang}")
        count = auditor.page.locator("#unreviewed").inner_text()
        assert count[:1].isdigit() and int(count.split()[0]) >= 2  # both records
        check(auditor, "auditor-queue", lang)
        auditor.page.locator("#waiting-title + ul li.card a[href*='/audit/break-glass/']") \
            .first.click()
        auditor.page.wait_for_load_state()
        assert auditor.page.locator("#reason").inner_text() == "Found unconscious at home"
        check(auditor, "auditor-reason", lang)
    with Session(live.runtime.engine) as session:  # each reading is in the log
        readings = [r for r in session.execute(select(audit_records.c.record)).scalars()
                    if any(e.get("detail") == "break-glass-reason" for e in r["events"])]
    assert len(readings) == 3 and all(r["patient"] == "Patient/simone" for r in readings)
    auditor.go("/portal/audit?lang=fr")
    with auditor.page.expect_download() as download:
        auditor.page.locator("a[href*='export.csv']").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8"))))
    assert {"Qui", "Action", "Quoi", "Finalité"} <= set(rows[0])
    assert "La personne elle-même" in {r["Qui"] for r in rows}
    assert not {r["Action"] for r in rows} & {"E", "R", "C", "U", "D"}
    auditor.go("/portal/audit/break-glass?lang=en")
    before = int(auditor.page.locator("#unreviewed").inner_text().split()[0])
    auditor.page.locator("#waiting-title + ul li.card button[value=approved]").first.click()
    auditor.page.wait_for_load_state()
    auditor.go("/portal/audit/break-glass?lang=en")
    assert int(auditor.page.locator("#unreviewed").inner_text().split()[0]) == before - 1


LABEL_BOXES = """(svg) => [...svg.querySelectorAll('text.label, text.role')]
    .map(t => t.getBoundingClientRect())
    .filter(r => r.width > 0)
    .map(r => [r.left, r.top, r.right, r.bottom, r.height])"""


def no_overlap(boxes: list[list[float]]) -> bool:
    return not any(a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_network_map_labels_do_not_collide_centred_and_readable_on_phones(
        visitors: Any, live: Live) -> None:
    from tests import factories as f

    with api(live, "Practitioner/sw-janssens", ["practitioner"]) as sw:
        for family, given, role in (("Wouters", "Jan", "family"),
                                    ("Vandenbroucke-Lemaire", "Marie-Christine", "family"),
                                    ("Thuisverpleegkundige", "Eva", "neighbour"),
                                    ("De Smet", "Lotte", "volunteer")):
            assert sw.post("/fhir/RelatedPerson", json=f.related_person(
                "martin", family, given, role)).status_code == 201
    martin: Visitor = visitors("martin")
    for lang in LANGUAGES:
        martin.go(f"/portal/me?lang={lang}")
        svg = martin.page.locator("svg.netmap-wide")
        boxes = svg.evaluate(LABEL_BOXES)
        assert no_overlap(boxes)
        frame = svg.bounding_box()
        assert frame and all(b[0] >= frame["x"] - 1 and b[2] <= frame["x"] + frame["width"] + 1
                             for b in boxes)
        figure = martin.page.locator("figure.netmap").bounding_box()
        drawn = svg.bounding_box()
        assert figure and drawn
        centre = figure["x"] + figure["width"] / 2
        assert abs(drawn["x"] + drawn["width"] / 2 - centre) < 4  # centred in its card
        labels = svg.locator("text.label").all_text_contents()
        assert any(t.endswith("…") for t in labels)  # a long name is cut visibly
        assert martin.page.locator("ul.members").inner_text().count("Vandenbroucke") == 1
        check(martin, "network-map", lang)
    phone: Visitor = visitors("martin", "fr-BE", {"width": 390, "height": 844})
    for lang in LANGUAGES:
        phone.go(f"/portal/me?lang={lang}")
        assert phone.page.locator("svg.netmap-wide").is_hidden()
        svg = phone.page.locator("svg.netmap-narrow")
        boxes = svg.evaluate(LABEL_BOXES)
        assert boxes and no_overlap(boxes)
        frame = svg.bounding_box()
        assert frame and all(b[0] >= frame["x"] - 1 and b[2] <= frame["x"] + frame["width"] + 1
                             for b in boxes)  # nothing cut at the picture's edge
        assert min(b[4] for b in boxes) >= 12  # letters people can read, not ~7 px
        assert phone.page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth + 1")
        check(phone, "network-map-phone", lang)
        from tests.browser.conftest import SCREENSHOTS

        svg.screenshot(path=str(SCREENSHOTS / f"issue19-network-map-phone-only-{lang}.png"))


def test_spanish_citizen_pages_are_complete(visitors: Any, live: Live) -> None:
    from tests.browser.test_catalogue import citizen_messages

    del citizen_messages  # the catalogue test checks every text; here, the pages
    live.seal_log()
    live.deliver_notifications()
    martin: Visitor = visitors("martin", "es-ES")  # Accept-Language: es
    pages = {"dossier": "/portal/me", "access": "/portal/me/access",
             "preview": "/portal/me/preview", "log": "/portal/me/log",
             "messages": "/portal/me/notifications", "settings": "/portal/me/settings"}
    english = ("Who can see what", "My dossier", "Messages", "Sign out", "Save",
               "looked at", "Completed", "Unemployment benefits", "Neighbour")
    for name, path in pages.items():
        martin.go(path)
        assert martin.page.locator("html").get_attribute("lang") == "es"
        text = martin.page.locator("body").inner_text()
        assert not [w for w in english if w in text], name
        check(martin, f"citizen-{name}", "es")
    martin.go("/portal/me/settings")
    assert martin.page.locator("#language-es").count() == 1  # messages in Spanish too
    janssens: Visitor = visitors("sw-janssens", "es-ES")  # a professional reading Spanish
    janssens.go("/portal/pro/patients/martin/discharge")
    janssens.page.fill("#at", "2027-07-21T10:00")
    janssens.page.locator("form[action$='/discharge'] button").click()
    janssens.page.wait_for_load_state()
    assert janssens.page.locator("section.result").count() == 1


DEMO_PRACTITIONERS = ("dr-dupont", "sw-janssens", "sw-lambert", "psy-claes", "dr-maes",
                      "nurse-peeters", "coord-haddad", "sw-garcia")


def test_sign_in_page_speaks_the_portals_language_and_every_demo_practitioner_signs_in(
        browser: Any, visitors: Any, live: Live) -> None:
    import re

    from tests.browser.conftest import HOMES, SCREENSHOTS

    titles = {"fr": "Se connecter à Dossier", "nl": "Aanmelden bij Dossier",
              "en": "Sign in to Dossier", "es": "Identificarse en Dossier"}
    for lang, title in titles.items():
        context = browser.new_context(locale="en-GB")
        try:
            page = context.new_page()
            page.goto(f"{live.base}/portal/?lang={lang}")
            page.locator("main a.button").first.click()
            page.wait_for_url(re.compile(r".*/auth/authorize\?.*"))
            assert page.locator("html").get_attribute("lang") == lang
            assert page.locator("h1").inner_text() == title
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background != "rgba(0, 0, 0, 0)"  # styled like the portal
            page.screenshot(path=str(SCREENSHOTS / f"issue19-sign-in-{lang}.png"),
                            full_page=True)
            assert serious(page) == []
        finally:
            context.close()
    for pid in DEMO_PRACTITIONERS:
        HOMES.setdefault(pid, "/portal/pro")
        visitor: Visitor = visitors(pid)
        assert visitor.page.url.endswith("/portal/pro")
        visitor.context.close()


def test_the_citizen_chooses_a_daily_digest_in_settings(visitors: Any, live: Live) -> None:
    martin: Visitor = visitors("martin")
    for lang in LANGUAGES:
        martin.go(f"/portal/me/settings?lang={lang}")
        assert martin.page.locator("#frequency-immediate").is_checked()  # the default
        check(martin, "settings", lang)
    martin.go("/portal/me/settings?lang=en")
    martin.page.fill("#email", "martin@example.org")
    martin.page.check("#frequency-daily")
    martin.page.locator("form[action$='/me/settings'] button[type=submit]").first.click()
    martin.page.wait_for_load_state()
    martin.go("/portal/me/settings")
    assert martin.page.locator("#frequency-daily").is_checked()
    with Session(live.runtime.engine) as session:
        from dossier.db.models import notification_settings

        chosen = session.execute(select(notification_settings.c.email_digest).where(
            notification_settings.c.patient_id == "martin")).scalar_one()
    assert chosen is True
