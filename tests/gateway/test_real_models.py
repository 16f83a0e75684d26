"""The embedded defaults for real: SmolLM2 through llama.cpp and all-MiniLM-L6-v2, served by a real
server and used through the official `openai` client, sync and async."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from socle.config import load_settings
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY

pytestmark = [pytest.mark.llm, pytest.mark.embeddings]
CHAT_MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = load_settings(
        None, environ={}, data_dir=tmp_path_factory.mktemp("data"), admin_key=ADMIN_KEY, port=0
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.api, api_key=server.admin_key, max_retries=0) as c:
        yield c


def test_openai_client_streams_an_answer_from_the_bundled_model(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.strip()) > 5  # the 135M model is weak: it answers, not necessarily "Paris"
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 24


def test_non_stream_matches_stream_when_greedy(client: openai.OpenAI) -> None:
    kwargs = {"model": CHAT_MODEL, "messages": QUESTION, "max_tokens": 16, "temperature": 0}
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(**kwargs, stream=True)
        if c.choices
    )
    assert whole.choices[0].message.content == streamed


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def ask() -> str | None:
        answer = client.chat.completions.create(
            model=CHAT_MODEL, messages=QUESTION, max_tokens=16, temperature=0.9, seed=1234
        )
        return answer.choices[0].message.content

    assert ask() == ask()


def test_stop_and_max_tokens(client: openai.OpenAI) -> None:
    free = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=16, temperature=0)
    text = free.choices[0].message.content or ""
    word = text.split()[2] if len(text.split()) > 2 else text[-3:]
    stopped = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=16, temperature=0, stop=[word]
    )
    assert word not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"
    cut = client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=2, temperature=0)
    assert cut.choices[0].finish_reason == "length" and cut.usage and cut.usage.completion_tokens == 2


def test_completions_endpoint(client: openai.OpenAI) -> None:
    done = client.completions.create(
        model=CHAT_MODEL, prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert done.choices[0].text and done.usage and done.usage.completion_tokens <= 6


def test_prompt_longer_than_context_says_by_how_much(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "word " * 5000}]
        )
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "too many" in error["message"]


def test_real_embeddings(client: openai.OpenAI) -> None:
    texts = ["The cat sits on the mat.", "A cat is resting on a rug.", "Quarterly financial report for 2025."]
    result = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    single = client.embeddings.create(model="all-minilm-l6-v2", input=texts[0])
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-4)


@pytest.mark.anyio
async def test_async_client(server: RunningServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.api, api_key=server.admin_key, max_retries=0) as client:
        answer = await client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, max_tokens=8)
    assert answer.choices[0].message.content


def test_disconnect_mid_stream_frees_the_llama_slot(server: RunningServer) -> None:
    slot = server.services.router.slots["smollm2"]
    body = {"model": CHAT_MODEL, "messages": QUESTION, "max_tokens": 400, "stream": True}
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.stream("POST", server.api + "/chat/completions", json=body, headers=headers, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        next(lines)
    deadline = time.monotonic() + 10
    while slot.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slot.in_flight == 0
    engine = slot.engine
    stats = server.run(engine.scheduler_stats())  # type: ignore[attr-defined]
    while stats.active and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = server.run(engine.scheduler_stats())  # type: ignore[attr-defined]
    assert stats.active == 0 and stats.kv_cells == 0, stats
