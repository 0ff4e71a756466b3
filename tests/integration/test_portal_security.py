"""The portal's security properties over HTTP (TestClient, no browser), on SQLite and
PostgreSQL: CSRF on every POST, the session cookie, CSP and headers, no personal data in
URLs, and consent and audit applying exactly as for FHIR clients."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from dossier.app import create_app
from dossier.portal.auditor import csv_cell
from dossier.settings import load_settings
from tests.browser.seed import GP, PASSWORD, Seeded, seed

BASE = "https://testserver"
FHIR = "application/fhir+json"
SESSION = "__Host-dossier-session"
CITIZEN_PAGES = ["/portal/me", "/portal/me/access", "/portal/me/preview", "/portal/me/log",
                 "/portal/me/notifications", "/portal/me/settings", "/portal/me/people"]
PRO_PAGES = ["/portal/pro", "/portal/pro/patients/martin",
             "/portal/pro/patients/martin/demarche", "/portal/pro/patients/martin/network",
             "/portal/pro/patients/martin/fragility", "/portal/pro/patients/martin/discharge",
             "/portal/pro/break-glass", "/portal/pro/find"]
AUDITOR_PAGES = ["/portal/audit", "/portal/audit/integrity", "/portal/audit/break-glass",
                 "/portal/audit/export.csv"]
HOME = {"martin": "/portal/me", "simone": "/portal/me", "dr-dupont": "/portal/pro",
        "sw-janssens": "/portal/pro", "auditor": "/portal/audit"}


@dataclass
class Site:
    app: Any
    seeded: Seeded
    data_dir: Path

    def sign_in(self, user: str) -> TestClient:
        """Through the real flow: /portal/login → the issuer's authorize form → callback."""
        client = TestClient(self.app, base_url=BASE, follow_redirects=False)
        start = client.get("/portal/login")
        assert start.status_code == 303
        authorize = urlsplit(start.headers["location"])
        assert authorize.path == "/auth/authorize"
        params = dict(parse_qsl(authorize.query))
        assert params["code_challenge_method"] == "S256"
        assert client.get(f"{authorize.path}?{authorize.query}").status_code == 200
        chosen = client.post("/auth/authorize", data={**params, "username": user,
                                                       "password": PASSWORD})
        back = urlsplit(chosen.headers["location"])
        assert back.path == "/portal/callback"
        landed = client.get(f"{back.path}?{back.query}")
        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == HOME[user]
        return client

    def token(self, fhir_user: str, role: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.app.state.dev_issuer.mint(
            fhir_user, [role], None, 600)}

    def consents(self, patient: str = "martin") -> list[dict[str, Any]]:
        r = TestClient(self.app, base_url=BASE).get(
            f"/fhir/Consent?patient=Patient/{patient}&_count=100",
            headers=self.token(f"Patient/{patient}", "citizen"))
        assert r.status_code == 200
        return [e["resource"] for e in r.json().get("entry", [])]


@pytest.fixture
def site(data_dir: Path, database_url: str | None) -> Iterator[Site]:
    extra = {"database_url": database_url} if database_url else {}
    settings = load_settings(data_dir=data_dir, base_url=BASE, audit_sequencer_seconds=0,
                             notify_worker_seconds=0, maintenance_seconds=0, **extra)
    app = create_app(settings)
    try:
        with TestClient(app, base_url=BASE) as client:
            yield Site(app, seed(client, app), data_dir)
    finally:
        app.state.runtime.engine.dispose()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "every signed-in page carries the CSRF token"
    return found.group(1)


def grant(site: Site, client: TestClient, actor: str) -> None:
    token = csrf_of(client.get("/portal/me/access").text)
    r = client.post("/portal/me/access/grant", data={
        "csrf": token, "actor": actor, "category": ["identity", "demarches", "network"],
        "action": ["access"], "confirm": "yes"})
    assert r.status_code == 303, r.text


# ------------------------------------------------------------------ CSRF
def post_routes() -> list[str]:
    """Every POST route the portal mounts (from its routers, as install_portal includes)."""
    from dossier.portal import auditor, citizen, people, professional, routes

    return sorted(r.path for router in (routes.router, citizen.router, professional.router,
                                        auditor.router, people.router)
                  for r in router.routes if "POST" in (getattr(r, "methods", None) or ()))


