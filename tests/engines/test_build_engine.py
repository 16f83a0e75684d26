"""The engine factory: every configurable kind maps to a class, built lazily; the package surface."""

from __future__ import annotations

import subprocess
import sys
import typing

import socle.engines
from socle.config import EngineConfig, FakeEngineConfig, OpenAICompatEngineConfig
from socle.engines import ENGINE_CLASSES, Engine, build_engine
from socle.engines.fake import FakeEngine
from socle.engines.openai_compat import OpenAICompatEngine


def test_every_configurable_kind_is_registered() -> None:
    union = typing.get_args(typing.get_args(EngineConfig)[0])
    kinds = {typing.get_args(config.model_fields["kind"].annotation)[0] for config in union}
    assert set(ENGINE_CLASSES) == kinds
    assert all(target.startswith("socle.engines.") and ":" in target for target in ENGINE_CLASSES.values())


def test_build_engine_returns_a_new_unstarted_engine() -> None:
    fake = build_engine(FakeEngineConfig(name="f"))
    remote = build_engine(
        OpenAICompatEngineConfig(name="r", zone="eu-west", base_url="http://127.0.0.1:9/v1")
    )
    assert isinstance(fake, FakeEngine) and isinstance(fake, Engine)
    assert isinstance(remote, OpenAICompatEngine) and isinstance(remote, Engine)
    assert build_engine(FakeEngineConfig(name="f")) is not fake


def test_exported_names() -> None:
    assert sorted(socle.engines.__all__) == sorted(
        [
            "ENGINE_CLASSES",
            "ChatInput",
            "CompletionInput",
            "Delta",
            "EmbeddingResult",
            "Engine",
            "EngineHealth",
            "FinishReason",
            "Generated",
            "SamplingParams",
            "Usage",
            "build_engine",
            "collect",
        ]
    )
    assert all(hasattr(socle.engines, name) for name in socle.engines.__all__)


def test_importing_the_package_loads_no_engine() -> None:
    heavy = ("httpx", "llama_cpp", "torch", "sentence_transformers")
    code = f"import sys, socle.engines; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
