"""Admin changes through the real API are audited: one ``admin.change`` entry per successful change, with
the actor, operation, object and states before and after (never a key's secret); denied and invalid
requests change nothing and record no change; the log still verifies; an audit outage refuses changes.
On SQLite and PostgreSQL (the module runs once per backend)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.testing.server import RunningServer
from tests.conftest import ADMIN_KEY
from tests.gateway.audit_support import audit_table_away, audited_server, mutating_routes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[RunningServer]:
    with audited_server(tmp_path_factory.mktemp("admin-audit"), module_database_url) as running:
        yield running


@pytest.fixture(scope="module")
def ids(server: RunningServer) -> dict[str, str]:
    """The bootstrap admin's principal id, and an auditor's key (in team 'audit')."""

    async def make() -> dict[str, str]:
        services = server.services
        admin = await services.keys.authenticate(ADMIN_KEY)
        team = await services.directory.create_team(admin.org_id, "audit")
        auditor = await services.directory.create_principal(admin.org_id, "user", "auditor")
        await services.directory.bind(admin.org_id, team.id, auditor.id, "auditor")
        key, _ = await services.keys.create_key(auditor.id, team.id, "auditor key")
        return {"admin": admin.principal_id, "admin_team": admin.team_id, "auditor": key}

    return server.run(make())


def _admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_KEY}"})


def _changes(server: RunningServer, ids: dict[str, str], response: httpx.Response) -> list[dict[str, Any]]:
    """The admin.change entries recorded for the request that gave ``response``."""
    request_id = response.headers["x-request-id"]
    found: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"type": "admin.change", "limit": 1000}
        if after is not None:
            params["after"] = after
        page = httpx.get(
            server.url + "/v1/audit/events",
            headers={"authorization": f"Bearer {ids['auditor']}"},
            params=params,
        ).json()
        found += [e["entry"] for e in page["data"] if e["entry"]["request_id"] == request_id]
        if not page["has_more"]:
            return found
        after = page["next_after"]


def _one(
    server: RunningServer, ids: dict[str, str], response: httpx.Response, operation: str
) -> dict[str, Any]:
    assert response.is_success, response.text
    entries = _changes(server, ids, response)
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["type"] == "admin.change" and entry["actor"] == ids["admin"]
    assert entry["data"]["operation"] == operation
    return entry


def test_teams_and_organisations(server: RunningServer, ids: dict[str, str]) -> None:
    with _admin(server) as admin:
        created = admin.post("/v1/admin/teams", json={"name": "alpha"})
        team = created.json()
        entry = _one(server, ids, created, "team.create")
        assert entry["team"] == team["id"]
        data = entry["data"]
        assert (data["object_type"], data["object_id"], data["before"]) == ("team", team["id"], None)
        assert data["after"]["name"] == "alpha" and data["after"]["id"] == team["id"]

        renamed = admin.patch(f"/v1/admin/teams/{team['id']}", json={"name": "beta"})
        data = _one(server, ids, renamed, "team.update")["data"]
        assert data["before"]["name"] == "alpha" and data["after"]["name"] == "beta"

        deleted = admin.delete(f"/v1/admin/teams/{team['id']}")
        data = _one(server, ids, deleted, "team.delete")["data"]
        assert data["before"]["name"] == "beta" and data["after"] is None and data["object_id"] == team["id"]

        org = admin.post("/v1/admin/organisations", json={"name": "Acme"})
        data = _one(server, ids, org, "organisation.create")["data"]
        assert data["object_type"] == "organisation" and data["after"]["name"] == "Acme"
        assert data["object_id"] == org.json()["id"]


def test_keys_bindings_and_principals(server: RunningServer, ids: dict[str, str]) -> None:
    with _admin(server) as admin:
        team = admin.post("/v1/admin/teams", json={"name": "keys-team"}).json()
        user = admin.post("/v1/admin/principals", json={"kind": "user", "name": "kim"})
        principal = user.json()
        assert _one(server, ids, user, "principal.create")["data"]["after"]["name"] == "kim"

        bound = admin.post(
            f"/v1/admin/teams/{team['id']}/members", json={"principal_id": principal["id"], "role": "member"}
        )
        entry = _one(server, ids, bound, "binding.create")
        assert entry["team"] == team["id"] and entry["data"]["after"]["role"] == "member"
        assert entry["data"]["after"]["principal_id"] == principal["id"]

        created = admin.post(
            "/v1/admin/keys", json={"principal_id": principal["id"], "team": team["id"], "name": "ci"}
        )
        key = created.json()
        secret = key["key"]
        entry = _one(server, ids, created, "key.create")
        assert secret not in str(entry) and "key" not in entry["data"]["after"]
        assert entry["team"] == team["id"] and entry["data"]["object_id"] == key["id"]
        assert entry["data"]["after"]["prefix"] == key["prefix"] and entry["data"]["after"]["name"] == "ci"

        revoked = admin.delete(f"/v1/admin/keys/{key['id']}")
        data = _one(server, ids, revoked, "key.revoke")["data"]
        assert data["before"]["revoked_at"] is None and data["after"]["revoked_at"] is not None
        assert secret not in str(data)

        unbound = admin.delete(f"/v1/admin/teams/{team['id']}/members/{principal['id']}/member")
        data = _one(server, ids, unbound, "binding.delete")["data"]
        assert data["before"]["role"] == "member" and data["after"] is None


def test_budgets_limits_and_model_access(server: RunningServer, ids: dict[str, str]) -> None:
    with _admin(server) as admin:
        team = admin.post("/v1/admin/teams", json={"name": "quota-team"}).json()
        created = admin.post(
            "/v1/admin/budgets",
            json={"scope": "team", "target": team["id"], "period": "monthly", "limit_eur": "10.5"},
        )
        budget = created.json()["budget"]
        entry = _one(server, ids, created, "budget.create")
        data = entry["data"]
        assert (data["object_type"], data["object_id"]) == ("budget", budget["id"])
        assert data["after"]["limit_eur"] == "10.5" and data["after"]["scope_id"] == team["id"]

        updated = admin.patch(f"/v1/admin/budgets/{budget['id']}", json={"limit_eur": "20"})
        data = _one(server, ids, updated, "budget.update")["data"]
        assert data["before"]["limit_eur"] == "10.5" and data["after"]["limit_eur"] == "20"

        limit = admin.post(
            "/v1/admin/limits", json={"scope": "team", "target": team["id"], "requests_per_minute": 60}
        )
        data = _one(server, ids, limit, "limit.create")["data"]
        assert data["object_id"] == limit.json()["id"] and data["after"]["requests_per_minute"] == 60

        granted = admin.put(f"/v1/admin/teams/{team['id']}/models/fake-chat")
        entry = _one(server, ids, granted, "grant.create")
        assert entry["team"] == team["id"] and entry["data"]["object_id"] == f"{team['id']}:fake-chat"
        assert team["id"] not in entry["data"]["before"]["teams"]
        assert team["id"] in entry["data"]["after"]["teams"]

        revoked = admin.delete(f"/v1/admin/teams/{team['id']}/models/fake-chat", params={"reopen": True})
        data = _one(server, ids, revoked, "grant.delete")["data"]
        assert team["id"] in data["before"]["teams"] and team["id"] not in data["after"]["teams"]


def test_guardrail_policies(server: RunningServer, ids: dict[str, str]) -> None:
    rules = [{"match": "EMAIL_ADDRESS", "action": "block"}]
    with _admin(server) as admin:
        team = admin.post("/v1/admin/teams", json={"name": "guarded-team"}).json()
        stored = admin.put(f"/v1/admin/teams/{team['id']}/guardrails", json={"rules": rules})
        entry = _one(server, ids, stored, "guardrail_policy.update")
        data = entry["data"]
        assert entry["team"] == team["id"] and data["object_id"] == team["id"]
        assert data["before"]["source"] == "settings" and data["after"]["version"] == 1
        assert data["after"]["policy"]["rules"][0]["match"] == "EMAIL_ADDRESS"
        reset = admin.delete(f"/v1/admin/teams/{team['id']}/guardrails")
        data = _one(server, ids, reset, "guardrail_policy.reset")["data"]
        assert data["before"]["source"] == "stored" and data["after"]["source"] == "settings"
        invalid = admin.put(
            f"/v1/admin/teams/{team['id']}/guardrails", json={"rules": [{"match": "NAMES", "action": "log"}]}
        )
        assert invalid.status_code == 400 and _changes(server, ids, invalid) == []


def test_denied_and_invalid_changes_record_no_change(server: RunningServer, ids: dict[str, str]) -> None:
    auditor = {"authorization": f"Bearer {ids['auditor']}"}
    denied = httpx.post(server.url + "/v1/admin/teams", headers=auditor, json={"name": "nope"})
    assert denied.status_code == 403
    assert _changes(server, ids, denied) == []
    events = httpx.get(
        server.url + "/v1/audit/events", headers=auditor, params={"type": "access.denied", "limit": 1000}
    ).json()["data"]
    assert any(e["entry"]["request_id"] == denied.headers["x-request-id"] for e in events)
    with _admin(server) as admin:
        invalid = admin.post("/v1/admin/teams", json={"name": ""})
        assert invalid.status_code == 400
        assert _changes(server, ids, invalid) == []
        missing = admin.patch("/v1/admin/budgets/no-such-budget", json={"limit_eur": "1"})
        assert missing.status_code == 404 and _changes(server, ids, missing) == []


def test_the_log_still_verifies(server: RunningServer, ids: dict[str, str]) -> None:
    with _admin(server) as admin:
        assert admin.post("/v1/admin/teams", json={"name": "verified"}).status_code == 201
    report = httpx.post(
        server.url + "/v1/audit/verify", headers={"authorization": f"Bearer {ids['auditor']}"}
    )
    assert report.json()["ok"], report.json()


def test_an_audit_outage_refuses_admin_changes(server: RunningServer, ids: dict[str, str]) -> None:
    with audit_table_away(server), _admin(server) as admin:
        refused = admin.post("/v1/admin/teams", json={"name": "unaudited"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "audit_unavailable"
        again = admin.post("/v1/admin/teams", json={"name": "unaudited-2"})
        assert again.status_code == 503
    names = {t.name for t in server.run(server.services.directory.list_teams(None))}
    assert "unaudited-2" not in names  # refused before any change once the log is known unwritable


def test_changes_resume_after_the_outage(server: RunningServer, ids: dict[str, str]) -> None:
    """Once the log can be written again, changes are made and recorded again."""
    deadline = time.monotonic() + 10
    with _admin(server) as admin:
        while True:
            response = admin.post("/v1/admin/teams", json={"name": f"back-{time.monotonic_ns()}"})
            if response.status_code == 201:
                break
            assert response.status_code == 503 and time.monotonic() < deadline, response.text
            time.sleep(0.1)
    _one(server, ids, response, "team.create")


def test_every_mutating_admin_route_records_its_change() -> None:
    """A new POST/PUT/PATCH/DELETE under /v1/admin must take the AdminAudit dependency."""
    routes = mutating_routes("/v1/admin")
    assert [route for route, records in routes.items() if not records] == []
    assert len(routes) >= 20
