"""Budgets and rate limits through the admin API, on SQLite and PostgreSQL: who may set what, and
that what is set is enforced at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.config import FakeEngineConfig, ModelRoute
from socle.testing.server import RunningServer, run_server

CHAT = {"model": "priced", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}


@pytest.fixture
def server(make_settings: Any, database_url: str) -> Iterator[RunningServer]:
    engines = [FakeEngineConfig(name="priced", reply="un deux trois", price_output_per_mtok=1_000_000.0)]
    settings = make_settings(
        database_url=database_url, engines=engines, models=[ModelRoute(name="priced", engines=["priced"])]
    )
    with run_server(settings) as running:
        yield running


def _client(server: RunningServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/v1", headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_team_budget_set_by_admin_is_enforced(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        admin.post("/admin/teams", json={"name": "research"})
        lead = admin.post("/admin/principals", json={"kind": "user", "name": "lead"}).json()
        admin.post("/admin/teams/research/members", json={"principal_id": lead["id"], "role": "team-admin"})
        key = admin.post("/admin/keys", json={"principal_id": lead["id"], "team": "research"}).json()
        # Each request reserves its worst case, 10 output tokens at 1 EUR each, and settles to 3 EUR (the
        # fake answers 3 words): a 25 EUR budget admits requests while spent + 10 <= 25, i.e. six.
        budget = admin.post(
            "/admin/budgets",
            json={"scope": "team", "target": "research", "period": "monthly", "limit_eur": "25"},
        )
        assert budget.status_code == 201, budget.text
        budget_id = budget.json()["budget"]["id"]

    with _client(server, key["key"]) as team:
        statuses = [team.post("/chat/completions", json=CHAT).status_code for _ in range(8)]
        assert statuses == [200] * 6 + [429] * 2
        refused = team.post("/chat/completions", json=CHAT)
        assert refused.json()["error"]["code"] == "insufficient_quota"
        raise_own = team.patch(f"/admin/budgets/{budget_id}", json={"limit_eur": "1000"})
        assert raise_own.status_code == 403 and raise_own.json()["error"]["code"] == "admin_only"
        listed = team.get("/admin/budgets").json()["data"]
        assert len(listed) == 1 and listed[0]["spent_eur"] == "18" and listed[0]["reserved_eur"] == "0"
        server.run(server.services.usage.flush())
        assert server.run(server.services.usage.totals()).cost_eur == 18  # usage records price as budgets do
        key_budget = team.post(
            "/admin/budgets",
            json={"scope": "key", "target": key["id"], "period": "daily", "limit_tokens": 1000},
        )
        assert key_budget.status_code == 201, key_budget.text

    with _client(server, server.admin_key) as admin:
        server.run(server.services.quotas.drain())
        server.run(server.services.alerts.drain())
        alerts = admin.get("/admin/alerts").json()["data"]
        kinds = sorted((a["kind"], a["threshold"]) for a in alerts)
        assert kinds == [("budget.exceeded", 100), ("budget.threshold", 50)], kinds  # 18 of 25 EUR is 72 %
        assert all(a["delivered_to"] == ["log"] for a in alerts)
        assert admin.patch(f"/admin/budgets/{budget_id}", json={"limit_eur": "1000"}).status_code == 200
    with _client(server, key["key"]) as team:
        assert team.post("/chat/completions", json=CHAT).status_code == 200


def test_rate_limit_set_by_admin_is_enforced(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        created = admin.post(
            "/admin/limits", json={"scope": "model", "target": "priced", "requests_per_minute": 2}
        )
        assert created.status_code == 201, created.text
        statuses = [admin.post("/chat/completions", json=CHAT).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = admin.post("/chat/completions", json=CHAT)
        assert limited.json()["error"]["code"] == "rate_limit_exceeded" and "retry-after" in limited.headers
        assert admin.delete(f"/admin/limits/{created.json()['id']}").status_code == 200
        assert admin.post("/chat/completions", json=CHAT).status_code == 200


def test_team_and_model_limit_through_the_api(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        admin.post("/admin/teams", json={"name": "research"})
        lead = admin.post("/admin/principals", json={"kind": "user", "name": "lead"}).json()
        admin.post("/admin/teams/research/members", json={"principal_id": lead["id"], "role": "team-admin"})
        key = admin.post("/admin/keys", json={"principal_id": lead["id"], "team": "research"}).json()["key"]
        bad = admin.post(
            "/admin/limits", json={"scope": "team_model", "target": "research", "requests_per_minute": 1}
        )
        assert bad.status_code == 400
        unknown = admin.post(
            "/admin/limits", json={"scope": "team_model", "target": "research:nope", "requests_per_minute": 1}
        )
        assert unknown.status_code == 404
        created = admin.post(
            "/admin/limits",
            json={"scope": "team_model", "target": "research:priced", "requests_per_minute": 1},
        )
        assert created.status_code == 201, created.text
        limit = created.json()
        assert limit["scope_id"].endswith(":priced")
    with _client(server, key) as team:
        assert team.post("/chat/completions", json=CHAT).status_code == 200
        refused = team.post("/chat/completions", json=CHAT)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert "on team research on model priced" in refused.json()["error"]["message"]
        assert [x["id"] for x in team.get("/admin/limits").json()["data"]] == [limit["id"]]  # their team's
        raise_own = team.patch(f"/admin/limits/{limit['id']}", json={"requests_per_minute": 100})
        assert raise_own.status_code == 403 and raise_own.json()["error"]["code"] == "admin_only"
        own = team.post(
            "/admin/limits",
            json={"scope": "team_model", "target": "research:priced", "requests_per_minute": 9},
        )
        assert own.status_code == 403
    with _client(server, server.admin_key) as admin:
        assert admin.post("/chat/completions", json=CHAT).status_code == 200  # the admin team is not limited
        changed = admin.patch(f"/admin/limits/{limit['id']}", json={"requests_per_minute": 100})
        assert changed.status_code == 200 and changed.json()["requests_per_minute"] == 100
        dropped = admin.patch(f"/admin/limits/{limit['id']}", json={"requests_per_minute": None})
        assert dropped.status_code == 400  # a limit needs one kind
    with _client(server, key) as team:
        assert team.post("/chat/completions", json=CHAT).status_code == 200
