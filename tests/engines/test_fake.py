"""The fake engine: the conformance suite, plus the rules tests of the router and gateway rely on."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from socle.config import FakeEngineConfig
from socle.engines.base import ChatInput, CompletionInput, Engine, SamplingParams, Usage, collect
from socle.engines.fake import FakeEngine, hash_embedding, script_reply
from socle.errors import EngineError
from socle.testing.engines import EngineConformance, check_stream

REPLY = "The fake engine answers in ten words, always the same."


class TestFakeEngineConformance(EngineConformance):
    capabilities = frozenset({"chat", "completion", "embeddings"})
    normalised_embeddings = True

    @pytest.fixture
    def engine_factory(self) -> Callable[[], Engine]:
        return lambda: FakeEngine(FakeEngineConfig(name="fake", reply=REPLY))


async def started(**config: Any) -> FakeEngine:
    engine = FakeEngine(FakeEngineConfig(name="fake", **config))
    await engine.start()
    return engine


def chat(text: str = "one two three", **params: Any) -> ChatInput:
    return ChatInput("fake-model", ({"role": "user", "content": text},), SamplingParams(**params))


@pytest.mark.anyio
async def test_streams_the_reply_word_by_word() -> None:
    engine = await started(reply="Hello big world.")
    deltas = [d async for d in engine.chat_stream(chat())]
    assert [d.text for d in deltas] == ["Hello", " big", " world.", ""]
    assert check_stream(deltas).usage == Usage(prompt_tokens=3, completion_tokens=3)


@pytest.mark.anyio
async def test_max_tokens_counts_words() -> None:
    engine = await started(reply="a b c d e")
    result = await engine.complete(CompletionInput("fake-model", "x y", SamplingParams(max_tokens=2)))
    assert (result.text, result.finish_reason, result.usage) == ("a b", "length", Usage(2, 2))


@pytest.mark.anyio
async def test_stop_string_ends_the_text_before_it() -> None:
    engine = await started(reply="alpha beta STOP gamma")
    result = await collect(engine.chat_stream(chat(stop=("STOP",))))
    assert (result.text, result.finish_reason, result.usage.completion_tokens) == ("alpha beta ", "stop", 3)


@pytest.mark.anyio
async def test_fail_raises_before_the_first_delta_and_health_is_not_ok() -> None:
    engine = await started(fail=True)
    stream = engine.chat_stream(chat())
    with pytest.raises(EngineError):
        await anext(stream)
    with pytest.raises(EngineError):
        await engine.complete(CompletionInput("fake-model", "x"))
    with pytest.raises(EngineError):
        await engine.embed("fake-model", ["x"])
    assert not (await engine.health()).ok


@pytest.mark.anyio
async def test_not_started_is_not_healthy() -> None:
    engine = FakeEngine(FakeEngineConfig(name="fake"))
    assert not (await engine.health()).ok
    with pytest.raises(EngineError):
        await engine.chat(chat())


@pytest.mark.parametrize(
    ("reply", "max_tokens", "stop", "expected"),
    [
        ("", None, (), ((), "stop", 0)),
        ("  lead and trail  ", None, (), (("  lead", " and", " trail  "), "stop", 3)),
        ("a b c", 0, (), ((), "length", 0)),
        ("a b c", 3, (), (("a", " b", " c"), "stop", 3)),
        ("a b c", None, ("b c",), (("a", " "), "stop", 3)),
        ("a b c", 2, ("c",), (("a", " b"), "length", 2)),
        ("abc def", None, ("c", "b"), (("a",), "stop", 1)),
    ],
)
def test_script_reply(
    reply: str, max_tokens: int | None, stop: tuple[str, ...], expected: tuple[tuple[str, ...], str, int]
) -> None:
    script = script_reply(reply, max_tokens, stop)
    assert (script.pieces, script.finish_reason, script.completion_tokens) == expected


def test_hash_embedding_is_a_deterministic_unit_vector() -> None:
    vector = hash_embedding("hello")
    assert len(vector) == 16
    assert math.isclose(math.fsum(x * x for x in vector), 1.0)
    assert vector == hash_embedding("hello")
    assert vector != hash_embedding("hello!")