def test_every_portal_post_requires_the_csrf_token(site: Site) -> None:
    routes = post_routes()
    assert len(routes) >= 15
    consent_id = site.consents()[0]["id"]
    clients = {"/portal/me": site.sign_in("martin"), "/portal/pro": site.sign_in("sw-janssens"),
               "/portal/audit": site.sign_in("auditor")}
    before = len(site.consents())
    for route in routes:
        path = (route.replace("{consent_id}", consent_id).replace("{patient_id}", "martin")
                .replace("{related_id}", "x").replace("{request_id}", "x")
                .replace("{dossier_id}", "martin")
                .replace("{record_id}", "00000000-0000-0000-0000-000000000000"))
        client = next((c for prefix, c in clients.items() if path.startswith(prefix)),
                      clients["/portal/me"])
        token = csrf_of(client.get(HOME["martin"] if client is clients["/portal/me"] else
                                   "/portal/pro" if client is clients["/portal/pro"] else
                                   "/portal/audit").text)
        form = {"actor": GP, "category": "identity", "action": "access", "choice": "refuse",
                "confirm": "yes", "decision": "approved", "dossier": "martin",
                "reason": "x", "understood": "yes", "at": "2027-01-04T10:00",
                "type": "cpas-support", "status": "requested", "language": "nl"}
        assert client.post(path, data=form).status_code == 403, f"{route} without token"
        assert client.post(path, data={**form, "csrf": "forged"}).status_code == 403, route
        assert client.post(path, data={**form, "csrf": token},
                           headers={"Origin": "https://evil.example"}).status_code == 403, route
        anonymous = TestClient(site.app, base_url=BASE, follow_redirects=False)
        assert anonymous.post(path, data={**form, "csrf": token}).status_code in (401, 403)
    assert len(site.consents()) == before  # nothing was written
    assert consent_id in {c["id"] for c in site.consents() if c["status"] == "active"}


def test_a_form_with_the_token_is_accepted(site: Site) -> None:
    martin = site.sign_in("martin")
    before = len(site.consents())
    grant(site, martin, GP)
    assert len(site.consents()) == before + 1


# ------------------------------------------------------------------ session cookie
def set_cookies(response: Any) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def test_session_cookie_is_secure_httponly_samesite_and_host_only(site: Site) -> None:
    client = TestClient(site.app, base_url=BASE, follow_redirects=False)
    start = client.get("/portal/login")
    login = set_cookies(start)["__Host-dossier-login"]
    authorize = urlsplit(start.headers["location"])
    chosen = client.post("/auth/authorize", data={**dict(parse_qsl(authorize.query)),
                                                  "username": "martin", "password": PASSWORD})
    back = urlsplit(chosen.headers["location"])
    landed = client.get(f"{back.path}?{back.query}")
    session = set_cookies(landed)[SESSION]
    for header in (login, session):
        attributes = [a.strip().lower() for a in header.split(";")[1:]]
        assert "secure" in attributes
        assert "httponly" in attributes
        assert "samesite=lax" in attributes
        assert "path=/" in attributes
        assert not any(a.startswith("domain") for a in attributes)  # this host only
    assert 'max-age=0' in set_cookies(landed)["__Host-dossier-login"].lower()  # used once


def test_session_cookie_is_encrypted_and_holds_no_personal_data(site: Site) -> None:
    martin = site.sign_in("martin")
    raw = martin.cookies.get(SESSION)
    assert raw
    key_file = site.data_dir / "keys" / "portal-session.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    value = json.loads(Fernet(key_file.read_bytes().strip()).decrypt(raw.encode()))
    assert set(value) == {"token", "role", "user", "csrf", "expires", "flash", "sid"}
    assert value["user"] == "Patient/martin" and value["role"] == "citizen"
    # Nothing of the token or the id is readable in the cookie. (A bare "eyJ" is no test:
    # random ciphertext holds those three characters about once in 500 cookies.)
    for part in value["token"].split("."):
        assert part[:16] not in raw
    assert "Patient/martin" not in raw and "Patient%2Fmartin" not in raw
    text = json.dumps(value).lower()
    for secret in site.seeded.names:
        assert secret.lower() not in text
    tampered = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    forged = TestClient(site.app, base_url=BASE, follow_redirects=False,
                        cookies={SESSION: tampered})
    r = forged.get("/portal/me")
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")


