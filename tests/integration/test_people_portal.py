"""The portal pages of SPEC §13 (issue 15), through the real sign-in flow: a citizen names
a mandataire (summary before confirming, nothing pre-selected), the mandataire switches
to her dossier; a professional finds a person by NISS, asks for access and records an
assisted consent; the person answers and withdraws in one step."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests import factories as f
from tests.integration.test_portal_security import BASE, Site, csrf_of
from tests.integration.test_portal_security import site as site  # the fixture

SON = f.niss("700301", 55)


def form_post(client: TestClient, page: str, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={**data, "csrf": csrf_of(client.get(page).text)})


def test_citizen_names_a_mandataire_who_switches_to_her_dossier(site: Site) -> None:
    martin = site.sign_in("martin")
    page = martin.get("/portal/me/people")
    assert page.status_code == 200
    assert 'type="radio"' in page.text and " checked" not in page.text  # nothing pre-selected
    step = form_post(martin, "/portal/me/people", "/portal/me/people/name",
                     {"given": "Pieter", "family": "Lemaire", "niss": SON, "mandate": "see"})
    assert step.status_code == 200 and "Pieter Lemaire" in step.text  # summary in words
    fields = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', step.text))
    done = martin.post("/portal/me/people/name/confirm", data=fields)
    assert done.status_code == 303, done.text
    assert "Pieter Lemaire" in martin.get("/portal/me/people").text
    # the son signs in with his NISS (no dossier of his own) and sees her dossier
    token = site.app.state.dev_issuer.mint(None, ["citizen"], None, 600, niss=SON)
    api = TestClient(site.app, base_url=BASE)
    listed = api.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"}).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == [site.seeded.martin]


def test_professional_finds_asks_and_records_assisted_consent(site: Site) -> None:
    sw = site.sign_in("sw-janssens")
    niss = f.niss("810203", 77)
    found = form_post(sw, "/portal/pro/find", "/portal/pro/find",
                      {"niss": niss, "given": "Marc", "family": "Peeters"})
    assert found.status_code == 200, found.text
    dossier = re.search(r'id="dossier-id">([^<]+)<', found.text).group(1)  # type: ignore
    assert " checked" not in found.text
    again = form_post(sw, "/portal/pro/find", "/portal/pro/find", {"niss": niss})
    assert dossier in again.text  # one dossier per person
    asked = sw.post(f"/portal/pro/request/{dossier}",
                    data={"csrf": csrf_of(found.text), "category": ["identity"]})
    assert asked.status_code == 303
    assert dossier in sw.get("/portal/pro/find").text  # their open request
    summary = sw.post(f"/portal/pro/assisted/{dossier}", data={
        "csrf": csrf_of(found.text), "category": ["identity", "network"], "present": "yes"})
    assert summary.status_code == 200 and 'id="summary"' in summary.text
    fields = re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', summary.text)
    data: dict[str, Any] = {}
    for k, v in fields:
        data.setdefault(k, []).append(v)
    recorded = sw.post(f"/portal/pro/assisted/{dossier}", data=data)
    assert recorded.status_code == 303, recorded.text
    assert sw.get(f"/portal/pro/patients/{dossier}").status_code == 200


def test_printable_enrolment_page_with_qr(site: Site) -> None:
    sw = site.sign_in("sw-janssens")
    page = form_post(sw, "/portal/pro/find", "/portal/pro/pseudonymous", {"given": "R."})
    assert page.status_code == 200, page.text
    code = re.search(r'id="enrolment-code"><strong>([A-Z0-9-]+)<', page.text).group(1)  # type: ignore
    assert "<svg" in page.text and f"/portal/me/enrol?code={code}" in page.text
    martin = site.sign_in("martin")
    wrong = form_post(martin, "/portal/me/enrol", "/portal/me/enrol", {"code": "AAAA"})
    assert wrong.status_code == 404 and "error-summary" in wrong.text


def test_assisted_consent_is_in_the_auditors_review_queue(site: Site) -> None:
    sw = site.sign_in("sw-janssens")
    found = form_post(sw, "/portal/pro/find", "/portal/pro/find", {"niss": f.niss("820304", 5)})
    dossier = re.search(r'id="dossier-id">([^<]+)<', found.text).group(1)  # type: ignore
    confirmed = sw.post(f"/portal/pro/assisted/{dossier}", data={
        "csrf": csrf_of(found.text), "category": ["identity"], "present": "yes",
        "confirmed": "yes"})
    assert confirmed.status_code == 303
    site.app.state.runtime.integrate_audit()
    auditor = site.sign_in("auditor")
    queue = auditor.get("/portal/audit/break-glass?lang=en")
    assert queue.status_code == 200
    card = re.search(r'<li class="card emergency">.*?</li>', queue.text, re.S)
    assert card and "Assisted consent" in card.group(0) and dossier in card.group(0)
