"""Browser tests of the console: a real Socle server and Debian's headless Chromium driven by Playwright
(``executable_path=/usr/bin/chromium``: no browser is downloaded). ``make test`` installs Chromium if it is
missing. Each test leaves a screenshot in ``artifacts/screenshots/`` (CI keeps them); with
``SOCLE_UPDATE_SCREENSHOTS=1`` the ones named for the docs are also written to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY, fake_engines

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
# Flags for a closed network: no background connections, no component updates, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# Module scope, not session: Playwright's sync API keeps an event loop running in the main thread while
# it is open, and later tests that call asyncio.run() must not see it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is missing at {CHROMIUM}: `make test` installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server per test module, with fake engines (the real model has its own test)."""
    from socle.config import load_settings

    data = tmp_path_factory.mktemp("console") / "data"
    settings = load_settings(None, environ={}, data_dir=data, admin_key=ADMIN_KEY, port=0, **fake_engines())
    with run_server(settings) as server:
        yield server


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (empty storage) per test, English, 1440×900; console errors fail it."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1440, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    page.set_default_timeout(15_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    assert not problems, problems


def login(page: Any, server: RunningServer, key: str = ADMIN_KEY, *, path: str = "") -> None:
    """Sign in with an API key through the login form, then open ``#/path``."""
    page.goto(server.url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_test_id("me-name").wait_for()
    # The shell lands on the first page it allows; opening another before that could be overridden.
    page.locator("nav a[aria-current='page']").wait_for()
    if path:
        page.goto(f"{server.url}/#/{path}")


def docs_screenshot(page: Any, name: str) -> None:
    """Save a screenshot for the docs (``docs/screenshots/NAME.png``) when SOCLE_UPDATE_SCREENSHOTS=1,
    and always as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"docs-{name}.png"))
    if os.environ.get("SOCLE_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"))