def test_a_cookie_captured_before_logout_no_longer_works(site: Site) -> None:
    """Issue 16 defect 5: logout ends the session on the server, not only in the browser
    (a second app on the same database stands for another worker)."""
    martin = site.sign_in("martin")
    captured = martin.cookies.get(SESSION)
    assert captured
    thief = TestClient(site.app, base_url=BASE, follow_redirects=False,
                       cookies={SESSION: captured})
    assert thief.get("/portal/me").status_code == 200  # the cookie works before logout
    other = site.sign_in("martin")  # another session of the same person
    token = csrf_of(martin.get("/portal/me").text)
    assert martin.post("/portal/logout", data={"csrf": token}).status_code == 303
    for path in ("/portal/me", "/portal/me/access", "/portal/me/settings"):
        r = thief.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    r = thief.post("/portal/me/access/grant", data={"csrf": token, "actor": GP,
                                                    "category": ["identity"],
                                                    "action": ["access"]})
    assert r.status_code in (401, 403)
    assert other.get("/portal/me").status_code == 200  # only that session ended


# ------------------------------------------------------------------ CSP and headers
def assert_strict_headers(response: Any, where: str) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives.get("default-src") == "'none'", where
    assert directives.get("script-src") == "'self'", where
    assert directives.get("style-src") == "'self'", where
    assert directives.get("frame-ancestors") == "'none'", where
    assert directives.get("form-action") == "'self'", where
    assert directives.get("base-uri") == "'none'", where
    assert "unsafe" not in csp and "data:" not in csp and "*" not in csp, where
    assert response.headers.get("x-frame-options") == "DENY", where
    assert response.headers.get("x-content-type-options") == "nosniff", where
    if "/static/" not in where:
        assert response.headers.get("cache-control") == "no-store", where


INLINE = [re.compile(p, re.I) for p in (r"<script(?![^>]*\bsrc=)", r"<style", r"\sstyle=",
                                        r"\son[a-z]+=", r"javascript:")]


def crawl(client: TestClient, pages: list[str]) -> dict[str, Any]:
    return {page: client.get(page) for page in pages}


def test_csp_is_strict_and_pages_have_no_inline_script_or_style(site: Site) -> None:
    anonymous = TestClient(site.app, base_url=BASE, follow_redirects=False)
    responses = crawl(anonymous, ["/portal/", "/portal/login", "/portal/me",
                                  "/portal/static/portal.css", "/portal/static/portal.js",
                                  "/portal/callback?state=x&code=y"])
    responses |= crawl(site.sign_in("martin"), CITIZEN_PAGES)
    responses |= crawl(site.sign_in("sw-janssens"), [*PRO_PAGES, "/portal/pro/patients/nope"])
    responses |= crawl(site.sign_in("auditor"), AUDITOR_PAGES)
    for page, response in responses.items():
        assert_strict_headers(response, page)
        if response.headers.get("content-type", "").startswith("text/html"):
            for pattern in INLINE:
                assert not pattern.search(response.text), f"{pattern.pattern} on {page}"
    assert responses["/portal/pro/patients/nope"].status_code == 404
    assert responses["/portal/callback?state=x&code=y"].status_code == 400


# ------------------------------------------------------------------ no personal data in URLs
URL_ATTRIBUTES = re.compile(r'(?:href|action|src)="([^"]*)"')


def test_no_personal_data_in_any_url(site: Site) -> None:
    martin = site.sign_in("martin")
    grant(site, martin, GP)
    urls: list[str] = []
    for client, pages in ((martin, CITIZEN_PAGES), (site.sign_in("sw-janssens"), PRO_PAGES),
                          (site.sign_in("dr-dupont"), ["/portal/pro"]),
                          (site.sign_in("auditor"), AUDITOR_PAGES[:3])):
        for page, response in crawl(client, pages).items():
            urls.append(page)
            urls.extend(URL_ATTRIBUTES.findall(response.text))
            urls.extend(response.headers.get_list("location"))
    assert any("/portal/pro/patients/martin" in u for u in urls)  # pseudonymous ids only
    for url in urls:
        for secret in site.seeded.names:
            assert secret.lower() not in url.lower(), "personal data in a URL"


