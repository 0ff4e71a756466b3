"""The main journeys of each role, in a real Chromium against a real server, signing in
through the dev issuer's own authorize page."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.browser.conftest import Live, Visitor

pytestmark = pytest.mark.browser
BRUSSELS = ZoneInfo("Europe/Brussels")


def submit(visitor: Visitor, form_action: str) -> None:
    visitor.page.locator(f"form[action$='{form_action}'] button[type=submit]").first.click()
    visitor.page.wait_for_load_state()


def next_friday() -> date:
    today = datetime.now(BRUSSELS).date()
    return today + timedelta(days=(4 - today.weekday()) % 7 or 7)


def test_session_cookie_is_secure_httponly_lax_over_loopback(visitors: object) -> None:
    martin: Visitor = visitors("martin")  # type: ignore[operator]
    cookies = {c["name"]: c for c in martin.context.cookies()}
    session = cookies["__Host-dossier-session"]
    assert session["secure"] is True  # Chromium keeps Secure cookies on http://127.0.0.1
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["path"] == "/"
    assert "__Host-dossier-login" not in cookies  # the sign-in state is gone once used
    assert martin.page.evaluate("document.cookie") == ""  # no script can read it


def test_citizen_grants_previews_revokes_and_the_professional_gets_404(
        visitors: object, live: Live) -> None:
    martin: Visitor = visitors("martin", "fr-BE")  # type: ignore[operator]
    page = martin.page
    martin.go("/portal/me/access")
    assert page.locator("html").get_attribute("lang") == "fr"
    page.select_option("#actor", "Practitioner/dr-dupont")
    for box in ("#category-identity", "#category-demarches", "#category-network",
                "#action-access"):  # nothing is ticked in advance
        page.check(box)
    submit(martin, "/me/access/grant")
    assert "Anne Dupont" in page.locator("#grant-summary").inner_text()  # a summary first
    page.locator("form[action$='/me/access/grant'] button[type=submit]").click()
    page.wait_for_load_state()
    assert "L'autorisation est enregistrée" in page.locator("[role=status]").inner_text()
    card = page.locator("li.card", has_text="Anne Dupont")
    assert card.count() == 1
    martin.shot("citizen-access-after-grant-fr")

    martin.go("/portal/me/preview")
    page.select_option("#actor", "Practitioner/dr-dupont")
    submit(martin, "/me/preview")
    result = page.locator("section.result")
    assert "Anne Dupont" in result.locator("h2").inner_text()
    assert "Aide du CPAS" in result.inner_text() or "CPAS" in result.inner_text()
    assert "Fragilité" not in result.inner_text()  # not granted: not shown
    martin.shot("citizen-preview-fr")

    dupont: Visitor = visitors("dr-dupont")  # type: ignore[operator]
    assert "Vandercammen" in dupont.page.locator("main").inner_text()
    response = dupont.go("/portal/pro/patients/martin")
    assert response.status == 200
    assert "Anne Dupont" not in dupont.page.locator("h1").inner_text()
    dupont.shot("professional-person-granted")

    martin.go("/portal/me/access")
    page.locator("li.card", has_text="Anne Dupont").locator(
        "form[action$='/revoke'] button").click()
    page.wait_for_load_state()
    assert page.locator("li.card", has_text="Anne Dupont").locator(
        "form[action$='/revoke']").count() == 0

    response = dupont.go("/portal/pro/patients/martin")
    assert response.status == 404
    assert "not available to you" in dupont.page.locator("h1").inner_text()
    dupont.shot("professional-after-revoke-404")
    dupont.go("/portal/pro")
    assert "Vandercammen" not in dupont.page.locator("main").inner_text()
    martin.assert_clean()
    dupont.assert_clean()


def test_professional_records_a_demarche_updates_network_and_checks_discharge(
        visitors: object, live: Live) -> None:
    janssens: Visitor = visitors("sw-janssens")  # type: ignore[operator]
    page = janssens.page
    page.locator("main a", has_text="Vandercammen").click()
    page.wait_for_url(re.compile(r".*/portal/pro/patients/martin$"))
    page.locator("a[href$='/demarche']").click()
    page.select_option("#type", "housing-application")
    page.select_option("#status", "requested")
    page.select_option("#business", "submitted")
    page.select_option("#owner", "Organization/cpas-saint-gilles")
    page.fill("#start", "2026-11-16")
    janssens.shot("professional-demarche-form")
    submit(janssens, "/demarche")
    assert page.url.endswith("/portal/pro/patients/martin")
    assert "The démarche is recorded." in page.locator("[role=status]").inner_text()
    timeline = page.locator("ol.timeline").inner_text()
    assert "housing" in timeline.lower()
    recorded = page.locator("li.demarche", has_text="Requested")
    assert recorded.count() == 1
    form = page.locator("form.status-form")  # one form under the timeline
    assert form.locator("#status").input_value() == ""  # "keep as it is"
    choice = form.locator("#demarche option", has_text="Requested").get_attribute("value")
    form.locator("#demarche").select_option(choice)
    form.locator("#status").select_option("in-progress")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator("li.demarche", has_text="Requested").count() == 0
    assert page.locator("li.demarche .status-in-progress").count() == 2

    page.locator("a[href$='/network']").click()
    page.select_option("#role", "family")
    page.select_option("#member", "new")
    page.fill("#given", "Luc")
    page.fill("#family", "Maes")
    page.check("#available")
    submit(janssens, "/network")
    assert "The network is updated." in page.locator("[role=status]").inner_text()
    assert "Luc Maes" in page.locator("ul.members").inner_text()
    assert page.locator("svg.netmap-svg g.available").count() >= 2
    janssens.shot("professional-person")

    page.locator("a[href$='/discharge']").click()
    page.fill("#at", f"{next_friday().isoformat()}T16:00")
    submit(janssens, "/discharge")
    result = page.locator("section.result")
    assert "Not ready yet." in result.inner_text()
    assert "Friday afternoon" in result.inner_text()
    assert "Anne Dupont" in result.inner_text()  # the GP, confirmed available
    janssens.shot("professional-discharge-result")
    # the new helper's family name must not be in any URL either
    assert all("maes" not in url.lower() for url in janssens.urls)
    janssens.assert_clean()


def test_auditor_filters_the_log_and_exports_csv(visitors: object, live: Live) -> None:
    live.seal_log()
    auditor: Visitor = visitors("auditor")  # type: ignore[operator]
    page = auditor.page
    auditor.go("/portal/audit")  # the lists are filled from the directory and the log
    page.select_option("#agent", "Practitioner/sw-janssens")
    page.select_option("#outcome", "0")
    page.locator("form.filters button[type=submit]").click()
    page.wait_for_url(re.compile(r".*agent=Practitioner%2Fsw-janssens.*"))
    rows = page.locator("table.log-table tbody tr")
    assert rows.count() > 0
    for i in range(rows.count()):
        assert "Els Janssens" in rows.nth(i).locator("td").nth(1).inner_text()
    auditor.shot("auditor-log-filtered")
    with page.expect_download() as download:
        page.locator("a[href*='export.csv']").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    records = list(csv.DictReader(io.StringIO(text)))
    assert records, "the CSV has the filtered rows"
    assert {r["agent"] for r in records} == {"Practitioner/sw-janssens"}
    assert {r["outcome"] for r in records} == {"0"}

    auditor.go("/portal/audit/integrity")
    page.locator("form[action$='/integrity'] button").click()
    page.wait_for_load_state()
    assert "The log is intact." in page.locator("main").inner_text()
    auditor.shot("auditor-integrity")
    auditor.assert_clean()


def test_break_glass_is_opened_then_reviewed_by_an_auditor(visitors: object,
                                                            live: Live) -> None:
    dupont: Visitor = visitors("dr-dupont")  # type: ignore[operator]
    page = dupont.page
    dupont.go("/portal/pro/break-glass")
    page.fill("#dossier", live.seeded.simone)
    page.fill("#reason", "Found unconscious at home; need the network to reach family")
    page.check("#understood")
    dupont.shot("professional-break-glass")
    submit(dupont, "/break-glass")
    assert page.url.endswith(f"/portal/pro/patients/{live.seeded.simone}")
    assert "60 minutes" in page.locator("[role=status]").inner_text()
    live.seal_log()

    auditor: Visitor = visitors("auditor")  # type: ignore[operator]
    auditor.go("/portal/audit/break-glass")
    waiting = auditor.page.locator("#waiting-title + ul li.card")
    assert waiting.count() >= 1
    auditor.shot("auditor-break-glass-queue")
    waiting.first.locator("button[value=approved]").click()
    auditor.page.wait_for_load_state()
    assert "written to the access log" in auditor.page.locator("[role=status]").inner_text()
    live.seal_log()
    auditor.go("/portal/audit/break-glass")
    assert "Justified" in auditor.page.locator("#done-title + ul").inner_text()
    dupont.assert_clean()
    auditor.assert_clean()
