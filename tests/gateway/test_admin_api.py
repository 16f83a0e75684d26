"""The admin API end to end, on SQLite and PostgreSQL: teams, principals, bindings, keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
def server(make_settings: Any, database_url: str) -> Iterator[RunningServer]:
    with run_server(make_settings(database_url=database_url, **fake_engines())) as running:
        yield running


def _client(server: RunningServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/v1", headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_teams_principals_bindings_and_keys(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        team = admin.post("/admin/teams", json={"name": "research"})
        assert team.status_code == 201, team.text
        assert admin.post("/admin/teams", json={"name": "research"}).json()["error"]["code"] == "conflict"
        alice = admin.post(
            "/admin/principals", json={"kind": "user", "name": "Alice", "email": "a@x.eu"}
        ).json()
        bot = admin.post("/admin/principals", json={"kind": "service", "name": "ingest-bot"}).json()
        assert admin.post(
            "/admin/teams/research/members", json={"principal_id": alice["id"], "role": "team-admin"}
        )
        assert admin.post(
            "/admin/teams/research/members", json={"principal_id": bot["id"], "role": "service"}
        )
        members = admin.get("/admin/teams/research/members").json()["data"]
        assert {(m["principal_id"], m["role"]) for m in members} == {
            (alice["id"], "team-admin"),
            (bot["id"], "service"),
        }

        created = admin.post(
            "/admin/keys", json={"principal_id": alice["id"], "team": "research", "name": "laptop"}
        )
        assert created.status_code == 201
        alice_key = created.json()["key"]
        assert alice_key.startswith("sk-socle-")
        listed = admin.get("/admin/keys", params={"team": "research"}).json()["data"]
        assert [k["name"] for k in listed] == ["laptop"] and "key" not in listed[0]
        assert alice_key not in admin.get("/admin/keys").text

    with _client(server, alice_key) as alice_client:
        assert alice_client.post("/chat/completions", json=CHAT).status_code == 200
        bot_key = alice_client.post("/admin/keys", json={"principal_id": bot["id"]}).json()["key"]
        assert alice_client.get("/admin/teams").status_code == 403  # not an admin
        other = alice_client.post("/admin/keys", json={"team": "admin"})
        assert other.status_code == 403 and other.json()["error"]["code"] == "other_team"
        grant = alice_client.post(
            "/admin/teams/research/members", json={"principal_id": bot["id"], "role": "admin"}
        )
        assert grant.status_code == 403

    with _client(server, bot_key) as bot_client, _client(server, alice_key) as alice_client:
        assert bot_client.post("/chat/completions", json=CHAT).status_code == 200
        assert bot_client.get("/admin/keys").status_code == 403
        keys = alice_client.get("/admin/keys").json()["data"]
        bot_key_id = next(k["id"] for k in keys if k["principal_id"] == bot["id"])
        revoked = alice_client.delete(f"/admin/keys/{bot_key_id}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        refused = bot_client.post("/chat/completions", json=CHAT)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "api_key_revoked"


def test_separation_of_duties_and_disable(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        admin.post("/admin/teams", json={"name": "audit"})
        eve = admin.post("/admin/principals", json={"kind": "user", "name": "Eve"}).json()
        assert (
            admin.post(
                "/admin/teams/audit/members", json={"principal_id": eve["id"], "role": "auditor"}
            ).status_code
            == 201
        )
        clash = admin.post("/admin/teams/admin/members", json={"principal_id": eve["id"], "role": "admin"})
        assert clash.status_code == 400 and clash.json()["error"]["code"] == "incompatible_roles"
        unknown = admin.post("/admin/teams/audit/members", json={"principal_id": eve["id"], "role": "wizard"})
        assert unknown.status_code == 400
        key = admin.post("/admin/keys", json={"principal_id": eve["id"], "team": "audit"}).json()["key"]
        with _client(server, key) as eve_client:
            assert eve_client.get("/models").status_code == 403  # auditors use no models
            assert admin.delete(f"/admin/principals/{eve['id']}").json()["disabled_at"]
            assert eve_client.get("/models").json()["error"]["code"] == "principal_disabled"
        assert admin.delete("/admin/teams/audit").status_code == 409  # it still has a key
