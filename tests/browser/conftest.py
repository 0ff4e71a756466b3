"""Browser tests: the portal in a real Chromium (Playwright) against a real uvicorn server.

They run when /usr/bin/chromium exists, and always in CI (env CI set): there a missing
browser is a failure, not a skip. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.seed import PASSWORD, Seeded, seed

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
HOMES = {"martin": "/portal/me", "simone": "/portal/me", "piet": "/portal/me/people",
         "dr-dupont": "/portal/pro",
         "sw-janssens": "/portal/pro", "auditor": "/portal/audit"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: runs the portal in a real Chromium "
                                       "(Playwright); skipped only without Chromium outside CI")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is absent (apt-get install -y chromium)")
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(skip)


@dataclass
class Live:
    base: str
    app: Any
    seeded: Seeded

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def seal_log(self) -> None:
        """Run the audit sequencer once (the test server runs no background workers)."""
        self.runtime.integrate_audit()

    def deliver_notifications(self) -> None:
        from dossier.notify.worker import run_pending

        run_pending(self.runtime)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """A real server on a loopback port, its issuer URL on that port, seeded over HTTP."""
    from dossier.app import create_app
    from dossier.settings import load_settings
    from tests.livesrv import free_port, serve

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data", base_url=base,
                                 audit_sequencer_seconds=0, notify_worker_seconds=0,
                                 maintenance_seconds=0)
        app = create_app(settings)
        try:
            with serve(app, port) as url:
                with httpx.Client(base_url=url, timeout=30) as http:
                    seeded = seed(http, app)
                yield Live(url, app, seeded)
        finally:
            app.state.runtime.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Visitor:
    """One person's browser context: their cookies, what they requested, what went wrong."""

    context: Any
    page: Any
    live: Live
    urls: list[str] = field(default_factory=list)
    csp_errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> Any:
        return self.page.goto(self.live.base + path)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        """No personal data in any URL asked for; no Content-Security-Policy violation."""
        for url in self.urls:
            for secret in self.live.seeded.names:
                assert secret.lower() not in url.lower(), "personal data in a URL"
        assert self.csp_errors == []


def open_visitor(browser: Any, live: Live, user: str, locale: str = "en-GB",
                 viewport: dict[str, int] | None = None) -> Visitor:
    """A fresh context, signed in as a demo user through the issuer's real sign-in page."""
    context = browser.new_context(locale=locale, viewport=viewport or {"width": 1100,
                                                                      "height": 900})
    page = context.new_page()
    visitor = Visitor(context, page, live)
    page.on("request", lambda request: visitor.urls.append(request.url))
    page.on("console", lambda message: visitor.csp_errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("dialog", lambda dialog: dialog.accept())
    visitor.go("/portal/")
    page.locator("main a.button").first.click()  # "Sign in", in whatever language
    page.wait_for_url(re.compile(r".*/auth/authorize\?.*"))
    page.locator("#username").fill(user)
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(rf".*{re.escape(HOMES[user])}$"))
    return visitor


@pytest.fixture
def visitors(browser: Any, live: Live) -> Iterator[Any]:
    opened: list[Visitor] = []

    def make(user: str, locale: str = "en-GB",
             viewport: dict[str, int] | None = None) -> Visitor:
        visitor = open_visitor(browser, live, user, locale, viewport)
        opened.append(visitor)
        return visitor

    yield make
    for visitor in opened:
        visitor.context.close()
