"""The engine protocol: the one narrow interface every inference backend implements.

An engine is *a dialect* (how to talk to llama.cpp in-process, to an OpenAI-compatible server, to a
sentence-embedding model); *where* it is (path, URL, key, timeouts, zone, prices) is its configuration.
The router only ever sees this protocol. ``socle.testing.engines`` holds the conformance suite that
every implementation must pass.

Streams are the primitive: ``chat_stream`` and ``completion_stream`` yield :class:`Delta` objects and
the last one carries ``finish_reason`` and :class:`Usage`. ``chat`` and ``complete`` return the whole
answer; :func:`collect` builds one from a stream for engines that have no cheaper way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from socle.config import EngineConfig

__all__ = [
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
    "collect",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """What to generate. ``max_tokens=None`` means: up to the engine's context window."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class ChatInput:
    """A chat request as an engine sees it: the upstream model name is already mapped."""

    model: str
    messages: tuple[dict[str, Any], ...]
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True, slots=True)
class CompletionInput:
    model: str
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of streamed text. The final delta has ``finish_reason`` and ``usage`` set."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Generated:
    text: str
    finish_reason: FinishReason
    usage: Usage


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class EngineHealth:
    ok: bool
    detail: str = ""


@runtime_checkable
class Engine(Protocol):
    """An inference backend. Implementations: llamacpp, openai_compat, embeddings, fake."""

    config: EngineConfig

    @property
    def capabilities(self) -> frozenset[str]:
        """Subset of {"chat", "completion", "embeddings"}."""
        ...

    @property
    def model_id(self) -> str:
        """What answered, for traceability: ``sha256:<hex>`` of the model file or the upstream model id."""
        ...

    async def start(self) -> None:
        """Load the model or open the client; raise :class:`socle.errors.ConfigError` if it cannot."""
        ...

    async def aclose(self) -> None: ...

    async def health(self) -> EngineHealth: ...

    async def chat(self, request: ChatInput) -> Generated: ...

    def chat_stream(self, request: ChatInput) -> AsyncIterator[Delta]: ...

    async def complete(self, request: CompletionInput) -> Generated: ...

    def completion_stream(self, request: CompletionInput) -> AsyncIterator[Delta]: ...

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResult: ...


async def collect(stream: AsyncIterator[Delta]) -> Generated:
    """Drain a delta stream into one answer."""
    parts: list[str] = []
    finish: FinishReason = "stop"
    usage = Usage(0, 0)
    async for delta in stream:
        parts.append(delta.text)
        if delta.finish_reason is not None:
            finish = delta.finish_reason
        if delta.usage is not None:
            usage = delta.usage
    return Generated(text="".join(parts), finish_reason=finish, usage=usage)
