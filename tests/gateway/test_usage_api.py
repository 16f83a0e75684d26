"""GET /v1/usage on SQLite and PostgreSQL: sums per group, scoped by role, JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines
from tests.observability.test_usage import usage

CONTRACT = ("model", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_eur", "max_latency_ms")
"""The fields of a line since the first version of the API (later ones only add fields)."""
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
            assert [{k: line[k] for k in CONTRACT} for line in own] == [
                {
                    "model": "fake-chat",
                    "requests": 3,
                    "errors": 0,
                    "prompt_tokens": 9,
                    "completion_tokens": 18,
                    "cost_eur": "0",
                    "max_latency_ms": own[0]["max_latency_ms"],
                }
            ]
            assert own[0]["max_latency_ms"] > 0 and own[0]["p95_latency_ms"] <= own[0]["max_latency_ms"]
            team = lead.get("/usage", params={"group_by": "principal"}).json()["data"]
            assert sorted(line["requests"] for line in team) == [1, 3]
            assert lead.get("/usage", params={"team": "admin"}).status_code == 400
            table = list(csv.DictReader(io.StringIO(admin.get("/usage", params={"format": "csv"}).text)))
            assert table[0]["model"] == "fake-chat" and sum(int(r["requests"]) for r in table) == 6
            assert admin.get("/usage", params={"group_by": "colour"}).status_code == 400


def test_daily_series_for_charts_with_p95(server: RunningServer) -> None:
    """Sums per day, team and model, as the console charts them, from records of known latencies."""
    day = datetime(2026, 5, 4, tzinfo=UTC)
    for i in range(200):
        server.services.usage.record(
            usage(
                team_id="team-" + "ab"[i % 2],
                model="m1",
                latency_ms=float(i % 100 + 1),  # 1..100 ms, twice for each team
                status_code=500 if i < 10 else 200,
                cost_eur=Decimal("0.000001"),
                ttft_ms=5.0,
                created_at=day + timedelta(hours=i % 24, days=i % 3),
            )
        )
    server.run(server.services.usage.flush())
    params = {"group_by": "day,team,model", "since": "2026-05-04", "until": "2026-05-06"}  # two days
    with _client(server, server.admin_key) as admin:
        body = admin.get("/usage", params=params).json()
        assert (body["since"], body["until"]) == ("2026-05-04T00:00:00+00:00", "2026-05-06T00:00:00+00:00")
        series = body["data"]
        assert [(x["day"], x["team"]) for x in series] == [
            ("2026-05-04", "team-a"),
            ("2026-05-04", "team-b"),
            ("2026-05-05", "team-a"),
            ("2026-05-05", "team-b"),
        ]
        assert sum(x["requests"] for x in series) == 134  # days 0 and 1 of i % 3
        assert sum(x["errors"] for x in series) == 7  # i < 10 on those days: 0, 1, 3, 4, 6, 7, 9
        assert all(x["cost_nano_eur"] == 1000 * x["requests"] for x in series)
        assert all(x["avg_ttft_ms"] == 5.0 for x in series)
        whole = admin.get("/usage", params={**params, "group_by": "model"}).json()["data"]
        p95 = whole[0]["p95_latency_ms"]
        assert 95 / 2**0.5 <= p95 <= 100  # the histogram's bucket of the true P95 (95 ms); never above max
        assert whole[0]["max_latency_ms"] == 100.0
        assert whole[0]["avg_latency_ms"] == pytest.approx(50.5, abs=1.5)
        rows = list(csv.DictReader(io.StringIO(admin.get("/usage", params={**params, "format": "csv"}).text)))
        assert len(rows) == 4 and rows[0]["p95_latency_ms"] and rows[0]["day"] == "2026-05-04"
        a_time = admin.get("/usage", params={**params, "since": "2026-05-05T13:00:00Z"}).json()
        assert a_time["since"] == "2026-05-05T00:00:00+00:00"  # sums cover whole days


def test_records_are_listed_page_by_page_and_scoped(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        admin.post("/admin/teams", json={"name": "research"})
        created = admin.post("/admin/principals", json={"kind": "user", "name": "ann"}).json()
        admin.post("/admin/teams/research/members", json={"principal_id": created["id"], "role": "member"})
        key = admin.post("/admin/keys", json={"principal_id": created["id"], "team": "research"}).json()
        ids = [admin.post("/chat/completions", json=CHAT).headers["x-request-id"] for _ in range(5)]
        with _client(server, key["key"]) as member:
            own = [member.post("/chat/completions", json=CHAT).headers["x-request-id"] for _ in range(2)]
            server.run(server.services.usage.flush())
            seen, cursor = [], None
            while True:
                page = admin.get(
                    "/usage/records", params={"limit": 3, **({"cursor": cursor} if cursor else {})}
                )
                body = page.json()
                assert len(body["data"]) <= 3 and body["has_more"] == (body["next_cursor"] is not None)
                seen += [r["request_id"] for r in body["data"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert seen == list(reversed(ids + own))  # every record once, newest first
            mine = member.get("/usage/records").json()["data"]
            assert [r["request_id"] for r in mine] == list(reversed(own))
            assert mine[0]["principal_id"] == created["id"] and mine[0]["status_code"] == 200
            assert member.get("/usage/records", params={"principal": "someone-else"}).status_code == 400
            exported = member.get("/usage/records", params={"format": "csv", "limit": 1})
            assert exported.headers["x-next-cursor"]
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert [r["request_id"] for r in rows] == [own[-1]]
        assert admin.get("/usage/records", params={"cursor": "not a cursor"}).status_code == 400
        team_only = admin.get("/usage/records", params={"team": "research"}).json()["data"]
        assert [r["request_id"] for r in team_only] == list(reversed(own))
