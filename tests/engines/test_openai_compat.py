"""The OpenAI-compatible engine against the mock upstream: conformance, wire format, error translation."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from socle.config import OpenAICompatEngineConfig
from socle.engines.base import ChatInput, CompletionInput, Engine, SamplingParams, Usage
from socle.engines.openai_compat import OpenAICompatEngine
from socle.errors import BadRequestError, ConfigError, ContextLengthError, EngineError, RateLimitError
from socle.testing.engines import EngineConformance, check_stream
from socle.testing.mock_upstream import CONTEXT_LENGTH_MESSAGE, DEFAULT_REPLY, MockUpstream, mock_upstream

KEY = "sk-upstream-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    with mock_upstream() as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(upstream: MockUpstream) -> Iterator[None]:
    yield
    state = upstream.state
    state.failure, state.latency_s, state.token_delay_s, state.model, state.send_usage = (
        None,
        0.0,
        0.0,
        None,
        True,
    )


def config(upstream: MockUpstream, **overrides: Any) -> OpenAICompatEngineConfig:
    values: dict[str, Any] = {
        "name": "upstream",
        "zone": "on-prem",
        "base_url": upstream.base_url,
        "api_key": KEY,
    }
    values.update(overrides)
    return OpenAICompatEngineConfig(**values)


class TestOpenAICompatConformance(EngineConformance):
    capabilities = frozenset({"chat", "completion", "embeddings"})
    normalised_embeddings = True

    @pytest.fixture
    def engine_factory(self, upstream: MockUpstream) -> Callable[[], Engine]:
        return lambda: OpenAICompatEngine(config(upstream))


@pytest.fixture
async def engine(upstream: MockUpstream) -> AsyncIterator[OpenAICompatEngine]:
    engine = OpenAICompatEngine(config(upstream))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.aclose()


def chat(**params: Any) -> ChatInput:
    return ChatInput("public-model", ({"role": "user", "content": "Hello there"},), SamplingParams(**params))


pytestmark = pytest.mark.anyio


# Wire format --------------------------------------------------------------------------------------
async def test_public_model_name_is_sent_when_no_upstream_model(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    await engine.chat(chat())
    assert upstream.state.last_request is not None
    assert upstream.state.last_request.body["model"] == "public-model"
    assert engine.model_id == "upstream:<as requested>"
    assert engine.answered_model == "public-model"


async def test_upstream_model_name_replaces_the_public_one(upstream: MockUpstream) -> None:
    engine = OpenAICompatEngine(config(upstream, upstream_model="Qwen/Qwen2.5-7B-Instruct"))
    await engine.start()
    try:
        upstream.state.model = "qwen2.5-7b-instruct-awq"
        await engine.chat(chat())
        assert upstream.state.last_request is not None
        assert upstream.state.last_request.body["model"] == "Qwen/Qwen2.5-7B-Instruct"
        await engine.embed("public-embeddings", ["x"])
        assert upstream.state.last_request.body["model"] == "Qwen/Qwen2.5-7B-Instruct"
        assert engine.model_id == "upstream:Qwen/Qwen2.5-7B-Instruct"
        assert engine.answered_model == "qwen2.5-7b-instruct-awq"
    finally:
        await engine.aclose()


async def test_bearer_key_is_sent(engine: OpenAICompatEngine, upstream: MockUpstream) -> None:
    await engine.complete(CompletionInput("public-model", "Once"))
    assert upstream.state.last_request is not None
    assert upstream.state.last_request.headers["authorization"] == f"Bearer {KEY}"


async def test_no_key_no_authorization_header(upstream: MockUpstream) -> None:
    engine = OpenAICompatEngine(config(upstream, api_key=None))
    await engine.start()
    try:
        await engine.chat(chat())
    finally:
        await engine.aclose()
    assert upstream.state.last_request is not None
    assert "authorization" not in upstream.state.last_request.headers


async def test_sampling_params_are_mapped_and_unset_ones_omitted(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    await engine.chat(
        chat(max_tokens=7, temperature=0.5, stop=("\n\n", "END"), seed=3, frequency_penalty=0.1)
    )
    assert upstream.state.last_request is not None
    body = upstream.state.last_request.body
    assert body == {
        "model": "public-model",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 7,
        "temperature": 0.5,
        "stop": ["\n\n", "END"],
        "seed": 3,
        "frequency_penalty": 0.1,
    }


async def test_streams_pass_through_with_usage(engine: OpenAICompatEngine, upstream: MockUpstream) -> None:
    deltas = [d async for d in engine.chat_stream(chat())]
    assert upstream.state.last_request is not None
    body = upstream.state.last_request.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert upstream.state.last_request.headers["accept"] == "text/event-stream"
    result = check_stream(deltas)
    assert len(deltas) == len(DEFAULT_REPLY.split()) + 1
    assert result.text == DEFAULT_REPLY
    assert result.usage == Usage(prompt_tokens=2, completion_tokens=len(DEFAULT_REPLY.split()))


async def test_streams_with_delays_between_events(engine: OpenAICompatEngine, upstream: MockUpstream) -> None:
    upstream.state.latency_s, upstream.state.token_delay_s = 0.02, 0.002
    result = check_stream([d async for d in engine.completion_stream(CompletionInput("m", "a b c"))])
    assert result.text == DEFAULT_REPLY
    assert result.usage == Usage(prompt_tokens=3, completion_tokens=len(DEFAULT_REPLY.split()))


async def test_streams_reuse_their_connection(engine: OpenAICompatEngine, upstream: MockUpstream) -> None:
    upstream.state.token_delay_s = 0.002  # the end of each body arrives after its [DONE] event
    before = upstream.state.connections
    for _ in range(3):
        assert check_stream([d async for d in engine.chat_stream(chat())]).text == DEFAULT_REPLY
    assert upstream.state.connections - before == 1


async def test_upstream_without_usage_gives_zero_counts(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    upstream.state.send_usage = False
    streamed = check_stream([d async for d in engine.chat_stream(chat())])
    whole = await engine.chat(chat())
    assert streamed.text == whole.text == DEFAULT_REPLY
    assert streamed.usage == whole.usage == Usage(0, 0)


async def test_embeddings_request_floats(engine: OpenAICompatEngine, upstream: MockUpstream) -> None:
    result = await engine.embed("public-embeddings", ["one", "two words"])
    assert upstream.state.last_request is not None
    assert upstream.state.last_request.body["encoding_format"] == "float"
    assert upstream.state.last_request.body["input"] == ["one", "two words"]
    assert len(result.vectors) == 2 and result.prompt_tokens == 3


# Error translation --------------------------------------------------------------------------------
async def test_http_500_is_an_engine_error_before_the_first_delta(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    upstream.state.failure = "http_500"
    with pytest.raises(EngineError, match="answered 500"):
        await engine.chat(chat())
    stream = engine.chat_stream(chat())
    with pytest.raises(EngineError, match="answered 500"):
        await anext(stream)
    assert not (await engine.health()).ok


async def test_dropped_connection_is_an_engine_error_before_the_first_delta(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    upstream.state.failure = "drop"
    received = []
    with pytest.raises(EngineError):
        async for delta in engine.chat_stream(chat()):
            received.append(delta)
    assert received == []
    with pytest.raises(EngineError):
        await engine.embed("m", ["x"])


async def test_drop_mid_stream_is_an_engine_error_after_the_first_delta(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    upstream.state.failure = "drop_mid_stream"
    received = []
    with pytest.raises(EngineError):
        async for delta in engine.chat_stream(chat()):
            received.append(delta)
    assert [d.text for d in received] == [DEFAULT_REPLY.split()[0]]


async def test_context_length_error_keeps_the_upstream_message(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    upstream.state.failure = "context_length"
    with pytest.raises(ContextLengthError) as info:
        await engine.chat(chat())
    assert info.value.message == CONTEXT_LENGTH_MESSAGE
    assert info.value.status_code == 400 and info.value.code == "context_length_exceeded"
    with pytest.raises(ContextLengthError):
        await anext(engine.completion_stream(CompletionInput("m", "x")))


async def test_other_400_is_a_bad_request(engine: OpenAICompatEngine, upstream: MockUpstream) -> None:
    upstream.state.failure = "bad_request"
    with pytest.raises(BadRequestError) as info:
        await engine.chat(chat())
    assert not isinstance(info.value, ContextLengthError)
    assert "temperature" in info.value.message


async def test_429_is_a_rate_limit_error_with_retry_after(
    engine: OpenAICompatEngine, upstream: MockUpstream
) -> None:
    upstream.state.failure = "rate_limit"
    with pytest.raises(RateLimitError) as info:
        await anext(engine.chat_stream(chat()))
    assert info.value.headers == {"Retry-After": "1"}


async def test_unreachable_upstream_is_an_engine_error() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAICompatEngine(OpenAICompatEngineConfig(name="gone", zone="on-prem", base_url=base_url))
    await engine.start()
    try:
        with pytest.raises(EngineError, match="connection failed"):
            await engine.chat(chat())
        with pytest.raises(EngineError):
            await anext(engine.chat_stream(chat()))
        health = await engine.health()
        assert not health.ok and "unreachable" in health.detail
    finally:
        await engine.aclose()


async def test_https_upstreams_keep_httpx_transport() -> None:
    base_url = f"https://127.0.0.1:{free_port()}/v1"
    engine = OpenAICompatEngine(OpenAICompatEngineConfig(name="tls", zone="eu-west", base_url=base_url))
    await engine.start()
    try:
        with pytest.raises(EngineError, match="connection failed: ConnectError"):
            await engine.chat(chat())
    finally:
        await engine.aclose()


async def test_slow_upstream_times_out_as_an_engine_error(upstream: MockUpstream) -> None:
    upstream.state.latency_s = 0.5
    engine = OpenAICompatEngine(config(upstream, read_timeout_s=0.05))
    await engine.start()
    try:
        with pytest.raises(EngineError, match="timed out"):
            await engine.chat(chat())
    finally:
        await engine.aclose()


@pytest.mark.parametrize("base_url", ["not a url", "ftp://example.org/v1", "/v1"])
async def test_invalid_base_url_is_refused_at_start(base_url: str) -> None:
    engine = OpenAICompatEngine(OpenAICompatEngineConfig(name="bad", zone="on-prem", base_url=base_url))
    with pytest.raises(ConfigError):
        await engine.start()


async def test_calls_before_start_are_engine_errors(upstream: MockUpstream) -> None:
    engine = OpenAICompatEngine(config(upstream))
    assert not (await engine.health()).ok
    with pytest.raises(EngineError, match="not started"):
        await engine.chat(chat())
