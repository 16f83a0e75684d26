"""The audit trail through the real API: traceability end to end with the official openai client (the
proof checked independently), auth failures and denials recorded, fail closed (503) and recovery,
event search, verification, and the request id header on every kind of response; on SQLite and
PostgreSQL (the module runs once per backend)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from socle.governance.audit.checkpoint import Checkpoint, NoteVerifier
from socle.governance.audit.log import HMAC_KEY_FILE
from socle.governance.audit.merkle import verify_inclusion
from socle.governance.audit.pseudonyms import Pseudonymizer
from socle.testing.server import RunningServer
from tests.conftest import ADMIN_KEY
from tests.gateway.audit_support import audit_table_away, audited_server

REPLY = "Bonjour, je suis un moteur factice."


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit-api")


@pytest.fixture(scope="module")
def server(data_dir: Path, module_database_url: str) -> Iterator[RunningServer]:
    with audited_server(data_dir, module_database_url) as running:
        yield running


@pytest.fixture(scope="module")
def keys(server: RunningServer) -> dict[str, str]:
    """An auditor, a member (team 'research') and the rate-limited key of another member."""

    async def make() -> dict[str, str]:
        services = server.services
        admin = await services.keys.authenticate(ADMIN_KEY)
        directory = services.directory
        team = await directory.create_team(admin.org_id, "research")
        made = {}
        for name, role in (("auditor", "auditor"), ("member", "member"), ("limited", "member")):
            principal = await directory.create_principal(admin.org_id, "user", f"{name}-user")
            await directory.bind(admin.org_id, team.id, principal.id, role)
            made[name], record = await services.keys.create_key(principal.id, team.id, f"{name} key")
            made[name + "_principal"] = principal.id
            if name == "limited":
                await services.quotas.limits.create_limit("key", record.id, requests_per_minute=1)
                services.quotas.invalidate()
        made["team"] = team.id
        return made

    return server.run(make())


def _get(server: RunningServer, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, headers={"authorization": f"Bearer {key}"}, params=params)


def test_an_answer_is_traceable_with_a_proof_checked_by_the_client(
    server: RunningServer, keys: dict[str, str], data_dir: Path
) -> None:
    client = openai.OpenAI(base_url=server.api, api_key=keys["member"], max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fake-chat", messages=[{"role": "user", "content": "Qui es-tu ?"}]
    )
    request_id = raw.headers["x-request-id"]
    assert raw.parse().choices[0].message.content == REPLY
    response = _get(server, keys["auditor"], f"/v1/audit/requests/{request_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    trace = body["trace"]
    assert trace["principal"] == keys["member_principal"] and trace["team"] == keys["team"]
    assert trace["model"] == "fake-chat" and trace["engine"] in ("fake-a", "fake-b")
    assert trace["zone"] == "on-prem" and trace["model_ref"] and trace["status"] == 200
    assert trace["policy_version"].startswith("cfg-")
    assert trace["tokens"]["completion"] > 0 and trace["routing"]["engine"] == trace["engine"]
    assert {"sources", "guardrails", "classification"} <= set(trace)
    hmac = Pseudonymizer.from_file(data_dir / HMAC_KEY_FILE)
    assert trace["response_hmac"] == hmac.text(REPLY)
    assert trace["prompt_hmac"] == hmac.json([{"role": "user", "content": "Qui es-tu ?"}])
    assert "Qui es-tu" not in response.text and "factice" not in response.text  # no contents in the log
    # The client checks the proof with the public key alone.
    verifier = NoteVerifier(body["verifier_key"])
    checkpoint = Checkpoint.open(body["checkpoint"]["note"], verifier)
    [entry] = body["entries"]
    verify_inclusion(
        entry["seq"],
        checkpoint.size,
        bytes.fromhex(entry["leaf_hash"]),
        [bytes.fromhex(p) for p in entry["inclusion_proof"]],
        checkpoint.root_hash,
    )
    assert (data_dir / "witness" / "checkpoint").read_text().startswith(checkpoint.origin + "\n")


def test_a_stream_is_audited_with_its_whole_answer(
    server: RunningServer, keys: dict[str, str], data_dir: Path
) -> None:
    client = openai.OpenAI(base_url=server.api, api_key=keys["member"], max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="fake-chat", messages=[{"role": "user", "content": "Stream"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        text_out = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    trace = _get(server, keys["auditor"], f"/v1/audit/requests/{request_id}").json()["trace"]
    assert trace["response_hmac"] == Pseudonymizer.from_file(data_dir / HMAC_KEY_FILE).text(text_out)


def test_auth_failures_and_denials_are_recorded(server: RunningServer, keys: dict[str, str]) -> None:
    bad = httpx.get(server.url + "/v1/models", headers={"authorization": "Bearer sk-socle-nope"})
    assert bad.status_code == 401
    denied = _get(server, keys["member"], "/v1/audit/events")
    assert denied.status_code == 403
    client = openai.OpenAI(base_url=server.api, api_key=keys["limited"], max_retries=0)
    client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "1"}])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "2"}])
    limited_id = limited.value.response.headers["x-request-id"]

    failures = _get(server, keys["auditor"], "/v1/audit/events", type="auth.failure").json()["data"]
    failure = next(e["entry"] for e in failures if e["entry"]["request_id"] == bad.headers["x-request-id"])
    assert failure["actor"] == "anonymous" and failure["data"]["credential"] == "api_key"
    assert failure["data"]["reason"] == "invalid_api_key" and failure["data"]["client_hmac"].startswith(
        "hmac-"
    )
    denials = _get(server, keys["auditor"], "/v1/audit/events", type="access.denied").json()["data"]
    by_request = {e["entry"]["request_id"]: e["entry"] for e in denials}
    rbac = by_request[denied.headers["x-request-id"]]
    assert rbac["data"]["reason"] == "rbac" and rbac["data"]["action"] == "audit.read"
    assert rbac["actor"] == keys["member_principal"]
    rate = by_request[limited_id]
    assert rate["data"]["reason"] == "rate_limit" and rate["data"]["status"] == 429
    trace = _get(server, keys["auditor"], f"/v1/audit/requests/{limited_id}").json()["trace"]
    assert trace["type"] == "access.denied" and trace["reason"] == "rate_limit"


def test_event_search_filters_and_pages(server: RunningServer, keys: dict[str, str]) -> None:
    client = openai.OpenAI(base_url=server.api, api_key=keys["member"], max_retries=0)
    for i in range(3):
        client.completions.create(model="fake-chat", prompt=f"p{i}")
    mine = _get(
        server,
        keys["auditor"],
        "/v1/audit/events",
        actor=keys["member_principal"],
        team="research",
        type="inference.request",
        limit=2,
    ).json()
    assert len(mine["data"]) == 2 and mine["has_more"]
    rest = _get(
        server,
        keys["auditor"],
        "/v1/audit/events",
        actor=keys["member_principal"],
        type="inference.request",
        after=mine["next_after"],
        limit=1000,
    ).json()
    seqs = [e["seq"] for e in mine["data"] + rest["data"]]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 3 and not rest["has_more"]
    assert all(e["entry"]["actor"] == keys["member_principal"] for e in rest["data"])
    future = _get(server, keys["auditor"], "/v1/audit/events", since="2999-01-01T00:00:00Z").json()
    assert future["data"] == []


def test_latest_checkpoint_and_verification_on_demand(server: RunningServer, keys: dict[str, str]) -> None:
    server.run(server.services.audit.checkpoint(force=True))
    latest = _get(server, keys["auditor"], "/v1/audit/checkpoints/latest").json()
    assert Checkpoint.open(latest["note"], NoteVerifier(latest["verifier_key"])).size == latest["size"] > 0
    report = httpx.post(
        server.url + "/v1/audit/verify", headers={"authorization": f"Bearer {keys['auditor']}"}
    ).json()
    assert report["ok"], report
    assert report["entries"] >= latest["size"] and report["checkpoints_verified"] >= 1


def test_fail_closed_then_recovery(server: RunningServer, keys: dict[str, str]) -> None:
    """While the audit table cannot be written, governed requests get 503; once it can, they are served
    again and the outage is on the record."""
    client = openai.OpenAI(base_url=server.api, api_key=keys["member"], max_retries=0)
    with audit_table_away(server):
        with pytest.raises(openai.InternalServerError) as first:
            client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "x"}])
        assert first.value.status_code == 503 and first.value.code == "audit_unavailable"
        with pytest.raises(openai.InternalServerError) as second:
            client.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "x"}], stream=True
            )
        assert second.value.status_code == 503 and "x-request-id" in second.value.response.headers
    deadline = time.monotonic() + 10
    while True:
        try:
            client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "back"}])
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.1)
    outages = _get(server, keys["auditor"], "/v1/audit/events", type="audit.outage").json()["data"]
    assert outages and outages[-1]["entry"]["data"]["refused"] >= 1
    alerts = server.run(server.services.alerts.list(kind="audit.unavailable"))
    assert alerts


def test_every_response_carries_a_request_id(server: RunningServer, keys: dict[str, str]) -> None:
    member = {"authorization": f"Bearer {keys['member']}"}
    responses = [
        httpx.get(server.url + "/healthz"),
        httpx.get(server.url + "/metrics"),
        httpx.get(server.url + "/v1/models", headers=member),  # 200
        httpx.get(server.url + "/v1/models"),  # 401
        httpx.get(server.url + "/v1/audit/events", headers=member),  # 403
        httpx.get(server.url + "/v1/nowhere", headers=member),  # 404
        httpx.post(server.url + "/v1/chat/completions", headers=member, json={"model": "fake-chat"}),  # 400
        httpx.post(
            server.url + "/v1/chat/completions", headers=member, content=b"x" * (9 * 1024 * 1024)
        ),  # 413
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 401, 403, 404, 400, 413]
    ids = [r.headers.get("x-request-id", "") for r in responses]
    assert all(i.startswith("req_") for i in ids) and len(set(ids)) == len(ids)