# ------------------------------------------------------------------ consent and audit
def test_a_professional_sees_only_the_people_who_consented(site: Site) -> None:
    janssens = site.sign_in("sw-janssens")
    people = janssens.get("/portal/pro").text
    assert "/portal/pro/patients/martin" in people
    assert "/portal/pro/patients/simone" not in people
    hidden = janssens.get("/portal/pro/patients/simone")
    missing = janssens.get("/portal/pro/patients/no-such-person")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace("simone", "X") == missing.text.replace("no-such-person", "X")
    dupont = site.sign_in("dr-dupont")  # no consent at all
    assert "/portal/pro/patients/" not in dupont.get("/portal/pro").text


def test_revocation_through_the_portal_is_immediate_and_audited(site: Site) -> None:
    martin = site.sign_in("martin")
    dupont = site.sign_in("dr-dupont")
    grant(site, martin, GP)
    seen = dupont.get("/portal/pro/patients/martin")
    assert seen.status_code == 200 and "Vandercammen" in seen.text
    consent = next(c for c in site.consents() if c["status"] == "active"
                   and c["provision"]["actor"][0]["reference"]["reference"] == GP)
    token = csrf_of(martin.get("/portal/me/access").text)
    r = martin.post(f"/portal/me/access/{consent['id']}/revoke", data={"csrf": token})
    assert r.status_code == 303
    gone = dupont.get("/portal/pro/patients/martin")
    assert gone.status_code == 404 and "Vandercammen" not in gone.text
    # the portal's reads are in the citizen's access log, as for any FHIR client
    api = TestClient(site.app, base_url=BASE)
    events = api.get(f"/fhir/AuditEvent?agent={GP}&_count=100",
                     headers=site.token("Patient/martin", "citizen")).json()
    outcomes = [e["resource"]["outcome"] for e in events.get("entry", [])]
    assert "0" in outcomes and "4" in outcomes  # the granted read, then the refused one
    log = martin.get("/portal/me/log").text
    assert "Anne Dupont" in log and "Maison médicale du Midi" in log


def test_each_role_keeps_to_its_own_pages(site: Site) -> None:
    assert site.sign_in("martin").get("/portal/pro").status_code == 403
    assert site.sign_in("auditor").get("/portal/me").status_code == 403
    assert site.sign_in("sw-janssens").get("/portal/audit").status_code == 403
    anonymous = TestClient(site.app, base_url=BASE, follow_redirects=False)
    r = anonymous.get("/portal/me/access")
    assert r.status_code == 303
    assert r.headers["location"] == "/portal/login?next=%2Fportal%2Fme%2Faccess"


def test_sign_in_refuses_a_forged_state_and_never_redirects_away(site: Site) -> None:
    client = TestClient(site.app, base_url=BASE, follow_redirects=False)
    start = client.get("/portal/login", params={"next": "https://evil.example/x"})
    params = dict(parse_qsl(urlsplit(start.headers["location"]).query))
    chosen = client.post("/auth/authorize", data={**params, "username": "martin",
                                                       "password": PASSWORD})
    back = dict(parse_qsl(urlsplit(chosen.headers["location"]).query))
    forged = client.get("/portal/callback", params={**back, "state": "forged"})
    assert forged.status_code == 400 and SESSION not in forged.headers.get("set-cookie", "")
    other = TestClient(site.app, base_url=BASE, follow_redirects=False)  # no login cookie
    assert other.get("/portal/callback", params=back).status_code == 400
    landed = client.get("/portal/callback", params=back)
    assert landed.status_code == 303 and landed.headers["location"] == "/portal/me"
    again = client.get("/portal/callback", params=back)  # a code and a state work once
    assert again.status_code == 400


def test_language_from_query_cookie_or_accept_language(site: Site) -> None:
    client = TestClient(site.app, base_url=BASE)
    assert '<html lang="nl">' in client.get("/portal/",
                                            headers={"Accept-Language": "nl-BE,fr;q=0.5"}).text
    assert '<html lang="fr">' in client.get("/portal/",
                                            headers={"Accept-Language": "de"}).text
    chosen = client.get("/portal/?lang=en", headers={"Accept-Language": "nl"})
    assert '<html lang="en">' in chosen.text
    assert "lang=en" in chosen.headers["set-cookie"] and "Secure" in chosen.headers["set-cookie"]
    assert '<html lang="en">' in client.get("/portal/", headers={"Accept-Language": "nl"}).text
    assert 'hreflang="nl"' in chosen.text and 'hreflang="fr"' in chosen.text


