"""The operations pages of the console in a real browser: usage charts, alerts, engine health, the audit
log with one answer's trace, and verification of the log (including a log tampered with in SQLite)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, text

from socle.config import FakeEngineConfig, ModelRoute, Settings, load_settings
from socle.observability.usage import UsageRecord
from socle.storage.dialects import sync_url
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY
from tests.console.conftest import docs_screenshot
from tests.console.conftest import login as sign_in

REPLY = "Bonjour, voici la réponse."


def _settings(data: Path) -> Settings:
    price = {"price_input_per_mtok": 2.0, "price_output_per_mtok": 6.0}
    return load_settings(
        None,
        environ={},
        data_dir=data,
        admin_key=ADMIN_KEY,
        port=0,
        engines=[
            FakeEngineConfig(name="fake-a", reply=REPLY, **price),
            FakeEngineConfig(name="fake-b", reply=REPLY, **price),
            # Output tokens only are priced here, so that a budget's reservation (max_tokens) and spend
            # (the reply's 4 tokens) are close and a few requests cross its alert thresholds.
            FakeEngineConfig(name="eu-large", zone="eu-sovereign", reply=REPLY, price_output_per_mtok=24.0),
            FakeEngineConfig(name="eu-large-backup", zone="eu", fail=True),  # down: probes mark it so
        ],
        models=[
            ModelRoute(name="fake-chat", engines=["fake-a", "fake-b"]),
            ModelRoute(name="large-chat", engines=["eu-large", "eu-large-backup"]),
        ],
        health_check_interval_s=2.0,  # probes time out after as long: not too short under load
        usage={"flush_interval_s": 0.1},
    )


def login(page: Any, server: RunningServer, *, path: str = "") -> None:
    """Sign in, let the shell land on its first page, then open ``#/path``.

    (conftest's ``login(path=...)`` can race the shell's redirect to its first page, which then
    replaces the requested page; waiting for the landing page first avoids it.)
    """
    sign_in(page, server)
    page.locator("nav a[aria-current='page']").wait_for()
    if path:
        page.goto(f"{server.url}/#/{path}")


def _admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def _client(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key=key, max_retries=0)


def _ask(server: RunningServer, key: str, model: str) -> str:
    """One chat completion with the official client; returns its request id (``x-request-id``)."""
    raw = _client(server, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Bonjour"}], max_tokens=5
    )
    assert raw.parse().choices[0].message.content
    return str(raw.headers["x-request-id"])


def _wait(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def _team_key(admin: httpx.Client, team: str, user: str) -> tuple[str, str, str]:
    """A team with one member and their key: (team id, principal id, key)."""
    team_id = admin.post("/admin/teams", json={"name": team}).json()["id"]
    principal = admin.post("/admin/principals", json={"kind": "user", "name": user}).json()["id"]
    admin.post(
        f"/admin/teams/{team}/members", json={"principal_id": principal, "role": "member"}
    ).raise_for_status()
    key = admin.post("/admin/keys", json={"principal_id": principal, "team": team, "name": "laptop"}).json()
    return team_id, principal, key["key"]


def _seed_history(server: RunningServer, members: list[tuple[str, str]], days: int = 29) -> None:
    """Usage of the previous days (so the chart has a history; today's bars are the real requests)."""
    rng = random.Random(7)
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for back in range(1, days + 1):
        moment = now - timedelta(days=back)
        weekday = moment.weekday() < 5
        for n, (team_id, principal) in enumerate(members):
            for model, engine, zone, price in (
                ("fake-chat", "fake-a", "on-prem", 2.0),
                ("large-chat", "eu-large", "eu-sovereign", 8.0),
            ):
                for i in range(rng.randint(3, 9) if weekday else rng.randint(0, 2)):
                    prompt, completion = rng.randint(400, 2500) * (n + 1), rng.randint(100, 900)
                    server.services.usage.record(
                        UsageRecord(
                            request_id=f"req_seed{back}{n}{model}{i}",
                            key_id="seed",
                            principal_id=principal,
                            team_id=team_id,
                            model=model,
                            engine=engine,
                            zone=zone,
                            endpoint="/v1/chat/completions",
                            prompt_tokens=prompt,
                            completion_tokens=completion,
                            cost_eur=Decimal(str(round((prompt * price + completion * price * 3) / 1e6, 6))),
                            latency_ms=rng.uniform(150, 1800) * (2 if model == "large-chat" else 1),
                            status_code=200 if rng.random() > 0.03 else 502,
                            created_at=moment + timedelta(minutes=i),
                        )
                    )
    server.run(server.services.usage.flush())


@pytest.fixture(scope="module")
def ops_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(_settings(tmp_path_factory.mktemp("admin-ops") / "data")) as server:
        yield server


@pytest.fixture(scope="module")
def traffic(ops_server: RunningServer) -> dict[str, Any]:
    """Two teams with history, real requests through the official client, and a budget that alerts."""
    server = ops_server
    with _admin(server) as admin:
        research_id, research_user, research_key = _team_key(admin, "research", "Ada Research")
        finance_id, finance_user, finance_key = _team_key(admin, "finance", "Fin Ance")
        _seed_history(server, [(research_id, research_user), (finance_id, finance_user)])
        requests = {
            "research": [_ask(server, research_key, "fake-chat") for _ in range(2)],
            "finance": [_ask(server, finance_key, "large-chat")],
        }
        # 350 µ€: each request reserves 120 µ€ (5 tokens at 24 €/M) and spends 96 µ€ (4 tokens): alerts at
        # 50 % and 80 % of the budget, then a refusal (budget exceeded).
        budget = {"scope": "team", "target": "finance", "period": "monthly", "limit_eur": "0.00035"}
        admin.post("/admin/budgets", json=budget).raise_for_status()
        for _ in range(10):
            try:
                _ask(server, finance_key, "large-chat")
            except openai.RateLimitError:
                break
        server.run(server.services.usage.flush())
        _wait(lambda: len(admin.get("/admin/alerts").json()["data"]) >= 3, "alerts")
    return {
        "requests": requests,
        "teams": {"research": research_id, "finance": finance_id},
        "keys": {"research": research_key, "finance": finance_key},
    }


def test_usage_page_charts_the_requests_by_team_and_model(
    page: Any, ops_server: RunningServer, traffic: dict[str, Any]
) -> None:
    with _admin(ops_server) as admin:
        today = datetime.now(UTC).date().isoformat()
        lines = admin.get("/usage", params={"group_by": "day,team", "since": today}).json()["data"]
        research = next(line for line in lines if line["team"] == traffic["teams"]["research"])
        assert research["requests"] == 2  # the two real requests, counted today
    login(page, ops_server, path="admin/usage")
    chart = page.get_by_test_id("usage-chart")
    image = chart.get_by_role("img")
    image.wait_for()
    summary = image.get_attribute("aria-label") or ""
    assert "research" in summary and "finance" in summary and "30 days" in summary, summary
    table = page.get_by_role("table", name="Over the period, by team")
    assert table.get_by_role("cell", name="research", exact=True).is_visible()
    docs_screenshot(page, "admin-usage")
    chart.get_by_text("Data table").click()
    data_table = chart.get_by_role("table")
    assert data_table.get_by_role("columnheader", name="finance").is_visible()

    page.get_by_label("Group by", exact=True).select_option("model")
    page.get_by_role("table", name="Over the period, by model").get_by_role(
        "cell", name="large-chat"
    ).wait_for()
    assert "fake-chat" in (image.get_attribute("aria-label") or "")
    page.get_by_label("Metric", exact=True).select_option("p95")
    assert page.get_by_label("Chart", exact=True).is_disabled()
    assert chart.locator("polyline").count() == 2  # one line per model
    page.get_by_label("Period", exact=True).select_option("7")
    _wait(lambda: "over 7 days" in (image.get_attribute("aria-label") or ""), "the 7-day chart")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    csv = Path(download.value.path()).read_text()
    assert csv.startswith("day,team,model,requests,errors") and traffic["teams"]["research"] in csv


def test_alerts_page_shows_budget_alerts_with_severity(
    page: Any, ops_server: RunningServer, traffic: dict[str, Any]
) -> None:
    login(page, ops_server, path="admin/alerts")
    table = page.get_by_role("table", name="Alerts")
    table.get_by_text("Budget threshold").first.wait_for()
    assert table.get_by_text("Critical").count() >= 1 and table.get_by_text("Info").count() >= 1
    assert table.get_by_text("80 % threshold").is_visible()
    docs_screenshot(page, "admin-alerts")
    page.get_by_label("Kind", exact=True).select_option("budget.exceeded")
    _wait(lambda: table.get_by_text("Budget threshold").count() == 0, "the kind filter")


def test_engines_page_shows_each_engine_healthy(page: Any, ops_server: RunningServer) -> None:
    with _admin(ops_server) as admin:
        _wait(
            lambda: all(e["checked_at"] for e in admin.get("/admin/engines").json()["data"]), "a health probe"
        )
    login(page, ops_server, path="admin/engines")
    page.get_by_text("3 of 4 healthy").wait_for()
    down = page.get_by_test_id("engine-eu-large-backup")
    assert down.get_by_text("Unhealthy", exact=True).is_visible()
    assert down.get_by_text("configured to fail").first.is_visible()
    for name, zone, model in (("fake-a", "on-prem", "fake-chat"), ("eu-large", "eu-sovereign", "large-chat")):
        card = page.get_by_test_id(f"engine-{name}")
        assert card.get_by_text("Healthy", exact=True).is_visible()
        assert (
            card.get_by_text(zone, exact=True).is_visible()
            and card.get_by_text(model, exact=True).is_visible()
        )
        assert card.get_by_text(f"fake:{name}").is_visible()
    assert page.get_by_text("not yet").count() == 0
    docs_screenshot(page, "admin-engines")
    page.get_by_role("button", name="Refresh").click()
    page.get_by_test_id("engine-fake-b").get_by_text("Healthy", exact=True).wait_for()


def test_audit_log_trace_and_verification(
    page: Any, ops_server: RunningServer, traffic: dict[str, Any]
) -> None:
    request_id = traffic["requests"]["finance"][0]
    login(page, ops_server, path="admin/audit")
    table = page.get_by_role("table", name="Log entries")
    table.get_by_text("admin.change").first.wait_for()
    docs_screenshot(page, "admin-audit")
    page.get_by_label("Type", exact=True).fill("inference.request")
    page.get_by_role("button", name="Filter", exact=True).click()
    _wait(lambda: table.get_by_text("admin.change").count() == 0, "the type filter")

    row = table.get_by_role("row").filter(has=page.get_by_role("link", name=f"Trace {request_id}"))
    row.get_by_role("button", name=re.compile("^Details")).click()
    dialog = page.get_by_role("dialog")
    assert request_id in dialog.locator("pre").inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    # Opened from an event...
    row.get_by_role("link", name=f"Trace {request_id}").click()
    trace = page.get_by_test_id("trace")
    assert trace.get_by_test_id("trace-model").inner_text() == "large-chat"
    assert trace.get_by_test_id("trace-engine").inner_text() == "eu-large"
    assert trace.get_by_test_id("trace-zone").inner_text() == "eu-sovereign"
    trace.get_by_text("Proofs checked in this browser").wait_for()
    assert trace.get_by_text("fake:eu-large").is_visible()
    docs_screenshot(page, "admin-trace")
    assert f"request={request_id}" in page.url

    # ... or by pasting a request id.
    page.get_by_role("button", name="Close the trace").click()
    other = traffic["requests"]["research"][0]
    page.get_by_label("Request id").fill(other)
    page.get_by_role("button", name="Open", exact=True).click()
    page.get_by_test_id("trace-model").get_by_text("fake-chat").wait_for()
    page.goto(f"{ops_server.url}/#/admin/audit?request=req_nothing")
    page.get_by_role("alert").get_by_text("No audit entry for request").wait_for()
    page.get_by_role("button", name="Close the trace").click()

    page.get_by_role("button", name="Verify the log").click()
    result = page.get_by_test_id("verify-result")
    result.get_by_text("Verified").wait_for()
    assert "signed checkpoint(s) verified" in result.inner_text()
    docs_screenshot(page, "admin-verify")


def _tamper(settings: Settings, seq: int) -> None:
    """Change one stored entry behind the log's back (the append-only triggers dropped first)."""
    engine = create_engine(sync_url(settings.sqlalchemy_url))
    try:
        with engine.begin() as connection:
            triggers = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(triggers):
                connection.execute(text(f"DROP TRIGGER {name}"))
            entry = bytes(
                connection.execute(
                    text("SELECT entry FROM audit_entries WHERE seq = :s"), {"s": seq}
                ).scalar_one()
            )
            changed = entry.replace(b'"large-chat"', b'"fake-chat"')
            assert changed != entry
            connection.execute(
                text("UPDATE audit_entries SET entry = :e WHERE seq = :s"), {"e": changed, "s": seq}
            )
    finally:
        engine.dispose()


def test_verification_names_the_tampered_entry(page: Any, tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data")
    with run_server(settings) as server:
        request_id = _ask(server, ADMIN_KEY, "large-chat")
        _ask(server, ADMIN_KEY, "fake-chat")
        with _admin(server) as admin:
            events = admin.get("/audit/events", params={"request_id": request_id}).json()["data"]
            seq = events[0]["seq"]
            server.run(server.services.audit.checkpoint(force=True))
            assert admin.post("/audit/verify").json()["ok"] is True
            _tamper(settings, seq)
            report = admin.post("/audit/verify").json()
            assert report["ok"] is False and report["first_bad_seq"] == seq
        login(page, server, path="admin/audit")
        page.get_by_role("button", name="Verify the log").click()
        result = page.get_by_role("alert").filter(has_text="Verification failed")
        result.wait_for()
        assert f"entry {seq}: its content does not match its stored leaf hash" in result.inner_text()
        assert f"First bad entry: {seq}" in result.inner_text()
        docs_screenshot(page, "admin-verify-failed")
        result.get_by_role("button", name="Show this entry").click()
        first = page.get_by_role("table", name="Log entries").get_by_role("row").nth(1)
        _wait(lambda: first.get_by_role("cell").first.inner_text() == str(seq), "the bad entry's page")


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_string_is_translated(
    page: Any, ops_server: RunningServer, traffic: dict[str, Any], language: str
) -> None:
    """A missing message shows as its key (``usage.metric.cost``): none may appear, in either language."""
    login(page, ops_server)
    page.get_by_label("Language").first.select_option(language)
    request_id = traffic["requests"]["finance"][0]
    for path, ready in (
        ("admin/usage", page.get_by_test_id("usage-chart")),
        ("admin/alerts", page.get_by_role("table")),
        ("admin/engines", page.get_by_test_id("engine-fake-a")),
        (f"admin/audit?request={request_id}", page.get_by_test_id("trace-proof")),
        (
            "admin/feedback",
            page.get_by_test_id("feedback-unavailable").or_(page.get_by_test_id("feedback-total")),
        ),
    ):
        page.goto(f"{ops_server.url}/#/{path}")
        ready.wait_for()
        _wait(lambda: page.locator("main .loading").count() == 0, f"{path} to load")
        page.locator("details").evaluate_all("nodes => nodes.forEach(n => n.open = true)")
        text = page.locator("main").inner_text()
        keys = re.findall(
            r"\b(?:usage|alerts|engines|audit|trace|chart|feedback)\.[a-z_]+(?:\.[a-z_]+)*\b", text
        )
        assert not [k for k in keys if k not in ("inference.request", "admin.change")], (path, keys)


def _rate(server: RunningServer, key: str, request_id: str, rating: str, comment: str | None = None) -> None:
    body = {"request_id": request_id, "rating": rating, "comment": comment}
    answer = httpx.post(server.api + "/feedback", json=body, headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text


def test_feedback_page_lists_ratings_and_links_to_traces(
    page: Any, ops_server: RunningServer, traffic: dict[str, Any]
) -> None:
    research, finance = traffic["requests"]["research"], traffic["requests"]["finance"]
    _rate(ops_server, traffic["keys"]["research"], research[0], "up", "Clear and sourced, thanks.")
    _rate(ops_server, traffic["keys"]["research"], research[1], "down", "The figures for 2023 are wrong.")
    _rate(ops_server, traffic["keys"]["finance"], finance[0], "up")

    login(page, ops_server, path="admin/feedback")
    table = page.get_by_role("table", name="User feedback")
    table.get_by_text("The figures for 2023 are wrong.").wait_for()
    assert page.get_by_test_id("feedback-total").get_by_text("3").is_visible()
    assert page.get_by_test_id("feedback-share").get_by_text("67%").is_visible()
    assert table.get_by_role("cell", name="research", exact=True).count() == 2
    assert table.get_by_role("cell", name="Ada Research").count() == 2
    docs_screenshot(page, "admin-feedback")

    page.get_by_label("Rating", exact=True).select_option("down")
    page.get_by_role("button", name="Filter", exact=True).click()
    _wait(lambda: table.get_by_role("row").count() == 2, "the rating filter")  # the header and one rating
    table.get_by_role("link", name=f"Trace of answer {research[1]}").click()
    page.get_by_test_id("trace-model").get_by_text("fake-chat").wait_for()
    assert f"request={research[1]}" in page.url


def test_feedback_page_says_when_the_api_is_missing(page: Any, ops_server: RunningServer) -> None:
    missing = {"error": {"message": "Not Found", "type": "invalid_request_error", "code": "not_found"}}
    page.route("**/v1/admin/feedback*", lambda route: route.fulfill(status=404, json=missing))
    login(page, ops_server, path="admin/feedback")
    page.get_by_test_id("feedback-unavailable").wait_for()
    assert page.get_by_role("table").count() == 0
