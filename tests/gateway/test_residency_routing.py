"""Residency routing end to end: the official ``openai`` client against a real server whose engines are
recording mock upstreams in four zones. Each mock records every byte it receives, so "no byte of a
confidential request reaches a non-EU engine" is checked on the wire, on first choice and on failover,
streamed or not, on SQLite and PostgreSQL (where teams' classifications are stored)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest

from socle.config import ModelRoute, OpenAICompatEngineConfig
from socle.egress import EgressRefusal
from socle.gateway.pipeline import Call
from socle.governance.residency import ResidencyDenial
from socle.testing.mock_upstream import MockUpstream, mock_upstream
from socle.testing.server import RunningServer, run_server

# Pool order puts the least trusted engine first: without residency routing it would be chosen first.
ZONES = {"us": "non-eu", "eu": "eu", "sov": "eu-sovereign", "onprem": "on-prem"}


class RecordingSink:
    """A DecisionSink that keeps what it is told."""

    def __init__(self) -> None:
        self.denials: list[ResidencyDenial] = []
        self.refusals: list[EgressRefusal] = []

    async def residency_denied(self, denial: ResidencyDenial) -> None:
        self.denials.append(denial)

    def egress_refused(self, refusal: EgressRefusal) -> None:
        self.refusals.append(refusal)


class Env:
    def __init__(self, server: RunningServer, mocks: dict[str, MockUpstream]) -> None:
        self.server = server
        self.mocks = mocks
        self.calls: list[Call] = []
        self.sink = RecordingSink()
        server.services.residency.sink = self.sink
        pipeline = server.services.pipeline
        finish = pipeline._finish

        async def record(call: Call, status: int, error: Any = None) -> None:
            self.calls.append(call)
            await finish(call, status, error)

        pipeline._finish = record  # type: ignore[method-assign]

    def received(self, name: str) -> bytes:
        data = self.mocks[name].state.received
        assert data is not None
        return bytes(data)

    def client(self, key: str, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.api, api_key=key, max_retries=0, default_headers=headers)

    def team_key(self, team: str, classification: str) -> str:
        """A key for a new team with this default classification (set through the admin API)."""
        with httpx.Client(
            base_url=self.server.api, headers={"authorization": f"Bearer {self.server.admin_key}"}
        ) as admin:
            assert admin.post("/admin/teams", json={"name": team}).status_code == 201
            changed = admin.patch(f"/admin/teams/{team}", json={"classification": classification})
            assert changed.status_code == 200 and changed.json()["classification"] == classification
            principal = admin.post(
                "/admin/principals", json={"kind": "service", "name": team + "-bot"}
            ).json()
            bound = admin.post(
                f"/admin/teams/{team}/members", json={"principal_id": principal["id"], "role": "member"}
            )
            assert bound.status_code == 201
            created = admin.post("/admin/keys", json={"principal_id": principal["id"], "team": team})
            assert created.status_code == 201
            return str(created.json()["key"])


@pytest.fixture
def env(make_settings: Any, database_url: str) -> Iterator[Env]:
    with ExitStack() as stack:
        mocks = {name: stack.enter_context(mock_upstream()) for name in ZONES}
        for mock in mocks.values():
            mock.state.received = bytearray()
        engines = [
            OpenAICompatEngineConfig(name=name, zone=zone, base_url=mocks[name].base_url)
            for name, zone in ZONES.items()
        ]
        settings = make_settings(
            database_url=database_url,
            engines=engines,
            models=[
                ModelRoute(name="assistant", engines=list(ZONES)),
                ModelRoute(name="us-only", engines=["us"]),
            ],
            health_check_interval_s=3600,  # no probes: every byte a mock receives is a request's
        )
        server = stack.enter_context(run_server(settings))
        yield Env(server, mocks)


def _chat(client: openai.OpenAI, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": text}], max_tokens=4, **kwargs
    )


def test_confidential_never_reaches_non_eu_even_on_failover(env: Env) -> None:
    client = env.client(env.team_key("legal", "confidential"))
    marker = "CONFIDENTIAL-" + uuid.uuid4().hex
    # First choice: the pool's first engine in an allowed zone.
    assert _chat(client, marker + " 1").headers["x-socle-engine"] == "sov"
    # Failover before the first byte: from eu-sovereign to on-prem, never to eu or non-eu.
    env.mocks["sov"].state.failure = "http_500"
    assert _chat(client, marker + " 2").headers["x-socle-engine"] == "onprem"
    stream = _chat(client, marker + " 3", stream=True)
    assert stream.headers["x-socle-engine"] == "onprem"
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    # Every allowed engine failing: 503, and still nothing for the healthy engines outside the zones.
    env.mocks["onprem"].state.failure = "drop"
    with pytest.raises(openai.InternalServerError):
        _chat(client, marker + " 4")
    with pytest.raises(openai.InternalServerError):
        _chat(client, marker + " 5", stream=True)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="assistant", input=marker + " 6")
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model="assistant", prompt=marker + " 7", max_tokens=4)
    assert env.received("us") == b"" and env.received("eu") == b""
    assert marker.encode() in env.received("sov") and marker.encode() in env.received("onprem")
    # The decisions are on the calls, for the audit trail.
    decisions = [c.residency for c in env.calls]
    assert all(d is not None and d.classification == "confidential" for d in decisions)
    first, failover, *rest = (d.to_dict() for d in decisions if d is not None)
    assert first["engine"] == "sov" and first["zone"] == "eu-sovereign"
    assert first["allowed_zones"] == ["on-prem", "eu-sovereign"] and first["candidates"] == ["sov", "onprem"]
    assert [s["engine"] for s in first["skipped"]] == ["us", "eu"]
    assert first["reasons"] == [{"level": "confidential", "reason": "team default"}]
    assert failover["engine"] == "onprem" and "sov" in [s["engine"] for s in failover["skipped"]]
    assert any(d["engine"] is None for d in rest)  # the refused ones


def test_public_may_go_anywhere_and_the_header_only_raises(env: Env) -> None:
    public_key = env.client(env.team_key("comms", "public")).api_key
    marker = "PUBLIC-" + uuid.uuid4().hex
    assert _chat(env.client(public_key), marker).headers["x-socle-engine"] == "us"
    assert marker.encode() in env.received("us")

    raised = "RAISED-" + uuid.uuid4().hex
    confidential = env.client(public_key, **{"X-Socle-Classification": "confidential"})
    assert _chat(confidential, raised).headers["x-socle-engine"] == "sov"
    decision = env.calls[-1].residency
    assert decision is not None
    assert [r.reason for r in decision.reasons] == ["X-Socle-Classification header", "team default"]
    stream = _chat(confidential, raised + " streamed", stream=True)
    assert stream.headers["x-socle-engine"] == "sov" and list(stream.parse())

    lowered = "LOWERED-" + uuid.uuid4().hex
    legal = env.client(env.team_key("legal", "confidential"), **{"X-Socle-Classification": "public"})
    assert _chat(legal, lowered).headers["x-socle-engine"] == "sov"
    assert env.calls[-1].classification == "confidential"
    assert raised.encode() not in env.received("us") and lowered.encode() not in env.received("us")

    with pytest.raises(openai.BadRequestError) as info:
        _chat(env.client(public_key, **{"X-Socle-Classification": "top-secret"}), "x")
    assert info.value.code == "invalid_classification"


def test_the_admin_team_is_internal_by_default(env: Env) -> None:
    marker = "INTERNAL-" + uuid.uuid4().hex
    env.mocks["sov"].state.failure = "http_500"
    env.mocks["onprem"].state.failure = "http_500"
    assert _chat(env.client(env.server.admin_key), marker).headers["x-socle-engine"] == "eu"
    assert marker.encode() not in env.received("us")


def test_no_allowed_engine_is_403_naming_classification_and_zones(env: Env) -> None:
    client = env.client(env.team_key("vault", "secret"))
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.chat.completions.create(
                model="us-only", messages=[{"role": "user", "content": "SECRET"}], stream=stream
            )
        assert info.value.code == "residency_denied"
        assert "'secret'" in info.value.message and "zone(s) on-prem;" in info.value.message
    assert env.received("us") == b""
    assert len(env.sink.denials) == 2
    denial = env.sink.denials[0]
    assert denial.model == "us-only" and denial.principal.team_name == "vault"
    assert denial.decision.allowed_zones == ("on-prem",) and denial.decision.candidates == ()
    assert [(s.engine, s.zone) for s in denial.decision.skipped] == [("us", "non-eu")]
