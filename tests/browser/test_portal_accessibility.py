"""axe-core on every main page of each role, in French, Dutch and English: no serious or
critical violation. Screenshots of each page in each language; a phone-sized pass checks
that nothing overflows sideways."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Live, Visitor

pytestmark = pytest.mark.browser
LANGUAGES = ("fr", "nl", "en")
PHONE = {"width": 390, "height": 844}
CITIZEN_PAGES = {"dossier": "/portal/me", "access": "/portal/me/access",
                 "preview": "/portal/me/preview", "log": "/portal/me/log",
                 "messages": "/portal/me/notifications", "settings": "/portal/me/settings",
                 "people": "/portal/me/people", "enrol": "/portal/me/enrol"}
PRO_PAGES = {"people": "/portal/pro", "person": "/portal/pro/patients/martin",
             "demarche": "/portal/pro/patients/martin/demarche",
             "network": "/portal/pro/patients/martin/network",
             "fragility": "/portal/pro/patients/martin/fragility",
             "discharge": "/portal/pro/patients/martin/discharge",
             "break-glass": "/portal/pro/break-glass", "find": "/portal/pro/find",
             "not-available": "/portal/pro/patients/no-such-dossier"}
AUDITOR_PAGES = {"log": "/portal/audit", "integrity": "/portal/audit/integrity",
                 "break-glass": "/portal/audit/break-glass"}


def serious(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")]


def check(visitor: Visitor, name: str, lang: str, problems: dict[str, list[str]]) -> None:
    found = serious(visitor.page)
    if found:
        problems[f"{name} [{lang}]"] = found
    assert visitor.page.locator("html").get_attribute("lang") == lang
    visitor.shot(f"{name}-{lang}")


def visit_all(visitor: Visitor, role: str, pages: dict[str, str],
              problems: dict[str, list[str]]) -> None:
    for lang in LANGUAGES:
        for name, path in pages.items():
            visitor.go(f"{path}?lang={lang}")
            check(visitor, f"{role}-{name}", lang, problems)


def test_every_citizen_page_in_every_language(visitors: Any, live: Live, browser: Any) -> None:
    live.seal_log()
    live.deliver_notifications()
    martin: Visitor = visitors("martin")
    problems: dict[str, list[str]] = {}
    visit_all(martin, "citizen", CITIZEN_PAGES, problems)
    for lang in LANGUAGES:
        martin.go(f"/portal/me/access?lang={lang}")
        martin.page.locator("li.card a[href*='/portal/me/access/']").first.click()
        martin.page.wait_for_load_state()
        check(martin, "citizen-change-permission", lang, problems)
        martin.go("/portal/me/preview")
        martin.page.select_option("#actor", "Practitioner/sw-janssens")
        martin.page.locator("form[action$='/me/preview'] button").click()
        martin.page.wait_for_load_state()
        check(martin, "citizen-preview-result", lang, problems)
        martin.go("/portal/me/access")
        martin.page.locator("form[action$='/me/access/grant'] button").click()  # nobody chosen
        martin.page.wait_for_load_state()
        check(martin, "citizen-form-error", lang, problems)
    anonymous = browser.new_context(locale="en-GB")
    try:
        page = anonymous.new_page()
        for lang in LANGUAGES:
            page.goto(f"{live.base}/portal/?lang={lang}")
            found = serious(page)
            if found:
                problems[f"welcome [{lang}]"] = found
            page.screenshot(path=str(_shot(f"welcome-{lang}")), full_page=True)
    finally:
        anonymous.close()
    assert problems == {}
    martin.assert_clean()


def test_every_professional_page_in_every_language(visitors: Any, live: Live) -> None:
    janssens: Visitor = visitors("sw-janssens")
    problems: dict[str, list[str]] = {}
    visit_all(janssens, "professional", PRO_PAGES, problems)
    for lang in LANGUAGES:
        janssens.go(f"/portal/pro/patients/martin/discharge?lang={lang}")
        janssens.page.fill("#at", "2027-07-21T10:00")
        janssens.page.locator("form[action$='/discharge'] button").click()
        janssens.page.wait_for_load_state()
        check(janssens, "professional-discharge-result", lang, problems)
    assert problems == {}
    janssens.assert_clean()


def test_every_auditor_page_in_every_language(visitors: Any, live: Live) -> None:
    live.seal_log()
    auditor: Visitor = visitors("auditor")
    problems: dict[str, list[str]] = {}
    visit_all(auditor, "auditor", AUDITOR_PAGES, problems)
    for lang in LANGUAGES:
        auditor.go(f"/portal/audit/integrity?lang={lang}")
        auditor.page.locator("form[action$='/integrity'] button").click()
        auditor.page.wait_for_load_state()
        check(auditor, "auditor-integrity-result", lang, problems)
    assert problems == {}
    auditor.assert_clean()


@pytest.mark.parametrize(("user", "pages"), [
    ("martin", {"dossier": "/portal/me", "access": "/portal/me/access",
                "log": "/portal/me/log"}),
    ("sw-janssens", {"person": "/portal/pro/patients/martin",
                     "discharge": "/portal/pro/patients/martin/discharge"}),
    ("auditor", {"log": "/portal/audit"}),
])
def test_phone_sized_screen(visitors: Any, user: str, pages: dict[str, str]) -> None:
    visitor: Visitor = visitors(user, "fr-BE", PHONE)
    for name, path in pages.items():
        visitor.go(path)
        # the page itself never scrolls sideways (wide tables scroll in their own region)
        assert visitor.page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        visitor.shot(f"phone-{user}-{name}")
        targets = visitor.page.evaluate("""() => [...document.querySelectorAll(
            'button, a.button, nav a, select, input:not([type=hidden])')]
            .filter(e => e.offsetParent !== null)
            .map(e => Math.round(e.getBoundingClientRect().height))""")
        assert targets, name
        assert min(targets) >= 24, name  # touch targets (WCAG 2.5.8); buttons are 48 px


def _shot(name: str) -> Any:
    from tests.browser.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
