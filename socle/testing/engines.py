"""The engine conformance suite: the behaviour every :class:`~socle.engines.base.Engine` must show.

A test module subclasses :class:`EngineConformance`, says what its engine promises in a few class
attributes, and provides an ``engine_factory`` fixture that returns a new, not yet started engine. The
suite starts and closes engines itself (``engine`` fixture), so it also checks that closing twice is
safe. Nothing here assumes the reply's text: checks compare an engine with itself (stream against
whole answer, stop against no stop), so a real model passes as well as the fake::

    import pytest
    from socle.config import FakeEngineConfig
    from socle.engines.fake import FakeEngine
    from socle.testing.engines import EngineConformance


    class TestFakeEngine(EngineConformance):
        capabilities = frozenset({"chat", "completion", "embeddings"})
        normalised_embeddings = True

        @pytest.fixture
        def engine_factory(self):
            return lambda: FakeEngine(FakeEngineConfig(name="fake"))

An engine that is slow to start (a model to load) can override ``engine`` with a wider scope, e.g.
``@pytest.fixture(scope="class") async def engine(self, ...)`` (it must then not depend on
function-scoped fixtures).

The tests are async through AnyIO's pytest plugin (``@pytest.mark.anyio``), like the rest of Socle's
async tests: the test session provides the ``anyio_backend`` fixture (Socle's ``tests/conftest.py``
returns ``"asyncio"`` at session scope; a plugin's own test suite must do the same).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal

import anyio
import pytest

from socle.engines.base import (
    ChatInput,
    CompletionInput,
    Delta,
    Engine,
    Generated,
    SamplingParams,
    Usage,
)

__all__ = ["EngineConformance", "Mode", "check_stream"]

Mode = Literal["chat", "chat_stream", "complete", "completion_stream"]
_MODES: tuple[Mode, ...] = ("chat", "chat_stream", "complete", "completion_stream")
_CAPABILITY: dict[Mode, str] = {
    "chat": "chat",
    "chat_stream": "chat",
    "complete": "completion",
    "completion_stream": "completion",
}
_KNOWN_CAPABILITIES = frozenset({"chat", "completion", "embeddings"})


def check_stream(deltas: list[Delta]) -> Generated:
    """Assert the stream contract and return the answer it carries.

    Every item is a :class:`Delta`; exactly one has a ``finish_reason`` and it is the last one, which
    also carries the usage; no other delta carries usage.
    """
    assert deltas, "a stream must yield at least its final delta"
    assert all(isinstance(d, Delta) for d in deltas), deltas
    assert all(isinstance(d.text, str) for d in deltas), deltas
    finals = [d for d in deltas if d.finish_reason is not None]
    assert len(finals) == 1, f"exactly one delta must carry finish_reason, got {len(finals)}"
    last = deltas[-1]
    assert last.finish_reason in ("stop", "length"), "the finish_reason must be on the last delta"
    assert isinstance(last.usage, Usage), "the last delta must carry the usage"
    assert all(d.usage is None for d in deltas[:-1]), "only the last delta may carry usage"
    return Generated(text="".join(d.text for d in deltas), finish_reason=last.finish_reason, usage=last.usage)


class EngineConformance:
    """Base class of an engine's conformance tests; see the module docstring for an example.

    Class attributes say what the engine promises; the defaults are the strictest.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "completion", "embeddings"})
    """What ``engine.capabilities`` must be exactly; tests of other capabilities are skipped."""
    normalised_embeddings: ClassVar[bool] = True
    """Whether embedding vectors are promised to have unit length."""
    deterministic: ClassVar[bool] = True
    """Whether greedy decoding (temperature 0, fixed seed) gives the same text every time."""
    length_observable: ClassVar[bool] = True
    """Whether ``max_tokens`` visibly cuts answers to the prompts below (finish reason ``length``)."""
    reports_usage: ClassVar[bool] = True
    """Whether usage counts are real (an upstream that sends none gives zeros)."""
    model: ClassVar[str] = "conformance-model"
    embedding_model: ClassVar[str] = "conformance-embeddings"
    chat_prompt: ClassVar[str] = "Write three long sentences about the sea."
    completion_prompt: ClassVar[str] = "The sea is large, and the ships that cross it"
    max_tokens: ClassVar[int] = 24
    """Cap on every generation of the suite, so that real models stay fast."""
    timeout_s: ClassVar[float] = 120.0

    # Fixtures -------------------------------------------------------------------------------------
    @pytest.fixture
    def engine_factory(self) -> Callable[[], Engine]:
        """Subclasses return a callable that builds a new, not yet started, engine."""
        raise NotImplementedError(f"{type(self).__name__} must provide an engine_factory fixture")

    @pytest.fixture
    async def engine(self, engine_factory: Callable[[], Engine]) -> AsyncIterator[Engine]:
        engine = engine_factory()
        await engine.start()
        try:
            yield engine
        finally:
            await engine.aclose()

    # Helpers --------------------------------------------------------------------------------------
    def params(self, **overrides: Any) -> SamplingParams:
        """Greedy sampling capped at :attr:`max_tokens`, with ``overrides``."""
        values: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0.0, "seed": 0}
        values.update(overrides)
        return SamplingParams(**values)

    def require(self, capability: str) -> None:
        if capability not in self.capabilities:
            pytest.skip(f"the engine does not declare {capability!r}")

    async def generate(self, engine: Engine, mode: Mode, params: SamplingParams) -> Generated:
        """One generation in ``mode``; streams are checked against the stream contract."""
        self.require(_CAPABILITY[mode])
        with anyio.fail_after(self.timeout_s):
            if mode == "chat":
                return await engine.chat(self.chat_input(params))
            if mode == "complete":
                return await engine.complete(CompletionInput(self.model, self.completion_prompt, params))
            if mode == "chat_stream":
                stream = engine.chat_stream(self.chat_input(params))
            else:
                stream = engine.completion_stream(CompletionInput(self.model, self.completion_prompt, params))
            return check_stream([delta async for delta in stream])

    def chat_input(self, params: SamplingParams) -> ChatInput:
        return ChatInput(self.model, ({"role": "user", "content": self.chat_prompt},), params)

    # Identity and lifecycle -----------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_implements_the_protocol(self, engine: Engine) -> None:
        assert isinstance(engine, Engine)
        assert engine.capabilities == self.capabilities
        assert engine.capabilities <= _KNOWN_CAPABILITIES
        assert isinstance(engine.model_id, str) and engine.model_id

    @pytest.mark.anyio
    async def test_health_ok(self, engine: Engine) -> None:
        health = await engine.health()
        assert health.ok, health.detail

    @pytest.mark.anyio
    async def test_close_twice_is_safe(self, engine_factory: Callable[[], Engine]) -> None:
        engine = engine_factory()
        await engine.start()
        await engine.aclose()
        await engine.aclose()

    # Generation -----------------------------------------------------------------------------------
    @pytest.mark.anyio
    @pytest.mark.parametrize("mode", _MODES)
    async def test_generates_text_and_usage(self, engine: Engine, mode: Mode) -> None:
        result = await self.generate(engine, mode, self.params())
        assert isinstance(result, Generated)
        assert isinstance(result.text, str)
        assert result.finish_reason in ("stop", "length")
        assert isinstance(result.usage, Usage)
        if self.reports_usage:
            assert result.usage.prompt_tokens > 0
            assert 0 < result.usage.completion_tokens <= self.max_tokens

    @pytest.mark.anyio
    @pytest.mark.parametrize("mode", ["chat", "complete"])
    async def test_stream_matches_whole_answer(
        self, engine: Engine, mode: Literal["chat", "complete"]
    ) -> None:
        whole = await self.generate(engine, mode, self.params())
        streamed = await self.generate(
            engine, "chat_stream" if mode == "chat" else "completion_stream", self.params()
        )
        assert streamed.usage.prompt_tokens == whole.usage.prompt_tokens
        if self.deterministic:
            assert streamed.text == whole.text
            assert streamed.finish_reason == whole.finish_reason
            assert streamed.usage == whole.usage

    @pytest.mark.anyio
    @pytest.mark.parametrize("mode", _MODES)
    async def test_max_tokens_gives_length(self, engine: Engine, mode: Mode) -> None:
        if not self.length_observable:
            pytest.skip("max_tokens is not observable on this engine")
        result = await self.generate(engine, mode, self.params(max_tokens=2))
        assert result.finish_reason == "length"
        if self.reports_usage:
            assert 0 < result.usage.completion_tokens <= 2

    @pytest.mark.anyio
    @pytest.mark.parametrize("mode", _MODES)
    async def test_stop_strings_end_the_text(self, engine: Engine, mode: Mode) -> None:
        baseline = await self.generate(engine, mode, self.params())
        words = baseline.text.split()
        if len(words) < 2:
            pytest.skip(f"the answer is too short to pick a stop string from: {baseline.text!r}")
        stop = words[len(words) // 2]
        result = await self.generate(engine, mode, self.params(stop=(stop, "\x00never\x00")))
        assert stop not in result.text
        assert result.finish_reason == "stop"
        if self.deterministic:
            assert result.text == baseline.text[: baseline.text.index(stop)]

    @pytest.mark.anyio
    async def test_stream_closed_early_frees_the_engine(self, engine: Engine) -> None:
        """A client that goes away mid-stream must not leak a slot, a connection or a sequence."""
        mode: Mode = "chat_stream" if "chat" in self.capabilities else "completion_stream"
        self.require(_CAPABILITY[mode])
        for _ in range(3):
            if mode == "chat_stream":
                stream = engine.chat_stream(self.chat_input(self.params()))
            else:
                stream = engine.completion_stream(
                    CompletionInput(self.model, self.completion_prompt, self.params())
                )
            with anyio.fail_after(self.timeout_s):
                first = await anext(stream)
                assert isinstance(first, Delta)
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        result = await self.generate(engine, mode, self.params())
        assert result.finish_reason in ("stop", "length")

    @pytest.mark.anyio
    async def test_concurrent_streams(self, engine: Engine) -> None:
        mode: Mode = "chat_stream" if "chat" in self.capabilities else "completion_stream"
        self.require(_CAPABILITY[mode])
        results: list[Generated] = []

        async def one() -> None:
            results.append(await self.generate(engine, mode, self.params()))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
        assert len(results) == 3
        assert all(r.finish_reason in ("stop", "length") for r in results)

    # Embeddings -----------------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_embeddings(self, engine: Engine) -> None:
        self.require("embeddings")
        texts = ["The sea is blue.", "Engines must pass the conformance suite.", "The sea is blue."]
        with anyio.fail_after(self.timeout_s):
            result = await engine.embed(self.embedding_model, texts)
            again = await engine.embed(self.embedding_model, texts[:1])
        assert len(result.vectors) == len(texts)
        dim = len(result.vectors[0])
        assert dim > 0
        for vector in result.vectors:
            assert len(vector) == dim
            assert all(isinstance(x, float) for x in vector)
            if self.normalised_embeddings:
                assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-3)
        assert result.vectors[0] == pytest.approx(result.vectors[2], abs=1e-5)
        assert again.vectors[0] == pytest.approx(result.vectors[0], abs=1e-4)
        assert result.vectors[0] != pytest.approx(result.vectors[1], abs=1e-3)
        assert result.prompt_tokens >= 0
        if self.reports_usage:
            assert result.prompt_tokens > 0
