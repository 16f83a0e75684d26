"""Teams' guardrail policies as data, on SQLite and PostgreSQL: stored through the admin API (each change
a new version, history kept), applied to the team's next requests (the official openai client sees the
stored rule), the stored version recorded with every decision, read by a second gateway within
``governance_cache_s``, clear 400s for bad policies, team admins may read but not change, and
``socle guard policy``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

from socle.cli import cli
from socle.gateway.pipeline import Call
from socle.testing.server import RunningServer, run_server
from tests.conftest import REPLICA_CACHE_S, fake_engines

CACHE_S = REPLICA_CACHE_S
EMAIL = "claire.martin@example.fr"
BLOCK_EMAILS = {"rules": [{"match": "EMAIL_ADDRESS", "action": "block", "name": "no-emails"}]}


def _http(server: RunningServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"authorization": f"Bearer {key}"}, timeout=30)


def _team(admin: httpx.Client, team: str) -> dict[str, str]:
    """Team ``team`` with a member key and a team-admin key."""
    assert admin.post("/admin/teams", json={"name": team}).status_code == 201
    keys = {}
    for role in ("member", "team-admin"):
        person = admin.post("/admin/principals", json={"kind": "user", "name": f"{team}-{role}"}).json()
        admin.post(f"/admin/teams/{team}/members", json={"principal_id": person["id"], "role": role})
        body = {"principal_id": person["id"], "team": team}
        keys[role] = admin.post("/admin/keys", json=body).json()["key"]
    return keys


def _ask(server: RunningServer, key: str, text: str) -> str:
    with openai.OpenAI(base_url=server.api, api_key=key, max_retries=0) as client:
        answer = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": text}], max_tokens=4
        )
    return answer.choices[0].message.content or ""


def test_stored_policies_apply_to_the_next_requests_and_are_recorded(
    replicas: tuple[RunningServer, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, other = replicas
    with _http(server, server.admin_key) as admin:
        keys = _team(admin, "legal")
        _ask(other, keys["member"], f"Écrivez à {EMAIL}")  # the second gateway caches "no stored policy"
        shown = admin.get("/admin/teams/legal/guardrails").json()
        assert (shown["source"], shown["name"], shown["version"]) == ("settings", "default", None)
        assert _ask(server, keys["member"], f"Écrivez à {EMAIL}")  # the default policy only logs PII

        stored = admin.put("/admin/teams/legal/guardrails", json=BLOCK_EMAILS)
        assert stored.status_code == 200, stored.text
        data = stored.json()
        assert (data["source"], data["version"], data["policy_version"]) == ("stored", 1, "1")
        assert data["name"] == "team:legal" and data["policy"]["rules"][0]["name"] == "no-emails"

        with pytest.raises(openai.BadRequestError) as caught:  # at once in this process
            _ask(server, keys["member"], f"Écrivez à {EMAIL}")
        message = caught.value.body["message"]  # type: ignore[index]
        assert "'no-emails' of policy 'team:legal' (version 1)" in message and EMAIL not in message
        assert _ask(other, keys["member"], f"Écrivez à {EMAIL}")  # the other gateway: still cached
        time.sleep(CACHE_S + 0.2)
        with pytest.raises(openai.BadRequestError, match="no-emails"):
            _ask(other, keys["member"], f"Écrivez à {EMAIL}")

        second = {"name": "legal-v2", "rules": [{"match": "pii", "action": "log"}], "max_output_chars": 5}
        assert admin.put("/admin/teams/legal/guardrails", json=second).json()["version"] == 2
        calls: list[Call] = []
        original = server.services.pipeline._record

        def spy(call: Call, status: int, error: Any) -> None:
            calls.append(call)
            original(call, status, error)

        monkeypatch.setattr(server.services.pipeline, "_record", spy)
        assert len(_ask(server, keys["member"], f"Écrivez à {EMAIL}")) <= 5  # the stored size cap
        state = calls[-1].guard
        assert state is not None and (state.policy_name, state.policy_version) == ("legal-v2", "2")
        assert {(d.type, d.action, d.policy, d.policy_version) for d in state.decisions} == {
            ("EMAIL_ADDRESS", "log", "legal-v2", "2"),
            ("RESPONSE_TOO_LONG", "redact", "legal-v2", "2"),
        }
        with _http(server, keys["member"]) as member:
            check = member.post("/guardrails/check", json={"text": EMAIL}).json()
        assert (check["policy"], check["policy_version"], check["action"]) == ("legal-v2", "2", "log")

        reset = admin.delete("/admin/teams/legal/guardrails").json()
        assert (reset["source"], reset["name"], reset["version"]) == ("settings", "default", 3)
        assert admin.delete("/admin/teams/legal/guardrails").json()["version"] == 3  # nothing to reset
        history = admin.get("/admin/teams/legal/guardrails/versions").json()["data"]
        assert [(v["version"], v["name"], v["policy"] is None) for v in history] == [
            (3, "team:legal", True),
            (2, "legal-v2", False),
            (1, "team:legal", False),
        ]
        assert history[1]["policy"]["max_output_chars"] == 5 and history[0]["created_by"]
        assert len(_ask(server, keys["member"], f"Écrivez à {EMAIL}")) > 5  # the cap is gone


@pytest.mark.parametrize(
    ("policy", "param", "words"),
    [
        ({"rules": [{"match": "NAMES", "action": "block"}]}, "rules[0].match", "'NAMES' is not"),
        ({"rules": [{"match": "PERSON", "action": "delete"}]}, "rules.0.action", "'allow'"),
        ({"rules": [{"match": "PERSON", "action": "log", "level": "secret"}]}, "rules[0].level", "only"),
        ({"rules": [{"match": "PERSON", "action": "log", "stages": []}]}, "rules[0].stages", "never"),
        ({"version": 4, "rules": []}, "version", "numbered by the server"),
        ({"rules": [], "colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_bad_policies_are_clear_400s(
    make_settings: Any, database_url: str, policy: dict[str, Any], param: str, words: str
) -> None:
    with run_server(make_settings(database_url=database_url, **fake_engines())) as server:
        with _http(server, server.admin_key) as admin:
            _team(admin, "ops")
            response = admin.put("/admin/teams/ops/guardrails", json=policy)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == param and words in error["message"], error
            assert admin.get("/admin/teams/ops/guardrails/versions").json()["data"] == []


def test_team_admins_read_their_own_team_policy_only(make_settings: Any) -> None:
    with run_server(make_settings(**fake_engines())) as server, _http(server, server.admin_key) as admin:
        keys = _team(admin, "alpha")
        _team(admin, "beta")
        assert admin.put("/admin/teams/beta/guardrails", json=BLOCK_EMAILS).status_code == 200
        with _http(server, keys["team-admin"]) as team_admin:
            assert team_admin.get("/admin/teams/alpha/guardrails").json()["team"] == "alpha"
            assert team_admin.get("/admin/teams/alpha/guardrails/versions").status_code == 200
            denied = team_admin.put("/admin/teams/alpha/guardrails", json={"rules": []})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
            assert team_admin.delete("/admin/teams/alpha/guardrails").status_code == 403
            other = team_admin.get("/admin/teams/beta/guardrails")
            assert other.status_code in (403, 404) and "no-emails" not in other.text
        with _http(server, keys["member"]) as member:
            assert member.get("/admin/teams/alpha/guardrails").status_code == 403


def test_cli_guard_policy(make_settings: Any, tmp_path: Path) -> None:
    toml = tmp_path / "policy.toml"
    toml.write_text(
        'canary = true\nrules = [\n  { match = "FR_NIR", action = "block", name = "no-nir" },\n'
        '  { match = "IBAN_CODE", action = "raise_classification", level = "confidential" },\n]\n'
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"match": "NIR", "action": "block"}]}')
    with run_server(make_settings(**fake_engines())) as server, _http(server, server.admin_key) as admin:
        _team(admin, "finance")
        server_args = ["--url", server.url, "--key", server.admin_key]

        def run(*args: str) -> Any:
            result = CliRunner().invoke(cli, ["guard", "policy", *args, *server_args])
            return result

        result = run("set", "finance", "--file", str(toml), "--json")
        assert result.exit_code == 0, result.output
        data = orjson.loads(result.output)
        assert data["version"] == 1 and data["policy"]["canary"] is True
        human = run("show", "finance")
        assert human.exit_code == 0 and "stored version 1" in human.output and "no-nir" not in human.output
        assert "FR_NIR" in human.output and "raise_classification → confidential" in human.output
        failed = run("set", "finance", "--file", str(bad), "--name", "x")
        assert failed.exit_code != 0 and "'NIR' is not" in failed.output
        reset = run("reset", "finance", "--json")
        assert reset.exit_code == 0 and orjson.loads(reset.output)["source"] == "settings"
        history = run("show", "finance", "--history")
        assert history.exit_code == 0 and history.output.splitlines()[0].startswith("v2 ")
        assert "back to the settings' policy" in history.output
