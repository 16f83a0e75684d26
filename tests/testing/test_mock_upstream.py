"""The mock upstream speaks real HTTP/1.1 and the OpenAI wire format: checked with the official client."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from socle.engines.fake import hash_embedding
from socle.testing.mock_upstream import DEFAULT_REPLY, MockUpstream, mock_upstream, mock_upstream_process

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    with mock_upstream() as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(upstream: MockUpstream) -> Iterator[None]:
    yield
    upstream.state.failure = None


@pytest.fixture
async def client(upstream: MockUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


async def test_official_client_chat_and_stream(client: openai.AsyncOpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi you"}]
    answer = await client.chat.completions.create(model="m", messages=messages, max_tokens=3)
    assert answer.choices[0].message.content == " ".join(DEFAULT_REPLY.split()[:3])
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)
    stream = await client.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(DEFAULT_REPLY.split())


async def test_official_client_completions_embeddings_models(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(model="m", prompt="Once upon", stop=["mock"])
    assert completion.choices[0].text == "Hello from the "
    embeddings = await client.embeddings.create(model="e", input=["a", "b"])
    assert [e.embedding for e in embeddings.data] == [hash_embedding("a"), hash_embedding("b")]
    models = await client.models.list()
    assert [m.id for m in models.data] == ["mock-model"]


async def test_official_client_sees_the_failures(client: openai.AsyncOpenAI, upstream: MockUpstream) -> None:
    upstream.state.failure = "context_length"
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="m", prompt="x")
    assert info.value.code == "context_length_exceeded"
    upstream.state.failure = "rate_limit"
    with pytest.raises(openai.RateLimitError):
        await client.completions.create(model="m", prompt="x")
    upstream.state.failure = "http_500"
    with pytest.raises(openai.InternalServerError):
        await client.completions.create(model="m", prompt="x")
    upstream.state.failure = "drop"
    with pytest.raises(openai.APIConnectionError):
        await client.completions.create(model="m", prompt="x")


async def test_chunked_request_bodies(upstream: MockUpstream) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"model": "m", '
        yield b'"prompt": "x", "max_tokens": 1}'

    async with httpx.AsyncClient(base_url=upstream.base_url + "/") as client:
        response = await client.post("completions", content=body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == "Hello"


def test_keep_alive_pipelining_and_connection_close(upstream: MockUpstream) -> None:
    request = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n"
    closing = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=10) as sock:
        sock.sendall(request + request + closing)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.endswith(b"}")


def test_separate_process_and_remote_configuration() -> None:
    with mock_upstream_process(latency_ms=1) as process:
        assert process.configure(latency_ms=0, reply="Changed reply.")["latency_s"] == 0.0
        with httpx.Client() as client:
            response = client.post(process.base_url + "/completions", json={"model": "m", "prompt": "x"})
        assert response.json()["choices"][0]["text"] == "Changed reply."
        with pytest.raises(Exception, match="400"):
            process.configure(failure="no-such-failure")
