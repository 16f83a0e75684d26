"""Scheduled retention in a running gateway, on SQLite and PostgreSQL: the schedule starts and stops with
the services, prunes (recording ``audit.prune``) once entries are past the retention, and the log still
verifies through the API afterwards; without ``prune_interval_s`` there is no schedule."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai

from socle.storage.types import utcnow
from tests.conftest import ADMIN_KEY
from tests.gateway.audit_support import audited_server


def _events(url: str, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(
        url + "/v1/audit/events", headers={"authorization": f"Bearer {ADMIN_KEY}"}, params=params
    )
    assert response.status_code == 200, response.text
    return [e["entry"] for e in response.json()["data"]]


def test_the_server_prunes_on_schedule_and_the_log_still_verifies(tmp_path: Path, database_url: str) -> None:
    audit = {"prune_interval_s": 0.1, "checkpoint_every": 5}
    with audited_server(tmp_path / "data", database_url, audit=audit) as server:
        schedule = server.services.retention
        assert schedule is not None and schedule.interval_s == 0.1
        client = openai.OpenAI(base_url=server.api, api_key=ADMIN_KEY, max_retries=0)
        for i in range(12):
            client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": str(i)}])
        time.sleep(0.3)  # ticks run, and prune nothing: every entry is recent
        assert _events(server.url, type="audit.prune") == []
        schedule.clock = lambda: utcnow() + timedelta(days=200)  # now every entry is past the retention
        deadline = time.monotonic() + 20
        while not (prunes := _events(server.url, type="audit.prune")):
            assert time.monotonic() < deadline, "the schedule did not prune"
            time.sleep(0.1)
        assert prunes[0]["actor"] == "system" and prunes[0]["data"]["pruned_size"] >= 10
        schedule.clock = utcnow
        client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "after"}])
        report = httpx.post(server.url + "/v1/audit/verify", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        body = report.json()
        assert body["ok"], body
        assert body["pruned_size"] == max(p["data"]["pruned_size"] for p in prunes)


def test_no_schedule_without_an_interval(tmp_path: Path) -> None:
    with audited_server(tmp_path / "data", audit={"prune_interval_s": None}) as server:
        assert server.services.retention is None
