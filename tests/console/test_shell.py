"""The console's shell in a real browser: served air-gapped, sign-in with a key, navigation per role,
language switch, sign-out."""

from __future__ import annotations

from typing import Any

import httpx

from socle.testing.server import RunningServer
from tests.conftest import ADMIN_KEY
from tests.console.conftest import docs_screenshot, login


def test_shell_is_served_with_a_strict_policy_and_no_external_asset(console_server: RunningServer) -> None:
    response = httpx.get(console_server.url + "/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in response.text.replace('rel="stylesheet"', "")
    config = httpx.get(console_server.url + "/console/config.json").json()
    assert config["sso"] is None and config["languages"] == ["fr", "en"]
    asset = httpx.get(console_server.url + "/console/static/vendor/preact.js")
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert httpx.get(console_server.url + "/console/static/../../config.py").status_code == 404


def test_me_says_who_the_caller_is(console_server: RunningServer) -> None:
    me = httpx.get(console_server.api + "/me", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert me["auth"] == "api_key" and "admin" in me["roles"] and "audit.read" in me["actions"]
    assert me["team"]["name"] and me["teams"] == [me["team"]]
    wrong = httpx.get(console_server.api + "/me", headers={"Authorization": "Bearer sk-socle-nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"]


def test_login_with_a_key_shows_the_pages_of_the_role(page: Any, console_server: RunningServer) -> None:
    page.goto(console_server.url + "/")
    page.get_by_label("API key").fill("sk-socle-wrong")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("alert").wait_for()
    assert "key" in page.get_by_role("alert").inner_text().lower()
    docs_screenshot(page, "login")
    login(page, console_server)
    nav = page.get_by_role("navigation", name="Main menu")
    for label in ("Chat", "Knowledge", "Teams", "API keys", "Audit log"):
        assert nav.get_by_role("link", name=label).is_visible(), label


def test_language_switch_and_sign_out(page: Any, console_server: RunningServer) -> None:
    login(page, console_server)
    page.get_by_label("Language").first.select_option("fr")
    page.get_by_role("navigation", name="Menu principal").wait_for()
    assert page.evaluate("document.documentElement.lang") == "fr"
    page.get_by_role("button", name="Se déconnecter").click()
    page.get_by_label("Clé d’API").wait_for()
    page.reload()
    page.get_by_label("Clé d’API").wait_for()
