"""The administration commands against a real server: every group creates, lists, shows, updates and
deletes what the admin API does, with ``--json`` (the commands run in-process; the server is real)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from socle.cli import cli
from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines

Run = Callable[..., Any]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from socle.config import load_settings
    from tests.conftest import ADMIN_KEY

    settings = load_settings(
        None,
        environ={},
        data_dir=tmp_path_factory.mktemp("cli-admin"),
        admin_key=ADMIN_KEY,
        port=0,
        **fake_engines(),
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture
def socle(server: RunningServer) -> Run:
    """Run ``socle ARGS --json`` against the server (as admin unless ``key``); return the parsed JSON."""
    runner = CliRunner()

    def run(*args: str, key: str | None = None, ok: bool = True) -> Any:
        result = runner.invoke(cli, [*args, "--json", "--url", server.url, "--key", key or server.admin_key])
        if not ok:
            assert result.exit_code != 0, result.output
            return result.output
        assert result.exit_code == 0, result.output
        return orjson.loads(result.output)

    return run


def test_organisations_and_teams(socle: Run) -> None:
    org = socle("orgs", "create", "acme")
    assert socle("orgs", "show", "acme")["id"] == org["id"]
    assert "acme" in [o["name"] for o in socle("orgs", "list")["data"]]
    team = socle("teams", "create", "research", "--org", "acme", "--budget-eur", "50", "--period", "monthly")
    assert team["org_id"] == org["id"] and team["budget"]["budget"]["limit_eur"] == "50"
    assert "HTTP 409" in socle("orgs", "delete", "acme", ok=False)
    assert socle("teams", "show", team["id"])["name"] == "research"
    assert socle("teams", "update", team["id"], "--name", "labs")["name"] == "labs"
    assert [t["name"] for t in socle("teams", "list", "--org", "acme")["data"]] == ["labs"]
    assert socle("teams", "delete", team["id"])["deleted"] is True
    assert socle("orgs", "update", "acme", "--name", "acme-eu")["name"] == "acme-eu"
    assert socle("orgs", "delete", "acme-eu")["deleted"] is True


def test_the_issue_examples_users_keys_and_bindings(socle: Run, server: RunningServer) -> None:
    socle("teams", "create", "sales", "--budget-eur", "50", "--period", "monthly")
    created = socle("keys", "create", "--team", "sales", "--role", "member")
    assert created["key"].startswith("sk-socle-")
    shown = socle("budgets", "show", "--team", "sales")["data"]
    assert shown[0]["budget"]["limit_eur"] == "50" and shown[0]["budget"]["period"] == "monthly"
    budget_id = shown[0]["budget"]["id"]
    assert (
        socle("budgets", "update", budget_id, "--eur", "75", "--tokens", "1000")["budget"]["limit_tokens"]
        == 1000
    )
    assert socle("budgets", "update", budget_id, "--tokens", "none")["budget"]["limit_tokens"] is None

    user = socle("users", "create", "Dana", "--email", "dana@example.eu")
    assert socle("teams", "bind", "sales", "--principal", user["id"], "--role", "member")["role"] == "member"
    assert socle("users", "show", user["id"])["bindings"][0]["role"] == "member"
    assert socle("users", "update", user["id"], "--name", "Dana M.")["name"] == "Dana M."
    assert socle("users", "update", user["id"], "--disable")["disabled_at"] is not None
    assert socle("users", "update", user["id"], "--enable")["disabled_at"] is None
    key = socle("keys", "create", "--team", "sales", "--principal", user["id"], "--model", "fake-chat")
    assert key["allowed_models"] == ["fake-chat"]
    assert socle("keys", "show", key["id"])["name"] == "key"
    updated = socle("keys", "update", key["id"], "--name", "laptop", "--all-models")
    assert updated["allowed_models"] is None and updated["name"] == "laptop"
    assert socle("keys", "revoke", key["id"])["revoked_at"] is not None
    assert [k["id"] for k in socle("keys", "list", "--team", "sales")["data"]] == [created["id"], key["id"]]
    assert socle("teams", "unbind", "sales", "--principal", user["id"], "--role", "member")["deleted"] is True
    assert socle("teams", "members", "sales")["data"][0]["principal_id"] != user["id"]
    assert socle("users", "disable", user["id"])["disabled_at"] is not None
    service = [p for p in socle("users", "list", "--kind", "service")["data"] if p["name"] == "sales-member"]
    assert len(service) == 1


def test_models_access_and_team_model_limits(socle: Run) -> None:
    socle("teams", "create", "ops")
    member = socle("keys", "create", "--team", "ops", "--role", "member")["key"]
    assert [m["id"] for m in socle("models", key=member)] == ["fake-chat", "slow-chat"]
    assert socle("models", "grant", "--team", "admin", "slow-chat")["model"] == "slow-chat"
    assert [m["id"] for m in socle("models", "list", key=member)] == ["fake-chat"]
    access = {m["model"]: m for m in socle("models", "access", "--team", "ops")["data"]}
    assert not access["slow-chat"]["allowed"] and access["fake-chat"]["allowed"]
    assert socle("models", "access", "slow-chat")["data"][0]["restricted"] is True
    assert "HTTP 403" in socle("models", "grant", "--team", "ops", "fake-chat", key=member, ok=False)
    assert "last_grant" in socle("models", "revoke", "--team", "admin", "slow-chat", ok=False)
    assert socle("models", "revoke", "--team", "admin", "slow-chat", "--reopen")["restricted"] is False

    limit = socle("limits", "create", "--scope", "team_model", "--target", "ops:fake-chat", "--rpm", "5")
    assert limit["scope"] == "team_model" and limit["scope_id"].endswith(":fake-chat")
    changed = socle("limits", "update", limit["id"], "--tpm", "1000", "--rpm", "none")
    assert (changed["requests_per_minute"], changed["tokens_per_minute"]) == (None, 1000)
    assert limit["id"] in [x["id"] for x in socle("limits", "list")["data"]]
    assert socle("limits", "delete", limit["id"])["deleted"] is True