def test_csv_cells_never_start_a_formula() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("+1") == "'+1" and csv_cell("-1") == "'-1" and csv_cell("@x") == "'@x"
    assert csv_cell("Practitioner/1") == "Practitioner/1" and csv_cell(None) == ""


# ------------------------------------------------------------------ the citizen's choices
def provision_of(consent: dict[str, Any]) -> dict[str, Any]:
    return consent["provision"]  # type: ignore[no-any-return]


def test_citizen_choices_are_section_12_consents_and_take_effect(site: Site) -> None:
    martin = site.sign_in("martin")
    token = csrf_of(martin.get("/portal/me/access").text)
    r = martin.post("/portal/me/access/grant", data={
        "csrf": token, "actor": "Group/profession-persphysician",
        "category": ["identity", "network", "fragility"], "action": ["access", "collect"],
        "start": "2026-01-01", "end": "2030-12-31", "confirm": "yes"})
    assert r.status_code == 303
    group = next(c for c in site.consents() if c["status"] == "active" and
                 provision_of(c).get("actor", [{}])[0].get("reference", {}).get("reference")
                 == "Group/profession-persphysician")
    assert provision_of(group)["period"] == {"start": "2026-01-01", "end": "2030-12-31"}
    assert group["policyRule"]["coding"][0]["code"] == "OPTIN"
    dupont = site.sign_in("dr-dupont")  # a physician: the profession grant applies
    assert dupont.get("/portal/pro/patients/martin").status_code == 200

    # narrow: keep identity only, see only
    edit = martin.get(f"/portal/me/access/{group['id']}")
    assert edit.status_code == 200 and 'value="fragility" checked' in edit.text
    r = martin.post(f"/portal/me/access/{group['id']}", data={
        "csrf": token, "category": ["identity"], "action": ["access"]})
    assert r.status_code == 303
    narrowed = next(c for c in site.consents() if c["id"] == group["id"])
    assert [s["code"] for s in provision_of(narrowed)["securityLabel"]] == ["identity"]
    assert "period" not in provision_of(narrowed)
    page = dupont.get("/portal/pro/patients/martin")
    assert page.status_code == 200 and "Peeters" not in page.text  # network no longer

    # a form error is explained, nothing is written
    bad = martin.post("/portal/me/access/grant", data={"csrf": token, "actor": GP,
                                                       "action": ["access"]})
    assert bad.status_code == 400 and 'role="alert"' in bad.text
    switch = re.search(r'href="(/portal/me/access/grant\?lang=nl)"', bad.text)
    assert switch, "the language links of a form's error page lead back to the form"
    again = martin.get(switch.group(1), follow_redirects=True)
    assert again.status_code == 200 and '<html lang="nl">' in again.text

    # exclude: stronger than the profession grant
    r = martin.post("/portal/me/access/exclude", data={"csrf": token, "actor": GP})
    assert r.status_code == 303
    deny = next(c for c in site.consents() if c["status"] == "active"
                and provision_of(c)["type"] == "deny")
    assert provision_of(deny)["actor"][0]["reference"]["reference"] == GP
    assert dupont.get("/portal/pro/patients/martin").status_code == 404

    # refuse break-the-glass: a deny with purpose BTG and no actor; the attempt looks
    # exactly like a dossier that does not exist
    r = martin.post("/portal/me/access/break-glass", data={"csrf": token, "choice": "refuse"})
    assert r.status_code == 303
    refusal = [c for c in site.consents() if c["status"] == "active"
               and provision_of(c).get("purpose")]
    assert len(refusal) == 1 and "actor" not in provision_of(refusal[0])
    assert provision_of(refusal[0])["purpose"][0]["code"] == "BTG"
    pro_token = csrf_of(dupont.get("/portal/pro/break-glass").text)
    attempt = dupont.post("/portal/pro/break-glass", data={
        "csrf": pro_token, "dossier": "martin", "reason": "emergency", "understood": "yes"})
    nowhere = dupont.post("/portal/pro/break-glass", data={
        "csrf": pro_token, "dossier": "nobody-here", "reason": "emergency",
        "understood": "yes"})
    assert attempt.status_code == nowhere.status_code == 404
    assert attempt.text == nowhere.text
    r = martin.post("/portal/me/access/break-glass", data={"csrf": token, "choice": "allow"})
    assert not [c for c in site.consents() if c["status"] == "active"
                and provision_of(c).get("purpose")]


