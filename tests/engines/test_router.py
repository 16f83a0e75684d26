"""Router: pools, aliases, least-busy balancing, caps with 503 + Retry-After, failover, health recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from socle.config import FakeEngineConfig, ModelRoute
from socle.engines.base import ChatInput, Delta, Engine, EngineHealth, SamplingParams
from socle.engines.fake import FakeEngine
from socle.engines.router import Router
from socle.errors import (
    EngineError,
    EngineUnavailableError,
    ModelNotFoundError,
    ResidencyError,
    UnsupportedError,
)

pytestmark = pytest.mark.anyio
REQUEST = ChatInput("m", ({"role": "user", "content": "hello"},), SamplingParams())


def _engine(name: str, **kw: object) -> FakeEngine:
    return FakeEngine(FakeEngineConfig(name=name, reply=f"from {name}", **kw))  # type: ignore[arg-type]


async def _router(*engines: FakeEngine, aliases: tuple[str, ...] = ()) -> Router:
    for e in engines:
        await e.start()
    return Router(
        engines, [ModelRoute(name="m", engines=[e.config.name for e in engines], aliases=list(aliases))]
    )


async def test_resolve_names_and_aliases() -> None:
    router = await _router(_engine("a"), aliases=("gpt-4o", "default"))
    assert router.resolve("gpt-4o") is router.resolve("m") is router.resolve("default")
    with pytest.raises(ModelNotFoundError) as info:
        router.resolve("other")
    assert info.value.status_code == 404 and info.value.code == "model_not_found"


async def test_unsupported_capability() -> None:
    router = await _router(_engine("a"))
    pool = router.resolve("m")
    with pytest.raises(UnsupportedError):
        pool.candidates("reranking")


async def test_least_busy_balancing() -> None:
    a, b = _engine("a", concurrency=4, token_delay_s=0.05), _engine("b", concurrency=4, token_delay_s=0.05)
    router = await _router(a, b)
    pool = router.resolve("m")
    streams = []
    for _ in range(4):
        stream, engine = await router.stream(pool, "chat", lambda e: e.chat_stream(REQUEST))
        streams.append((stream, engine.config.name))
    assert sorted(name for _, name in streams) == ["a", "a", "b", "b"]
    assert router.slots["a"].in_flight == 2 and router.slots["b"].in_flight == 2
    for stream, _ in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    assert router.slots["a"].in_flight == 0 and router.slots["b"].in_flight == 0


async def test_saturated_pool_is_refused_with_retry_after() -> None:
    router = await _router(_engine("a", concurrency=1, token_delay_s=0.05))
    pool = router.resolve("m")
    stream, _ = await router.stream(pool, "chat", lambda e: e.chat_stream(REQUEST))
    with pytest.raises(EngineUnavailableError) as info:
        await router.call(pool, "chat", lambda e: e.chat(REQUEST))
    assert info.value.status_code == 503 and info.value.headers["Retry-After"] == "1"
    async for _ in stream:
        pass
    result, _ = await router.call(pool, "chat", lambda e: e.chat(REQUEST))
    assert result.text == "from a"


async def test_failover_before_first_byte_and_recovery() -> None:
    broken, good = _engine("broken", fail=True), _engine("good")
    router = await _router(broken, good)
    pool = router.resolve("m")
    result, engine = await router.call(pool, "chat", lambda e: e.chat(REQUEST))
    assert engine is good and result.text == "from good"
    assert not router.slots["broken"].healthy
    stream, engine = await router.stream(pool, "chat", lambda e: e.chat_stream(REQUEST))
    assert engine is good and "".join([d.text async for d in stream]) == "from good"
    await router.check_health()
    assert not router.slots["broken"].healthy


class Flaky:
    """An engine that fails until told to recover, to test health-based recovery."""

    def __init__(self, inner: FakeEngine) -> None:
        self.inner, self.config, self.broken = inner, inner.config, True

    @property
    def capabilities(self) -> frozenset[str]:
        return self.inner.capabilities

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=not self.broken)

    async def chat(self, request: ChatInput) -> object:
        if self.broken:
            raise EngineError("connection refused")
        return await self.inner.chat(request)

    def chat_stream(self, request: ChatInput) -> AsyncIterator[Delta]:
        return self.inner.chat_stream(request)


async def test_health_checks_restore_a_recovered_engine() -> None:
    flaky = Flaky(_engine("flaky"))
    await flaky.inner.start()
    router = Router([flaky], [ModelRoute(name="m", engines=["flaky"])])  # type: ignore[list-item]
    pool = router.resolve("m")
    with pytest.raises(EngineUnavailableError):
        await router.call(pool, "chat", lambda e: e.chat(REQUEST))
    assert not router.slots["flaky"].healthy
    flaky.broken = False
    router.start_health_checks(0.01)
    for _ in range(200):
        if router.slots["flaky"].healthy:
            break
        await asyncio.sleep(0.01)
    await router.aclose()
    assert router.slots["flaky"].healthy
    result, _ = await router.call(pool, "chat", lambda e: e.chat(REQUEST))
    assert result.text == "from flaky"


async def test_all_engines_failing_gives_503() -> None:
    router = await _router(_engine("x", fail=True), _engine("y", fail=True))
    with pytest.raises(EngineUnavailableError) as info:
        await router.call(router.resolve("m"), "chat", lambda e: e.chat(REQUEST))
    assert "Retry-After" in info.value.headers
    assert all(s.in_flight == 0 for s in router.slots.values())


def test_every_engine_kind_has_an_implementation() -> None:
    from socle.engines import ENGINE_CLASSES

    assert set(ENGINE_CLASSES) == {"llamacpp", "openai_compat", "embeddings", "fake"}
    assert isinstance(_engine("a"), Engine)


async def test_zones_restrict_first_choice_and_failover() -> None:
    """Failover never leaves the allowed zones: the only healthy engine, outside them, is never called."""
    router = await _router(_engine("outside", zone="non-eu"), _engine("broken", zone="on-prem", fail=True))
    pool = router.resolve("m")
    tried: list[str] = []
    failed: list[str] = []

    def chat(engine: Engine) -> Any:
        tried.append(engine.config.name)
        return engine.chat(REQUEST)

    def stream(engine: Engine) -> AsyncIterator[Delta]:
        tried.append(engine.config.name)
        return engine.chat_stream(REQUEST)

    with pytest.raises(EngineUnavailableError):
        await router.call(
            pool, "chat", chat, zones={"on-prem"}, on_failover=lambda s, _: failed.append(s.name)
        )
    with pytest.raises(EngineUnavailableError):
        await router.stream(pool, "chat", stream, zones={"on-prem"})
    assert tried == ["broken", "broken"] and failed == ["broken"]
    with pytest.raises(ResidencyError):
        await router.call(pool, "chat", chat, zones={"eu"})
    result, engine = await router.call(pool, "chat", chat, zones={"on-prem", "non-eu"})
    assert engine.config.name == "outside" and result.text == "from outside"
