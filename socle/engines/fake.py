"""A deterministic engine with no model, for tests, demos and failover drills.

The fake answers ``config.reply`` to everything, streamed one word at a time (a word and the
whitespace before it is one "token"), ``config.token_delay_s`` apart. It behaves like a real engine
where the router and the gateway can observe it: ``max_tokens`` cuts the reply (finish ``length``), stop
strings end it before the stop text (finish ``stop``), usage counts words (prompt tokens are the words of
the prompt or of the messages' text), embeddings are unit vectors derived from a hash of the text, and
``config.fail`` makes every call fail with :class:`~socle.errors.EngineError` before the first byte.

:func:`script_reply` holds the generation rules so that the mock OpenAI upstream in
:mod:`socle.testing.mock_upstream` answers exactly as this engine does.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from socle.config import EngineConfig, FakeEngineConfig
from socle.engines.base import (
    ChatInput,
    CompletionInput,
    Delta,
    EmbeddingResult,
    EngineHealth,
    FinishReason,
    Generated,
    SamplingParams,
    Usage,
    collect,
)
from socle.errors import EngineError

__all__ = [
    "EMBEDDING_DIM",
    "FakeEngine",
    "ScriptedReply",
    "count_words",
    "hash_embedding",
    "message_texts",
    "script_reply",
]

EMBEDDING_DIM: Final = 16
_PIECE = re.compile(r"\s*\S+")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """What a scripted engine emits: ``pieces`` join to the output text, one piece per streamed delta."""

    pieces: tuple[str, ...]
    finish_reason: FinishReason
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _split(reply: str) -> list[str]:
    pieces = _PIECE.findall(reply)
    tail = reply[sum(len(p) for p in pieces) :]
    if tail:  # trailing whitespace stays with the last word
        if pieces:
            pieces[-1] += tail
        else:
            pieces.append(tail)
    return pieces


def script_reply(reply: str, max_tokens: int | None, stop: Sequence[str]) -> ScriptedReply:
    """Generate ``reply`` word by word, as a real engine would under ``max_tokens`` and ``stop``.

    Tokens are produced one at a time until the text produced so far contains a stop string (the output
    ends just before it, finish ``stop``) or ``max_tokens`` tokens were produced while more remained
    (finish ``length``). The token that completed a stop string is counted, as engines do.
    """
    tokens = _split(reply)
    limit = len(tokens) if max_tokens is None else max(0, min(max_tokens, len(tokens)))
    produced = ""
    end = None
    used = 0
    for token in tokens[:limit]:
        produced += token
        used += 1
        hits = [i for i in (produced.find(s) for s in stop if s) if i >= 0]
        if hits:
            end = min(hits)
            break
    if end is not None:
        finish: FinishReason = "stop"
    else:
        finish = "length" if limit < len(tokens) else "stop"
        end = len(produced)
    pieces: list[str] = []
    budget = end
    for token in tokens[:used]:
        if budget <= 0:
            break
        pieces.append(token[:budget])
        budget -= len(token)
    return ScriptedReply(pieces=tuple(p for p in pieces if p), finish_reason=finish, completion_tokens=used)


def count_words(texts: Iterable[str]) -> int:
    """The fake tokenizer: whitespace-separated words."""
    return sum(len(_WORD.findall(text)) for text in texts)


def message_texts(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The text of chat messages: string contents and the ``text`` of content parts."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return texts


def hash_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A unit vector that depends only on ``text``: signed 16-bit values from a blake2b digest."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=2 * dim).digest()
    values = [int.from_bytes(digest[i : i + 2], "big", signed=True) for i in range(0, 2 * dim, 2)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class FakeEngine:
    """An :class:`~socle.engines.base.Engine` that answers ``config.reply``; see the module docstring."""

    def __init__(self, config: FakeEngineConfig) -> None:
        self.config: EngineConfig = config
        self._config = config
        self._started = False

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"chat", "completion", "embeddings"})

    @property
    def model_id(self) -> str:
        return f"fake:{self._config.name}"

    async def start(self) -> None:
        self._started = True

    async def aclose(self) -> None:
        self._started = False

    async def health(self) -> EngineHealth:
        if self._config.fail:
            return EngineHealth(ok=False, detail="configured to fail")
        if not self._started:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(ok=True)

    async def chat(self, request: ChatInput) -> Generated:
        return await collect(self.chat_stream(request))

    def chat_stream(self, request: ChatInput) -> AsyncIterator[Delta]:
        return self._stream(count_words(message_texts(request.messages)), request.params)

    async def complete(self, request: CompletionInput) -> Generated:
        return await collect(self.completion_stream(request))

    def completion_stream(self, request: CompletionInput) -> AsyncIterator[Delta]:
        return self._stream(count_words([request.prompt]), request.params)

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResult:
        self._check()
        return EmbeddingResult(
            vectors=[hash_embedding(text) for text in inputs], prompt_tokens=count_words(inputs)
        )

    def _check(self) -> None:
        if self._config.fail:
            raise EngineError(f"engine {self._config.name} is configured to fail")
        if not self._started:
            raise EngineError(f"engine {self._config.name} is not started")

    async def _stream(self, prompt_tokens: int, params: SamplingParams) -> AsyncIterator[Delta]:
        self._check()
        script = script_reply(self._config.reply, params.max_tokens, params.stop)
        delay = self._config.token_delay_s
        for index, piece in enumerate(script.pieces):
            if delay and index:
                await asyncio.sleep(delay)
            yield Delta(piece)
        yield Delta(
            "", finish_reason=script.finish_reason, usage=Usage(prompt_tokens, script.completion_tokens)
        )
