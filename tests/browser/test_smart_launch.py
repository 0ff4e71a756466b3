"""A SMART App Launch from a page on another origin, in a real Chromium (issue 17).

The app (tests/browser/smart_app/app.html) is served by a separate HTTP server on another
port — another origin — and does what any browser SMART app does: discovery at
`{iss}/.well-known/smart-configuration`, authorization code + PKCE (S256) through the
issuer's sign-in page, the token request, then FHIR reads with the Bearer token. Every
fetch is cross-origin, so it only works because the server answers CORS for the origin
named in DOSSIER_CORS_ORIGINS (and a preflight for the Authorization header)."""

from __future__ import annotations

import functools
import json
import re
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.seed import PASSWORD, seed

pytestmark = pytest.mark.browser
APP_DIR = Path(__file__).parent / "smart_app"


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def app_origin() -> Iterator[str]:
    """The SMART app's own static server: another port, so another origin."""
    handler = functools.partial(Quiet, directory=str(APP_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api_server(app_origin: str) -> Iterator[tuple[str, Any]]:
    from dossier.app import create_app
    from dossier.settings import load_settings
    from tests.livesrv import free_port, serve

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(load_settings(
            data_dir=Path(tmp) / "data", base_url=base, audit_sequencer_seconds=0,
            notify_worker_seconds=0, maintenance_seconds=0, cors_origins=app_origin))
        try:
            with serve(app, port) as url:
                with httpx.Client(base_url=url, timeout=30) as http:
                    seeded = seed(http, app)
                app.state.dev_issuer.register_client(
                    "smart-test-app", redirect_uris=[f"{app_origin}/app.html"],
                    scope="openid fhirUser user/*.rs")
                yield url, seeded
        finally:
            app.state.runtime.engine.dispose()


def test_smart_app_launch_from_another_origin(browser: Any, app_origin: str,
                                              api_server: tuple[str, Any]) -> None:
    base, seeded = api_server
    context = browser.new_context()
    page = context.new_page()
    cross_origin: list[str] = []
    page.on("request", lambda request: cross_origin.append(
        f"{request.method} {request.url}") if request.url.startswith(base) else None)
    query = urlencode({"iss": f"{base}/fhir", "client_id": "smart-test-app",
                       "scope": "openid fhirUser user/*.rs", "patient": seeded.martin})
    try:
        page.goto(f"{app_origin}/app.html?{query}")
        page.wait_for_url(re.compile(r".*/auth/authorize\?.*"))  # the issuer's sign-in
        page.locator("#username").fill("sw-janssens")  # Martin granted her
        page.locator("#password").fill(PASSWORD)
        page.locator("form button[type=submit]").click()
        page.wait_for_url(re.compile(rf"^{re.escape(app_origin)}/app\.html\?.*code=.*"))
        page.wait_for_function("document.getElementById('step').textContent !== 'starting'"
                               " && document.getElementById('step').textContent !== "
                               "'authorizing'", timeout=20000)
        step = page.locator("#step").text_content()
        result = json.loads(page.locator("#result").text_content() or "{}")
        assert step == "done", result
        assert result["tokenStatus"] == 200 and "user/" in result["scope"]
        assert result["readStatus"] == 200 and result["id"] == seeded.martin
        assert result["family"] == "Vandercammen"  # decrypted for a consented reader
        assert result["etag"] == 'W/"1"'  # an exposed header
        assert result["taskStatus"] == 200 and result["taskTotal"] >= 1
        # discovery, token and FHIR calls all went cross-origin
        assert any(r.startswith("GET ") and ".well-known/smart-configuration" in r
                   for r in cross_origin)
        assert any(r.startswith("POST ") and r.endswith("/auth/token") for r in cross_origin)
        assert any(f"/fhir/Patient/{seeded.martin}" in r for r in cross_origin)
    finally:
        context.close()
