"""The OpenAI-compatible API through the official `openai` client, against a real server (uvicorn,
real sockets), on SQLite and on PostgreSQL. Engines are fakes here; the real models have their own
tests in test_real_models.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines

REPLY = "Bonjour, je suis un moteur factice."


@pytest.fixture
def server(make_settings, database_url: str) -> Iterator[RunningServer]:
    settings = make_settings(database_url=database_url, **fake_engines())
    with run_server(settings) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.api, api_key=server.admin_key, max_retries=0) as c:
        yield c


def test_chat_non_stream(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "Bonjour ?"}], temperature=0.2, seed=1
    )
    assert answer.choices[0].message.content == REPLY
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "fake-chat"
    assert answer.usage is not None and answer.usage.prompt_tokens == 2
    assert answer.usage.completion_tokens == len(REPLY.split())


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",  # an alias
        messages=[{"role": "user", "content": "Bonjour ?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(REPLY.split())


def test_max_tokens_and_stop(client: openai.OpenAI) -> None:
    short = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "x"}], max_tokens=2
    )
    assert short.choices[0].finish_reason == "length"
    assert short.choices[0].message.content == "Bonjour, je"
    stopped = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "x"}], stop=["suis"]
    )
    assert stopped.choices[0].message.content == "Bonjour, je "
    assert stopped.choices[0].finish_reason == "stop"


def test_completions(client: openai.OpenAI) -> None:
    done = client.completions.create(model="fake-chat", prompt="Il était une fois", max_tokens=3)
    assert done.choices[0].text == "Bonjour, je suis"
    assert done.choices[0].finish_reason == "length"
    pieces = list(client.completions.create(model="fake-chat", prompt="x", max_tokens=50, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == REPLY


def test_embeddings_string_and_list(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="fake-chat", input="bonjour")  # client asks for base64
    many = client.embeddings.create(
        model="fake-chat", input=["bonjour", "au revoir"], encoding_format="float"
    )
    assert len(one.data) == 1 and len(many.data) == 2
    assert np.allclose(one.data[0].embedding, many.data[0].embedding, atol=1e-6)
    assert abs(np.linalg.norm(many.data[1].embedding) - 1) < 1e-5
    assert many.usage.prompt_tokens == 3


def test_embeddings_base64_wire_format(server: RunningServer) -> None:
    r = httpx.post(
        server.api + "/embeddings",
        json={"model": "fake-chat", "input": "bonjour", "encoding_format": "base64"},
        headers={"authorization": f"Bearer {server.admin_key}"},
    )
    vector = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (16,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {"fake-chat", "slow-chat"}


@pytest.mark.anyio
async def test_async_client_stream(server: RunningServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.api, api_key=server.admin_key, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "Bonjour"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == REPLY


def test_request_id_and_engine_headers(server: RunningServer) -> None:
    r = httpx.post(
        server.api + "/chat/completions",
        json={"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {server.admin_key}"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"].startswith("req_")
    assert r.headers["x-socle-engine"] in {"fake-a", "fake-b"}
    assert r.json()["id"] == "chatcmpl-" + r.headers["x-request-id"]


def test_metrics_and_usage_are_recorded(server: RunningServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "un deux"}])
    list(
        client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    text = httpx.get(server.url + "/metrics").text
    assert 'socle_requests_total{endpoint="/v1/chat/completions",engine="fake-' in text
    assert 'model="fake-chat",status="200",team="admin"}' in text
    assert 'socle_tokens_total{direction="in",endpoint="/v1/chat/completions"' in text
    assert 'socle_time_to_first_token_seconds_bucket{endpoint="/v1/chat/completions"' in text
    assert 'code="model_not_found"' in text
    assert 'socle_engine_healthy{engine="fake-a"} 1.0' in text
    server.run(server.services.usage.flush())
    totals = server.run(server.services.usage.totals())
    assert totals.requests == 3
    assert totals.prompt_tokens == 2 + 1 and totals.completion_tokens == 2 * len(REPLY.split())


def test_health_and_readiness(server: RunningServer) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"} <= set(schema["paths"])
