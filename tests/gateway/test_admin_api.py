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


def test_organisations(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        assert [o["name"] for o in admin.get("/admin/organisations").json()["data"]] == ["default"]
        acme = admin.post("/admin/organisations", json={"name": "acme"})
        assert acme.status_code == 201, acme.text
        acme_id = acme.json()["id"]
        assert admin.post("/admin/organisations", json={"name": "acme"}).status_code == 409
        assert admin.get("/admin/organisations/acme").json()["id"] == acme_id
        assert admin.get(f"/admin/organisations/{acme_id}").json()["name"] == "acme"
        assert admin.get("/admin/organisations/nope").json()["error"]["code"] == "organisation_not_found"

        # Teams belong to an organisation: the caller's by default, or the one named.
        team = admin.post("/admin/teams", json={"name": "research", "org": "acme"}).json()
        assert team["org_id"] == acme_id
        home = admin.post("/admin/teams", json={"name": "research"}).json()  # same name, default org
        assert home["org_id"] != acme_id
        ambiguous = admin.get("/admin/teams/research/members")
        assert ambiguous.status_code == 400 and ambiguous.json()["error"]["code"] == "ambiguous_team"
        assert [t["id"] for t in admin.get("/admin/teams", params={"org": "acme"}).json()["data"]] == [
            team["id"]
        ]
        assert admin.post("/admin/teams", json={"name": "x", "org": "nope"}).status_code == 404

        # Principals too, and they may only be bound to teams of their own organisation.
        carol = admin.post("/admin/principals", json={"kind": "user", "name": "Carol", "org": "acme"}).json()
        assert carol["org_id"] == acme_id
        cross = admin.post(
            f"/admin/teams/{home['id']}/members", json={"principal_id": carol["id"], "role": "member"}
        )
        assert cross.status_code == 400 and cross.json()["error"]["code"] == "other_organisation"
        bound = admin.post(
            f"/admin/teams/{team['id']}/members", json={"principal_id": carol["id"], "role": "member"}
        )
        assert bound.status_code == 201
        listed = admin.get("/admin/principals", params={"org": "acme"}).json()["data"]
        assert [p["name"] for p in listed] == ["Carol"]

        # An organisation budget may name its organisation.
        budget = admin.post(
            "/admin/budgets",
            json={"scope": "organisation", "target": "acme", "period": "monthly", "limit_eur": "10"},
        )
        assert budget.status_code == 201 and budget.json()["budget"]["scope_id"] == acme_id

        renamed = admin.patch("/admin/organisations/acme", json={"name": "acme-eu"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "acme-eu"
        in_use = admin.delete("/admin/organisations/acme-eu")
        assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "organisation_in_use"
        assert "1 team(s)" in in_use.json()["error"]["message"]
        assert admin.delete(f"/admin/teams/{team['id']}").status_code == 200
        assert admin.delete("/admin/organisations/acme-eu").status_code == 409  # Carol is still in it
        empty = admin.post("/admin/organisations", json={"name": "empty"}).json()
        assert admin.delete("/admin/organisations/empty").json() == {
            "deleted": True,
            "id": empty["id"],
            "name": "empty",
        }
        assert admin.get("/admin/organisations/empty").status_code == 404


def test_updates_of_teams_principals_and_keys(server: RunningServer) -> None:
    with _client(server, server.admin_key) as admin:
        admin.post("/admin/teams", json={"name": "research"})
        renamed = admin.patch("/admin/teams/research", json={"name": "labs"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "labs"
        assert admin.get("/admin/teams/labs").json()["id"] == renamed.json()["id"]
        assert admin.patch("/admin/teams/labs", json={"name": "admin"}).status_code == 409

        bob = admin.post("/admin/principals", json={"kind": "user", "name": "Bob", "email": "b@x.eu"}).json()
        admin.post("/admin/teams/labs/members", json={"principal_id": bob["id"], "role": "member"})
        shown = admin.get(f"/admin/principals/{bob['id']}").json()
        assert shown["email"] == "b@x.eu" and [b["role"] for b in shown["bindings"]] == ["member"]
        changed = admin.patch(f"/admin/principals/{bob['id']}", json={"name": "Robert", "email": ""}).json()
        assert (changed["name"], changed["email"]) == ("Robert", None)

        created = admin.post(
            "/admin/keys", json={"principal_id": bob["id"], "team": "labs", "name": "k"}
        ).json()
        with _client(server, created["key"]) as bob_client:
            assert bob_client.post("/chat/completions", json=CHAT).status_code == 200
            limited = admin.patch(
                f"/admin/keys/{created['id']}", json={"allowed_models": ["slow-chat"], "name": "k2"}
            )
            assert limited.status_code == 200 and limited.json()["allowed_models"] == ["slow-chat"]
            assert limited.json()["name"] == "k2" and "key" not in limited.json()
            refused = bob_client.post("/chat/completions", json=CHAT)  # applies at the next request
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
            lifted = admin.patch(f"/admin/keys/{created['id']}", json={"allowed_models": None})
            assert lifted.json()["allowed_models"] is None
            assert (
                admin.patch(
                    f"/admin/keys/{created['id']}", json={"expires_at": "2000-01-01T00:00:00Z"}
                ).status_code
                == 400
            )
            assert admin.get(f"/admin/keys/{created['id']}").json()["name"] == "k2"

            assert admin.patch(f"/admin/principals/{bob['id']}", json={"disabled": True}).json()[
                "disabled_at"
            ]
            assert bob_client.post("/chat/completions", json=CHAT).status_code == 401
            assert (
                admin.patch(f"/admin/principals/{bob['id']}", json={"disabled": False}).json()["disabled_at"]
                is None
            )
            assert bob_client.post("/chat/completions", json=CHAT).status_code == 200

        # A team admin manages the keys of their own team only.
        lead = admin.post("/admin/principals", json={"kind": "user", "name": "Lead"}).json()
        admin.post("/admin/teams/labs/members", json={"principal_id": lead["id"], "role": "team-admin"})
        lead_key = admin.post("/admin/keys", json={"principal_id": lead["id"], "team": "labs"}).json()["key"]
        admin_key_id = admin.get("/admin/keys", params={"team": "admin"}).json()["data"][0]["id"]
    with _client(server, lead_key) as lead_client:
        assert lead_client.get(f"/admin/keys/{created['id']}").status_code == 200
        assert lead_client.get("/admin/teams/labs").status_code == 200
        assert lead_client.get("/admin/teams/admin").json()["error"]["code"] == "other_team"
        for method in ("GET", "PATCH", "DELETE"):
            response = lead_client.request(
                method, f"/admin/keys/{admin_key_id}", json={} if method == "PATCH" else None
            )
            assert response.status_code == 404, (method, response.text)
        assert lead_client.patch("/admin/teams/labs", json={"name": "mine"}).status_code == 403


def test_listings_carry_member_counts_bindings_and_member_names(server: RunningServer) -> None:
    """What the console's lists show without one request per row."""
    with _client(server, server.admin_key) as admin:
        team = admin.post("/admin/teams", json={"name": "labs"}).json()
        ann = admin.post("/admin/principals", json={"kind": "user", "name": "Ann"}).json()
        bot = admin.post("/admin/principals", json={"kind": "service", "name": "bot"}).json()
        for principal, role in ((ann, "team-admin"), (ann, "member"), (bot, "service")):
            bound = admin.post(
                "/admin/teams/labs/members", json={"principal_id": principal["id"], "role": role}
            )
            assert bound.status_code == 201, bound.text
        teams = {t["name"]: t for t in admin.get("/admin/teams").json()["data"]}
        assert teams["labs"]["members"] == 2 and teams["admin"]["members"] == 1
        assert admin.post("/admin/teams", json={"name": "empty"}).json()["id"]
        assert {t["name"]: t["members"] for t in admin.get("/admin/teams").json()["data"]}["empty"] == 0
        principals = {p["name"]: p for p in admin.get("/admin/principals").json()["data"]}
        assert sorted(b["role"] for b in principals["Ann"]["bindings"]) == ["member", "team-admin"]
        assert principals["bot"]["bindings"] == [{"team_id": team["id"], "role": "service"}]
        admin.delete(f"/admin/principals/{bot['id']}")
        ann_key = admin.post("/admin/keys", json={"principal_id": ann["id"], "team": "labs"}).json()["key"]
    with _client(server, ann_key) as ann_client:  # a team admin, who may not list principals
        members = ann_client.get("/admin/teams/labs/members").json()["data"]
        named = {
            (m["principal_name"], m["principal_kind"], m["role"], m["principal_disabled"]) for m in members
        }
        assert named == {
            ("Ann", "user", "team-admin", False),
            ("Ann", "user", "member", False),
            ("bot", "service", "service", True),
        }
