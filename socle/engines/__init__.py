"""Inference engines behind one narrow protocol, and the factory that builds them from configuration.

Each engine kind of :data:`socle.config.EngineConfig` maps to one class in :data:`ENGINE_CLASSES`,
declared as data (``kind -> "module:Class"``) so that a test can check that every configurable kind has
an implementation. :func:`build_engine` imports the implementing module only when an engine of that kind
is configured: importing :mod:`socle.engines` loads neither llama.cpp, nor torch, nor httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, cast

from socle.config import EngineConfig
from socle.engines.base import (
    ChatInput,
    CompletionInput,
    Delta,
    EmbeddingResult,
    Engine,
    EngineHealth,
    FinishReason,
    Generated,
    SamplingParams,
    Usage,
    collect,
)
from socle.errors import ConfigError

__all__ = [
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

ENGINE_CLASSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "llamacpp": "socle.engines.llamacpp:LlamaCppEngine",
        "embeddings": "socle.engines.embeddings:SentenceEmbeddingsEngine",
        "openai_compat": "socle.engines.openai_compat:OpenAICompatEngine",
        "fake": "socle.engines.fake:FakeEngine",
    }
)
"""Engine kind (``config.kind``) to the class implementing it, as ``"module:Class"``."""


def build_engine(config: EngineConfig) -> Engine:
    """A new, not yet started, engine for ``config``. Call ``await engine.start()`` before use."""
    target = ENGINE_CLASSES.get(config.kind)
    if target is None:
        raise ConfigError(f"engine {config.name}: unknown engine kind {config.kind!r}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"engine {config.name}: the {config.kind} engine cannot be loaded: {exc}") from exc
    engine_class = getattr(module, class_name)
    return cast(Engine, engine_class(config))
