"""People reach their dossier (SPEC §13), in a real Chromium against a real server:
Simone names her son Piet her mandataire, Piet signs in with his own national number and
grants her home nurses; Martin's assisted consent is recorded at the desk, and he
withdraws it later from his own login."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Live, Visitor
from tests.browser.seed import GP

pytestmark = pytest.mark.browser
PIET = "70030105548"  # the demo issuer's Piet (auth/devissuer.py)
NURSES = "Group/profession-persnurse"


def api(live: Live, fhir_user: str, role: str) -> httpx.Client:
    token = live.app.state.dev_issuer.mint(fhir_user, [role], None, 600)
    return httpx.Client(base_url=live.base, headers={"Authorization": f"Bearer {token}"},
                        timeout=30)


def click(visitor: Visitor, selector: str) -> None:
    visitor.page.locator(selector).first.click()
    visitor.page.wait_for_load_state()


def test_simone_names_piet_who_grants_her_home_nurses(visitors: Any, live: Live) -> None:
    simone: Visitor = visitors("simone")
    page = simone.page
    simone.go("/portal/me/people")
    assert page.locator("input[name=mandate]:checked").count() == 0  # nothing pre-selected
    page.fill("#given", "Piet")
    page.fill("#family", "Wouters")
    page.fill("#niss", PIET)
    page.check("#mandate-decide")
    click(simone, "form[action$='/me/people/name'] button[type=submit]")
    assert "Piet Wouters" in page.locator("#summary").inner_text()  # in words, first
    click(simone, "form[action$='/me/people/name/confirm'] button[type=submit]")
    assert page.locator("li.card", has_text="Piet Wouters").count() == 1
    simone.shot("people-simone-names-piet")

    piet: Visitor = visitors("piet")  # no dossier of his own: lands on this page
    click(piet, f"button[name=patient][value={live.seeded.simone}]")
    piet.go("/portal/me/access")
    piet.page.select_option("#actor", NURSES)
    piet.page.check("#category-network")
    piet.page.check("#category-fragility")
    piet.page.check("#action-access")
    click(piet, "form[action$='/me/access/grant'] button[type=submit]")
    assert piet.page.locator("#grant-summary").count() == 1  # a summary in words first
    click(piet, "form[action$='/me/access/grant'] button[type=submit]")
    piet.shot("people-piet-grants-nurses")
    with api(live, f"Patient/{live.seeded.simone}", "citizen") as her:
        consents = her.get("/fhir/Consent", params={"patient": f"Patient/{live.seeded.simone}"})
        actors = [a["reference"]["reference"] for e in consents.json().get("entry", [])
                  for a in e["resource"]["provision"].get("actor", [])]
        assert NURSES in actors
    live.seal_log()
    with api(live, "Person/auditor", "auditor") as auditor:
        log = auditor.get("/fhir/AuditEvent", params={
            "patient": f"Patient/{live.seeded.simone}", "_count": "100"}).json()
    agents = {a.get("who", {}).get("reference") for e in log.get("entry", [])
              for a in e["resource"].get("agent", [])}
    assert any(str(who).startswith("RelatedPerson/") for who in agents)  # both people
    piet.assert_clean()
    simone.assert_clean()


def test_martins_assisted_consent_at_the_desk_withdrawn_from_his_login(
        visitors: Any, live: Live) -> None:
    from tests.browser.seed import MARTIN_NISS

    gp: Visitor = visitors("dr-dupont")
    page = gp.page
    gp.go("/portal/pro/find")
    page.fill("#niss", MARTIN_NISS)
    click(gp, "form[action$='/pro/find'] button[type=submit]")
    assert page.locator("#dossier-id").inner_text() == live.seeded.martin
    assert page.locator("input[type=checkbox]:checked").count() == 0
    page.check("#assisted-identity")
    page.check("#assisted-network")
    page.check("#present")
    click(gp, f"form[action$='/pro/assisted/{live.seeded.martin}'] button[type=submit]")
    assert page.locator("#summary").count() == 1
    click(gp, f"form[action$='/pro/assisted/{live.seeded.martin}'] button[type=submit]")
    gp.shot("people-assisted-consent-recorded")
    with api(live, GP, "practitioner") as doctor:
        assert doctor.get(f"/fhir/Patient/{live.seeded.martin}").status_code == 200

    martin: Visitor = visitors("martin")
    martin.go("/portal/me/people")
    card = martin.page.locator(".card.emergency", has_text=re.compile("Practitioner/"))
    assert card.count() == 1
    click(martin, "form[action*='/me/people/withdraw/'] button[type=submit]")  # one step
    martin.shot("people-martin-withdrew")
    with api(live, GP, "practitioner") as doctor:
        assert doctor.get(f"/fhir/Patient/{live.seeded.martin}").status_code == 404
    gp.assert_clean()
    martin.assert_clean()
