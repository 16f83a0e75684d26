"""``GET /v1/admin/engines``: every engine with its zone, model, pools, health, load and last failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.config import FakeEngineConfig, ModelRoute
from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines


@pytest.fixture
def server(make_settings: Any) -> Iterator[RunningServer]:
    engines = fake_engines()
    engines["engines"].append(FakeEngineConfig(name="broken", zone="eu-sovereign", fail=True))
    engines["models"].append(ModelRoute(name="flaky-chat", engines=["broken", "fake-b"]))
    with run_server(make_settings(health_check_interval_s=0.2, **engines)) as running:
        yield running


def _engines(server: RunningServer, key: str) -> httpx.Response:
    return httpx.get(server.api + "/admin/engines", headers={"authorization": f"Bearer {key}"})


def test_engines_list_models_zones_health_and_failures(server: RunningServer) -> None:
    listed = _engines(server, server.admin_key)
    assert listed.status_code == 200, listed.text
    engines = {e["name"]: e for e in listed.json()["data"]}
    assert list(engines) == ["fake-a", "fake-b", "slow", "broken"]  # configuration order
    a = engines["fake-a"]
    assert (a["kind"], a["zone"], a["model_ref"], a["models"]) == (
        "fake",
        "on-prem",
        "fake:fake-a",
        ["fake-chat"],
    )
    assert engines["fake-b"]["models"] == ["fake-chat", "flaky-chat"]
    assert a["capacity"] == a["concurrency"] == 4 and a["in_flight"] == 0
    assert engines["broken"]["zone"] == "eu-sovereign" and "api_key" not in engines["broken"]

    # The broken engine is left for the healthy one; a failed call or probe marks it, with its error.
    headers = {"authorization": f"Bearer {server.admin_key}"}
    chat = {"model": "flaky-chat", "messages": [{"role": "user", "content": "x"}]}
    answered = httpx.post(server.api + "/chat/completions", json=chat, headers=headers)
    assert answered.status_code == 200 and answered.headers["x-socle-engine"] == "fake-b"
    deadline = time.monotonic() + 10
    while True:
        engines = {e["name"]: e for e in _engines(server, server.admin_key).json()["data"]}
        if engines["broken"]["checked_at"] is not None and engines["fake-a"]["checked_at"] is not None:
            break
        assert time.monotonic() < deadline, engines
        time.sleep(0.1)
    broken = engines["broken"]
    assert broken["healthy"] is False and broken["detail"] == "configured to fail"
    assert broken["last_error"] and broken["last_error_at"]
    assert engines["fake-a"]["healthy"] is True and engines["fake-a"]["last_error"] is None


def test_engines_are_for_admins_only(server: RunningServer) -> None:
    async def member_key() -> str:
        services = server.services
        admin = await services.keys.authenticate(server.admin_key)
        principal = await services.directory.create_principal(admin.org_id, "user", "someone")
        await services.directory.bind(admin.org_id, admin.team_id, principal.id, "member")
        key, _ = await services.keys.create_key(principal.id, admin.team_id, "member key")
        return key

    refused = _engines(server, server.run(member_key()))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert httpx.get(server.api + "/admin/engines").status_code == 401
