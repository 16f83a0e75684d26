"""OpenAI wire schemas shared by the gateway and the engines. Data only, no logic."""

from socle.protocol.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    KnowledgeOptions,
    StreamOptions,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "KnowledgeOptions",
    "StreamOptions",
]
