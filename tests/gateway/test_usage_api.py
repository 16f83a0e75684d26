"""GET /v1/usage on SQLite and PostgreSQL: sums per group, scoped by role, JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "un deux trois"}]}


@pytest.fixture
def server(make_settings: Any, database_url: str) -> Iterator[RunningServer]:
    with run_server(make_settings(database_url=database_url, **fake_engines())) as running:
        yield running


def _client(server: RunningServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/v1", headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_usage_is_summed_and_scoped(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        admin.post("/admin/teams", json={"name": "research"})
        keys = {}
        for role in ("member", "team-admin"):
            created = admin.post("/admin/principals", json={"kind": "user", "name": role}).json()
            admin.post("/admin/teams/research/members", json={"principal_id": created["id"], "role": role})
            keys[role] = admin.post(
                "/admin/keys", json={"principal_id": created["id"], "team": "research"}
            ).json()
        for _ in range(2):
            assert admin.post("/chat/completions", json=CHAT).status_code == 200
        with (
            _client(server, keys["member"]["key"]) as member,
            _client(server, keys["team-admin"]["key"]) as lead,
        ):
            for _ in range(3):
                assert member.post("/chat/completions", json=CHAT).status_code == 200
            assert lead.post("/chat/completions", json=CHAT).status_code == 200
            server.run(server.services.usage.flush())

            everything = admin.get("/usage", params={"group_by": "team"}).json()["data"]
            assert sorted(line["requests"] for line in everything) == [2, 4]
            own = member.get("/usage", params={"group_by": "model"}).json()["data"]
            assert own == [
                {
                    "model": "fake-chat",
                    "requests": 3,
                    "errors": 0,
                    "prompt_tokens": 9,
                    "completion_tokens": 18,
                    "cost_eur": own[0]["cost_eur"],
                    "max_latency_ms": own[0]["max_latency_ms"],
                }
            ]
            team = lead.get("/usage", params={"group_by": "principal"}).json()["data"]
            assert sorted(line["requests"] for line in team) == [1, 3]
            assert lead.get("/usage", params={"team": "admin"}).status_code == 400
            table = list(csv.DictReader(io.StringIO(admin.get("/usage", params={"format": "csv"}).text)))
            assert table[0]["model"] == "fake-chat" and sum(int(r["requests"]) for r in table) == 6
            assert admin.get("/usage", params={"group_by": "colour"}).status_code == 400
