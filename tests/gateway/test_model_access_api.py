"""Model access end to end, on SQLite and PostgreSQL: grants through the admin API, enforcement at
admission (the official openai client sees a 403 naming the model), ``GET /v1/models`` filtered, and a
revocation reaching a second gateway sharing the database within ``governance_cache_s``."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import REPLICA_CACHE_S, fake_engines

CACHE_S = REPLICA_CACHE_S


def _client(server: RunningServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"authorization": f"Bearer {key}"}, timeout=30)


def _chat(client: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    return client.post("/chat/completions", json=body)


def _models(client: httpx.Client) -> list[str]:
    return [m["id"] for m in client.get("/models").json()["data"]]


def _team_with_keys(admin: httpx.Client, team: str) -> dict[str, str]:
    """Team ``team`` with a member key, a key limited to fake-chat, and a team-admin key."""
    assert admin.post("/admin/teams", json={"name": team}).status_code == 201
    keys = {}
    for role in ("member", "team-admin"):
        person = admin.post("/admin/principals", json={"kind": "user", "name": f"{team}-{role}"}).json()
        admin.post(f"/admin/teams/{team}/members", json={"principal_id": person["id"], "role": role})
        keys[role] = admin.post("/admin/keys", json={"principal_id": person["id"], "team": team}).json()[
            "key"
        ]
        if role == "member":
            body = {"principal_id": person["id"], "team": team, "allowed_models": ["fake-chat"]}
            keys["limited"] = admin.post("/admin/keys", json=body).json()["key"]
    return keys


def test_grants_restrict_models_and_the_key_list_intersects(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    server, _ = replicas
    with _client(server, server.admin_key) as admin:
        keys = _team_with_keys(admin, "research")
        with _client(server, keys["member"]) as member, _client(server, keys["limited"]) as limited:
            assert _models(member) == ["fake-chat", "slow-chat"]  # open by default
            assert _chat(member, "slow-chat").status_code == 200

            granted = admin.put("/admin/teams/admin/models/slow-chat")
            assert granted.status_code == 200 and granted.json()["model"] == "slow-chat"
            assert _models(member) == ["fake-chat"]  # slow-chat now belongs to the admin team only
            sdk = openai.OpenAI(base_url=server.api, api_key=keys["member"], max_retries=0)
            with pytest.raises(openai.PermissionDeniedError) as refused:
                sdk.chat.completions.create(model="slow-chat", messages=[{"role": "user", "content": "x"}])
            assert refused.value.code == "model_not_allowed"
            assert "Team 'research' may not use the model 'slow-chat'" in refused.value.message
            assert _chat(admin, "slow-chat").status_code == 200

            # Grants through an alias land on the canonical name; the key's own list still applies.
            assert admin.put("/admin/teams/admin/models/gpt-4o-mini").json()["model"] == "fake-chat"
            assert _models(member) == [] and _models(limited) == []
            assert _chat(limited, "fake-chat").json()["error"]["code"] == "model_not_allowed"
            assert admin.put("/admin/teams/research/models/fake-chat").status_code == 200
            assert admin.put("/admin/teams/research/models/slow-chat").status_code == 200
            assert _models(member) == ["fake-chat", "slow-chat"] and _models(limited) == ["fake-chat"]
            limited_refusal = _chat(limited, "slow-chat").json()["error"]
            assert limited_refusal["message"] == "Your key may not use the model 'slow-chat'."
            assert admin.put("/admin/teams/research/models/no-such-model").status_code == 404

        with _client(server, keys["team-admin"]) as team_admin:
            own = {m["model"]: m for m in team_admin.get("/admin/teams/research/models").json()["data"]}
            assert (
                own["fake-chat"]["allowed"] and own["fake-chat"]["granted"] and own["slow-chat"]["restricted"]
            )
            assert team_admin.get("/admin/teams/admin/models").json()["error"]["code"] == "other_team"
            widen = team_admin.put("/admin/teams/research/models/fake-chat")
            assert widen.status_code == 403 and widen.json()["error"]["code"] == "permission_denied"

        overview = {m["model"]: m for m in admin.get("/admin/model-access").json()["data"]}
        assert overview["fake-chat"]["restricted"] and len(overview["fake-chat"]["teams"]) == 2
        assert overview["fake-chat"]["default"] == "open"
        assert admin.delete("/admin/teams/admin/models/slow-chat").status_code == 200
        last = admin.delete("/admin/teams/research/models/slow-chat")
        assert last.status_code == 409 and last.json()["error"]["code"] == "last_grant"
        reopened = admin.delete("/admin/teams/research/models/slow-chat", params={"reopen": "true"})
        assert reopened.status_code == 200 and reopened.json()["restricted"] is False
        with _client(server, keys["member"]) as member:
            assert "slow-chat" in _models(member)


def test_a_revocation_reaches_the_other_gateway_within_the_cache_time(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    first, second = replicas
    with _client(first, first.admin_key) as admin:
        keys = _team_with_keys(admin, "research")
        assert admin.put("/admin/teams/admin/models/fake-chat").status_code == 200
        assert admin.put("/admin/teams/research/models/fake-chat").status_code == 200
    with _client(first, keys["member"]) as on_first, _client(second, keys["member"]) as on_second:
        assert _chat(on_second, "fake-chat").status_code == 200  # the second gateway caches the grants
        with _client(first, first.admin_key) as admin:
            assert admin.delete("/admin/teams/research/models/fake-chat").status_code == 200
        revoked = time.monotonic()
        assert _chat(on_first, "fake-chat").status_code == 403  # at once where it was revoked
        while _chat(on_second, "fake-chat").status_code == 200:
            assert time.monotonic() - revoked < CACHE_S + 1.0, "the revocation did not reach the replica"
            time.sleep(0.05)
        assert "fake-chat" not in _models(on_second)


def test_deny_by_default(make_settings: Any) -> None:
    settings = make_settings(model_access={"default": "deny"}, **fake_engines())
    with run_server(settings) as server, _client(server, server.admin_key) as admin:
        assert _models(admin) == []
        refused = _chat(admin, "fake-chat")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
        assert admin.put("/admin/teams/admin/models/fake-chat").status_code == 200
        assert _chat(admin, "fake-chat").status_code == 200 and _models(admin) == ["fake-chat"]
        revoked = admin.delete("/admin/teams/admin/models/fake-chat")  # no reopen needed under deny
        assert revoked.status_code == 200 and revoked.json()["restricted"] is True
        assert _chat(admin, "fake-chat").status_code == 403
