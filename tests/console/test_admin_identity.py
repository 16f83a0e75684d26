"""The identity pages of the console in a real browser: teams and role bindings, users and service
accounts, API keys (secret shown once, revoked key refused), budgets whose bar moves after a request,
rate limits, and model access. Every change made in the browser is checked through the API, and keys
are used with the official ``openai`` client."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from socle.config import FakeEngineConfig, ModelRoute
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY
from tests.console.conftest import docs_screenshot, login

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

# Priced fake engines: a request costs a visible amount (10 000 EUR per million tokens: 1 cent a token).
PRICE = {"price_input_per_mtok": 10_000.0, "price_output_per_mtok": 10_000.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from socle.config import load_settings

    engines = [
        FakeEngineConfig(name="fake-a", reply="Bonjour, je suis un moteur factice.", **PRICE),
        FakeEngineConfig(name="fake-b", reply="Un autre moteur.", **PRICE),
    ]
    models = [
        ModelRoute(name="fake-chat", engines=["fake-a"]),
        ModelRoute(name="other-chat", engines=["fake-b"]),
    ]
    data = tmp_path_factory.mktemp("admin-identity") / "data"
    settings = load_settings(
        None, environ={}, data_dir=data, admin_key=ADMIN_KEY, port=0, engines=engines, models=models
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.api, headers=headers, timeout=30) as client:
        yield client


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json()


def _team(admin: httpx.Client, name: str) -> dict[str, Any]:
    teams = {t["name"]: t for t in _ok(admin.get("/admin/teams"))["data"]}
    return teams.get(name) or _ok(admin.post("/admin/teams", json={"name": name}))


def _user(admin: httpx.Client, name: str, team: str | None = None, role: str = "member") -> dict[str, Any]:
    user = _ok(admin.post("/admin/principals", json={"kind": "user", "name": name}))
    if team:
        _ok(admin.post(f"/admin/teams/{team}/members", json={"principal_id": user["id"], "role": role}))
    return user


def _select(scope: Any, label: str) -> Any:
    """A drop-down by its label (a label wrapping a select also names it by its chosen option)."""
    return scope.get_by_role("combobox", name=re.compile(rf"^{re.escape(label)}\b"))


def _chat(server: RunningServer, key: str) -> str:
    client = openai.OpenAI(base_url=server.api, api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=20
    )
    return answer.choices[0].message.content or ""


def test_create_a_team_and_bind_a_user(page: Any, server: RunningServer, admin: httpx.Client) -> None:
    alice = _user(admin, "Alice Martin")
    eve = _user(admin, "Eve Auditor", "admin", role="auditor")
    login(page, server, path="admin/teams")
    page.get_by_role("button", name="New team").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("research")
    _select(dialog, "Default classification").select_option("confidential")
    dialog.get_by_role("button", name="Create").click()
    teams = page.get_by_role("table", name="Teams list")
    expect(teams.get_by_role("row", name="research")).to_contain_text("confidential")
    research = next(t for t in _ok(admin.get("/admin/teams"))["data"] if t["name"] == "research")
    assert research["classification"] == "confidential" and research["members"] == 0

    page.get_by_role("button", name="Members of research").click()
    _select(page, "Member").select_option(alice["id"])
    _select(page, "Role").select_option("team-admin")
    page.get_by_role("button", name="Give role").click()
    members = page.get_by_role("table", name="Members and roles")
    expect(members.get_by_role("row", name="Alice Martin")).to_contain_text("team-admin")
    expect(teams.get_by_role("row", name="research")).to_contain_text("1")
    bindings = _ok(admin.get("/admin/teams/research/members"))["data"]
    assert [(b["principal_id"], b["role"]) for b in bindings] == [(alice["id"], "team-admin")]

    # Separation of duties: an auditor cannot become an admin; the API's words are shown.
    _select(page, "Member").select_option(eve["id"])
    _select(page, "Role").select_option("admin")
    page.get_by_role("button", name="Give role").click()
    expect(page.get_by_role("alert")).to_contain_text("Separation of duties")
    assert all(b["role"] != "admin" for b in _ok(admin.get(f"/admin/principals/{eve['id']}"))["bindings"])
    docs_screenshot(page, "admin-teams")

    members.get_by_role("row", name="Alice Martin").get_by_role("button", name="Remove").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    expect(members).to_have_count(0)
    assert _ok(admin.get("/admin/teams/research/members"))["data"] == []


def test_users_and_service_accounts(page: Any, server: RunningServer, admin: httpx.Client) -> None:
    login(page, server, path="admin/users")
    page.get_by_role("button", name="New service account").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("ingest-bot")
    dialog.get_by_role("button", name="Create").click()
    table = page.get_by_role("table", name="Users and service accounts")
    row = table.get_by_role("row", name="ingest-bot")
    expect(row).to_contain_text("Service account")
    expect(row).to_contain_text("active")
    bot = next(p for p in _ok(admin.get("/admin/principals"))["data"] if p["name"] == "ingest-bot")
    assert bot["kind"] == "service" and bot["disabled_at"] is None

    docs_screenshot(page, "admin-users")
    row.get_by_role("button", name="Disable").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("disabled")
    assert _ok(admin.get(f"/admin/principals/{bot['id']}"))["disabled_at"]
    row.get_by_role("button", name="Enable").click()
    page.get_by_role("dialog").get_by_role("button", name="Enable").click()
    expect(row).to_contain_text("active")
    assert _ok(admin.get(f"/admin/principals/{bot['id']}"))["disabled_at"] is None


def test_create_a_key_see_its_secret_once_then_revoke_it(
    page: Any, server: RunningServer, admin: httpx.Client
) -> None:
    _team(admin, "labs")
    bob = _user(admin, "Bob Durand", "labs")
    login(page, server, path="admin/keys")
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("bob-laptop")
    _select(dialog, "Team").select_option(label="labs")
    _select(dialog, "Owner").select_option(bob["id"])
    dialog.get_by_label("fake-chat").check()
    dialog.get_by_role("button", name="Create").click()

    secret_box = page.get_by_test_id("key-secret-box")
    expect(secret_box).to_contain_text("shown only once")
    secret = page.get_by_test_id("key-secret").inner_text().strip()
    assert secret.startswith("sk-socle-")
    docs_screenshot(page, "admin-key-secret")
    assert _chat(server, secret)  # the new key works with the official client
    page.get_by_role("button", name="I have copied it").click()
    expect(page.get_by_test_id("key-secret")).to_have_count(0)

    keys = page.get_by_role("table", name="API keys")
    row = keys.get_by_role("row", name="bob-laptop")
    expect(row).to_contain_text("Bob Durand")
    expect(row).to_contain_text("labs")
    expect(row).to_contain_text("fake-chat")
    assert secret not in page.content()  # never shown again
    record = next(k for k in _ok(admin.get("/admin/keys"))["data"] if k["name"] == "bob-laptop")
    assert record["principal_id"] == bob["id"] and record["allowed_models"] == ["fake-chat"]
    # More keys, for a realistic list: one with an expiry and an IP allow-list, one revoked.
    ci = {
        "principal_id": bob["id"],
        "team": "labs",
        "name": "ci-pipeline",
        "expires_at": "2031-12-31T23:59:59Z",
        "ip_allowlist": ["10.0.0.0/8"],
    }
    _ok(admin.post("/admin/keys", json=ci))
    old = _ok(
        admin.post("/admin/keys", json={"principal_id": bob["id"], "team": "labs", "name": "old-laptop"})
    )
    _ok(admin.delete(f"/admin/keys/{old['id']}"))
    page.reload()
    expect(row).not_to_contain_text("never")  # last used: just now
    expect(keys.get_by_role("row", name="admin (SOCLE_ADMIN_KEY)")).to_contain_text("this session")
    docs_screenshot(page, "admin-keys")

    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    assert _ok(admin.get(f"/admin/keys/{record['id']}"))["revoked_at"]
    with pytest.raises(openai.AuthenticationError) as refused:
        _chat(server, secret)
    assert refused.value.status_code == 401


def test_a_budget_bar_moves_after_a_request(page: Any, server: RunningServer, admin: httpx.Client) -> None:
    team = _team(admin, "finance")
    carol = _user(admin, "Carol Petit", "finance")
    key = _ok(
        admin.post("/admin/keys", json={"principal_id": carol["id"], "team": "finance", "name": "carol"})
    )
    login(page, server, path="admin/budgets")
    page.get_by_role("button", name="New budget").click()
    dialog = page.get_by_role("dialog")
    _select(dialog, "Scope").select_option("team")
    _select(dialog, "Target").select_option(label="finance")
    _select(dialog, "Period").select_option("monthly")
    dialog.get_by_label("Limit in euros").fill("5")
    dialog.get_by_role("button", name="Create").click()
    row = page.get_by_role("table", name="Budgets").get_by_role("row", name="finance")
    spent = row.get_by_test_id("budget-spent-eur")
    expect(spent).to_contain_text("€0.00 spent")
    budget = next(
        b for b in _ok(admin.get("/admin/budgets"))["data"] if b["budget"]["scope_id"] == team["id"]
    )
    assert budget["budget"]["limit_eur"] == "5" and budget["spent_eur"] == "0"
    meter = row.get_by_role("meter")
    assert meter.get_attribute("aria-valuenow") == "0"

    # Budgets of Carol and of her key, brought to 90 % and 100 % after the request (amber and red bars).
    user_budget = {"scope": "user", "target": carol["id"], "period": "monthly", "limit_eur": "5"}
    carol_budget = _ok(admin.post("/admin/budgets", json=user_budget))["budget"]["id"]
    key_budget = {"scope": "key", "target": key["id"], "period": "daily", "limit_tokens": 10_000}
    key_budget_id = _ok(admin.post("/admin/budgets", json=key_budget))["budget"]["id"]

    assert _chat(server, key["key"])
    deadline = time.monotonic() + 10
    while (status := _ok(admin.get("/admin/budgets", params={"team": "finance"}))["data"][0])[
        "spent_eur"
    ] == "0":
        assert time.monotonic() < deadline, "the request was not charged to the team's budget"
        time.sleep(0.1)
    page.reload()
    expect(spent).not_to_contain_text("€0.00 spent")
    assert float(meter.get_attribute("aria-valuenow") or 0) == pytest.approx(float(status["spent_eur"]))

    # A rate limit on the team, then an edit of the budget.
    page.get_by_role("button", name="New limit").click()
    _select(dialog, "Scope").select_option("team")
    _select(dialog, "Target").select_option(label="finance")
    dialog.get_by_label("Requests / min").fill("60")
    dialog.get_by_role("button", name="Create").click()
    limit_row = page.get_by_role("table", name="Rate limits").get_by_role("row", name="finance")
    expect(limit_row).to_contain_text("60")
    limits = [x for x in _ok(admin.get("/admin/limits"))["data"] if x["scope_id"] == team["id"]]
    assert [(x["requests_per_minute"], x["tokens_per_minute"]) for x in limits] == [(60, None)]
    row.get_by_role("button", name="Edit").click()
    dialog.get_by_label("Limit in euros").fill("2")
    dialog.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("€2.00")
    assert (
        _ok(admin.get("/admin/budgets", params={"team": "finance"}))["data"][0]["budget"]["limit_eur"] == "2"
    )
    spent_eur = Decimal(status["spent_eur"])
    _ok(admin.patch(f"/admin/budgets/{carol_budget}", json={"limit_eur": str(spent_eur / Decimal("0.9"))}))
    _ok(admin.patch(f"/admin/budgets/{key_budget_id}", json={"limit_tokens": status["spent_tokens"]}))
    page.reload()
    budgets = page.get_by_role("table", name="Budgets")
    expect(budgets.get_by_role("row", name="Carol Petit").locator(".bar.warn")).to_have_count(1)
    expect(
        budgets.get_by_role("row", name="carol").filter(has_text="Key").locator(".bar.over")
    ).to_have_count(1)
    expect(row.locator(".bar.ok")).to_have_count(1)
    docs_screenshot(page, "admin-budgets")


def test_grant_and_revoke_a_model(page: Any, server: RunningServer, admin: httpx.Client) -> None:
    _team(admin, "legal")
    login(page, server, path="admin/models")
    expect(page.get_by_test_id("model-default")).to_contain_text("Default: open")
    models = page.get_by_role("table", name="Models and granted teams")
    row = models.get_by_role("row", name="other-chat")
    expect(row).to_contain_text("open to every team")
    _select(row, "Grant other-chat to a team").select_option(label="legal")
    row.get_by_role("button", name="Grant").click()
    expect(row).to_contain_text("restricted")
    policy = _ok(admin.get("/admin/model-access", params={"model": "other-chat"}))["data"][0]
    legal = _team(admin, "legal")
    assert policy["restricted"] and policy["teams"] == [legal["id"]]
    docs_screenshot(page, "admin-models")

    # The last grant: the API refuses to reopen the model silently, and the page offers to do it.
    row.get_by_role("button", name="Revoke other-chat from legal").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.get_by_role("alert")).to_contain_text("last grant")
    assert _ok(admin.get("/admin/model-access", params={"model": "other-chat"}))["data"][0]["restricted"]
    dialog.get_by_role("button", name="Revoke and open to every team").click()
    expect(row).to_contain_text("open to every team")
    assert not _ok(admin.get("/admin/model-access", params={"model": "other-chat"}))["data"][0]["restricted"]


def test_a_team_admin_sees_their_own_team_only(page: Any, server: RunningServer, admin: httpx.Client) -> None:
    _team(admin, "ops")
    dana = _user(admin, "Dana Admin", "ops", role="team-admin")
    erin = _user(admin, "Erin Member", "ops")
    key = _ok(admin.post("/admin/keys", json={"principal_id": dana["id"], "team": "ops", "name": "dana"}))[
        "key"
    ]
    _ok(admin.post("/admin/keys", json={"team": "admin", "name": "elsewhere"}))
    login(page, server, key, path="admin/teams")
    nav = page.get_by_role("navigation", name="Main menu")
    expect(nav.get_by_role("link", name="API keys")).to_be_visible()
    expect(nav.get_by_role("link", name="Users and services")).to_have_count(0)
    expect(page.get_by_role("heading", name="My team")).to_be_visible()
    members = page.get_by_role("table", name="Members and roles")
    expect(members.get_by_role("row", name="Erin Member")).to_contain_text("member")

    page.goto(f"{server.url}/#/admin/keys")
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("erin-cli")
    _select(dialog, "Owner").select_option(erin["id"])
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("key-secret")).to_contain_text("sk-socle-")
    page.get_by_role("button", name="I have copied it").click()
    keys = page.get_by_role("table", name="API keys")
    expect(keys.get_by_role("row", name="erin-cli")).to_contain_text("Erin Member")
    expect(keys.get_by_role("row", name="elsewhere")).to_have_count(0)  # another team's key

    # A team admin may not cap their own team: the API says so in the dialog.
    page.goto(f"{server.url}/#/admin/budgets")
    expect(page.get_by_text("set by an administrator")).to_be_visible()
    page.get_by_role("button", name="New budget").click()
    _select(dialog, "Scope").select_option("user")
    _select(dialog, "Target").select_option(erin["id"])
    dialog.get_by_label("Limit in tokens").fill("1000")
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_role("table", name="Budgets").get_by_role("row", name="Erin Member")).to_be_visible()
    budgets = _ok(admin.get("/admin/budgets", params={"scope": "user"}))["data"]
    assert [b["budget"]["limit_tokens"] for b in budgets if b["budget"]["scope_id"] == erin["id"]] == [1000]


@pytest.mark.parametrize("path", ["teams", "users", "keys", "budgets", "models"])
def test_every_string_is_translated(page: Any, server: RunningServer, path: str) -> None:
    """In French, no message key shows instead of its text (a missing key shows itself)."""
    login(page, server)
    page.get_by_label("Language").first.select_option("fr")
    page.goto(f"{server.url}/#/admin/{path}")
    page.get_by_role("heading", level=1).wait_for()
    expect(page.get_by_role("status")).to_have_count(0)  # loaded
    text = page.locator("main").inner_text()
    assert not re.findall(r"\b(?:teams|users|keys|budgets|models|idlib)\.[a-z_.]+\b", text), text
    if path in ("teams", "budgets"):  # the creation dialog too
        page.get_by_role("button", name=re.compile("^Nouve")).first.click()
        dialog = page.get_by_role("dialog").inner_text()
        assert not re.findall(r"\b(?:teams|budgets|idlib)\.[a-z_.]+\b", dialog), dialog
