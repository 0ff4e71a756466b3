"""The professional inbox and the répertoire in a real Chromium, in French, Dutch and
English (issue 18): what they show, that they are accessible (axe), screenshots."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import Live, Visitor
from tests.browser.test_portal_accessibility import serious

pytestmark = pytest.mark.browser
LANGUAGES = ("fr", "nl", "en")
ST = "https://dossier.brussels/fhir/CodeSystem/service-type"
HEADINGS = {"fr": ("Messages reçus", "Trouver un service"),
            "nl": ("Inbox", "Een dienst zoeken"), "en": ("Inbox", "Find a service")}


def add_service(live: Live) -> None:
    admin = live.app.state.dev_issuer.mint("Person/admin", ["admin"], None, 600)
    body = {"resourceType": "HealthcareService", "active": True, "name": "Médiation de dettes",
            "providedBy": {"reference": "Organization/cpas-saint-gilles"},
            "type": [{"coding": [{"system": ST, "code": "debt-mediation"}]}],
            "coverageArea": [{"reference": "Location/commune-saint-gilles"}],
            "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": c}]}
                              for c in ("fr", "es")],
            "availableTime": [{"daysOfWeek": ["mon"], "availableStartTime": "09:00:00",
                               "availableEndTime": "12:00:00"}],
            "telecom": [{"system": "phone", "value": "+32 2 600 00 00"}]}
    r = httpx.post(f"{live.base}/fhir/HealthcareService", json=body, headers={
        "Authorization": f"Bearer {admin}", "Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text


def test_the_inbox_in_every_language(visitors: Any, live: Live) -> None:
    janssens: Visitor = visitors("sw-janssens")
    problems: dict[str, list[str]] = {}
    janssens.go("/portal/pro/inbox?lang=en")
    page = janssens.page
    assert page.locator("h1").inner_text() == "Inbox"
    # Martin's grant reached her inbox; on the first visit it is new
    assert page.locator("tr.new").count() >= 1
    assert "gave you access" in page.locator("table.inbox").inner_text()
    assert page.locator("p.counts strong").inner_text() != "0"
    janssens.shot("coordination-inbox-first-en")
    for lang in LANGUAGES:
        janssens.go(f"/portal/pro/inbox?lang={lang}")
        assert page.locator("h1").inner_text() == HEADINGS[lang][0]
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("p.counts strong").inner_text() == "0"  # seen now
        assert page.locator("table.inbox tbody tr").count() >= 1
        found = serious(page)
        if found:
            problems[f"inbox [{lang}]"] = found
        janssens.shot(f"coordination-inbox-{lang}")
    assert problems == {}
    janssens.assert_clean()


def test_the_repertoire_for_professionals_and_citizens(visitors: Any, live: Live) -> None:
    add_service(live)
    problems: dict[str, list[str]] = {}
    for user in ("sw-janssens", "martin"):
        visitor: Visitor = visitors(user)
        for lang in LANGUAGES:
            visitor.go(f"/portal/services?lang={lang}")
            page = visitor.page
            assert page.locator("h1").inner_text() == HEADINGS[lang][1]
            page.select_option("#type", "debt-mediation")
            page.select_option("#place", "bassin-sud")
            page.select_option("#language", "es")
            page.locator("form.search button").click()
            page.wait_for_load_state()
            cards = page.locator("ul.services li")
            assert cards.count() == 1
            assert "Médiation de dettes" in cards.first.inner_text()
            found = serious(page)
            if found:
                problems[f"services {user} [{lang}]"] = found
            visitor.shot(f"coordination-services-{user}-{lang}")
        visitor.go("/portal/services?type=debt-mediation&place=bassin-nord&language=es")
        assert visitor.page.locator("ul.services li").count() == 0
        visitor.assert_clean()
    assert problems == {}


def _api(live: Live, who: str, role: str) -> Any:
    token = live.app.state.dev_issuer.mint(who, [role], None, 600)
    return httpx.Client(base_url=live.base, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})


def test_answering_from_the_inbox(visitors: Any, live: Live) -> None:
    """Simone's GP refers a démarche to the CPAS and plans her discharge; the CPAS social
    worker accepts the referral and confirms she is available, from her inbox."""
    with _api(live, "Patient/simone", "citizen") as simone, \
            _api(live, "Practitioner/dr-dupont", "practitioner") as gp:
        _answer_from_the_inbox(visitors, simone, gp)


def _answer_from_the_inbox(visitors: Any, simone: Any, gp: Any) -> None:
    from tests import factories as f

    for actor, cats in (("Practitioner/dr-dupont", ("identity", "demarches", "network",
                                                    "fragility")),
                        ("Organization/cpas-saint-gilles", ("identity", "demarches")),
                        ("Practitioner/sw-janssens", ("identity", "network"))):
        r = simone.post("/fhir/Consent", json=f.consent(
            "simone", actor, categories=cats, actions=("access", "collect")))
        assert r.status_code == 201, r.text
    task = f.task("Patient/simone", "cpas-support", "requested",
                  owner="Organization/cpas-saint-gilles")
    task["requester"] = {"reference": "Practitioner/dr-dupont"}
    assert gp.post("/fhir/Task", json=task).status_code == 201
    assert gp.post("/fhir/CareTeam", json=f.care_team("Patient/simone", [
        ("Practitioner/dr-dupont", "general-practitioner", True),
        ("Practitioner/sw-janssens", "social-worker", True)])).status_code == 201
    plan = gp.post("/fhir/Patient/simone/$discharge-plan", json={
        "resourceType": "Parameters",
        "parameter": [{"name": "at", "valueDateTime": "2027-02-03T11:00:00+01:00"}]})
    assert plan.status_code == 200, plan.text

    janssens: Visitor = visitors("sw-janssens", "fr-BE")
    janssens.go("/portal/pro/inbox?lang=fr")
    page = janssens.page
    janssens.shot("coordination-inbox-to-answer-fr")
    page.locator("button[name=answer][value=yes]").click()
    page.wait_for_load_state()
    assert "Votre réponse est envoyée." in page.locator("main").inner_text()
    page.locator("button[name=answer][value=accepted]").click()
    page.wait_for_load_state()
    assert "Votre réponse est envoyée." in page.locator("main").inner_text()
    janssens.shot("coordination-inbox-answered-fr")
    janssens.assert_clean()

    answers = gp.get("/fhir/Communication", params={
        "recipient": "Practitioner/dr-dupont", "_count": "50"}).json()
    codes = {e["resource"]["category"][0]["coding"][0]["code"] for e in answers["entry"]}
    assert {"discharge-confirmation", "referral-answer"} <= codes