def test_citizen_settings_export_and_erasure_request(site: Site) -> None:
    martin = site.sign_in("martin")
    token = csrf_of(martin.get("/portal/me/settings").text)
    r = martin.post("/portal/me/settings", data={"csrf": token, "language": "nl",
                                                 "email": "martin@example.org"})
    assert r.status_code == 303
    page = martin.get("/portal/me/settings").text
    assert 'value="nl" checked' in page and 'value="martin@example.org"' in page
    bad = martin.post("/portal/me/settings", data={"csrf": token, "language": "fr",
                                                   "email": "not an address"})
    assert bad.status_code == 400
    export = martin.get("/portal/me/export")
    assert export.status_code == 200
    assert "attachment" in export.headers["content-disposition"]
    assert export.json()["resourceType"] == "Bundle"
    refused = martin.post("/portal/me/erase", data={"csrf": token})
    assert refused.status_code == 400
    asked = martin.post("/portal/me/erase", data={"csrf": token, "confirm": "yes"})
    assert asked.status_code == 200 and "Un administrateur la confirme" in asked.text


def test_notifications_and_proof_receipts(site: Site) -> None:
    from dossier.notify.worker import run_pending

    janssens = site.sign_in("sw-janssens")
    assert janssens.get("/portal/pro/patients/martin").status_code == 200
    site.app.state.runtime.integrate_audit()
    run_pending(site.app.state.runtime)
    martin = site.sign_in("martin")
    inbox = martin.get("/portal/me/notifications")
    assert inbox.status_code == 200
    receipts = re.findall(r'href="(/portal/me/log/[0-9a-f-]+/receipt)"', inbox.text)
    assert receipts, "each message links to the proof of its log entry"
    receipt = martin.get(receipts[0])
    assert receipt.status_code == 200
    body = receipt.json()
    proof, head = body["inclusion_proof"], body["tree_head"]
    assert proof["tree_size"] == head["tree_size"]
    assert body["audit_event"]["resourceType"] == "AuditEvent"
    from audit.canonical import b64decode
    from audit.hashing import leaf_hash, node_hash

    # fold the audit path (RFC 6962/9162) and compare with the signed root
    index, size = proof["index"], proof["tree_size"]
    computed = leaf_hash(b64decode(proof["leaf"]))
    fn, sn = index, size - 1
    for sibling in map(b64decode, proof["audit_path"]):
        if fn % 2 == 1 or fn == sn:
            computed = node_hash(sibling, computed)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            computed = node_hash(computed, sibling)
        fn, sn = fn >> 1, sn >> 1
    assert computed == b64decode(head["root_hash"])
    other = site.sign_in("simone").get(receipts[0])  # another person's log entry
    assert other.status_code == 404


def test_a_professional_moves_a_demarche_on_but_never_out_of_a_closed_status(
        site: Site) -> None:
    janssens = site.sign_in("sw-janssens")
    page = janssens.get("/portal/pro/patients/martin").text
    # one status form; only the open démarche can change, the completed one cannot
    assert page.count('action="/portal/pro/patients/martin/demarches"') == 1
    open_ids = re.findall(r'<option value="([0-9a-f-]{36})">', page)
    assert len(open_ids) == 1
    forms = [f"/portal/pro/patients/martin/demarches/{open_ids[0]}"]
    token = csrf_of(page)
    kept = janssens.post("/portal/pro/patients/martin/demarches", data={
        "csrf": token, "demarche": open_ids[0], "status": "", "business": ""})
    assert kept.status_code == 400  # "keep as it is" twice: nothing to change
    r = janssens.post("/portal/pro/patients/martin/demarches", data={
        "csrf": token, "demarche": open_ids[0], "status": "completed",
        "business": "decision-positive"})
    assert r.status_code == 303
    page = janssens.get("/portal/pro/patients/martin").text
    assert 'action="/portal/pro/patients/martin/demarches"' not in page  # both closed now
    refused = janssens.post(forms[0], data={"csrf": token, "status": "in-progress"})
    assert refused.status_code == 422  # the server's rule, shown with its explanation
    assert "partOf" in refused.text or "closed" in refused.text
