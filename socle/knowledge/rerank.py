"""Optional cross-encoder reranking of hybrid results, with a local model only.

A cross-encoder reads the query and a passage together and scores their relevance; it is slower than
the embedding search (one forward pass per candidate) and more precise. Socle ships none: an operator
who has one (e.g. a MiniLM cross-encoder for MS MARCO, or a multilingual one) sets
``knowledge.reranker_path`` to its directory and ``knowledge.reranker_sha256`` to the sha256 of its
``model.safetensors``. It is loaded offline, from safetensors only, like the embedding engines.
"""

from __future__ import annotations

import asyncio
from typing import Any

from socle.config import offline_environment
from socle.engines.files import resolve_model_path, verify_sha256
from socle.errors import ConfigError

__all__ = ["CrossEncoderReranker"]


class CrossEncoderReranker:
    """``await reranker(query, passages)`` → one relevance score per passage (higher is better)."""

    def __init__(self, path: str, sha256: str) -> None:
        self._path = path
        self._sha256 = sha256
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        offline_environment()
        directory = resolve_model_path(self._path)
        if not directory.is_dir():
            raise ConfigError(
                f"knowledge.reranker_path: {self._path!r} is not a directory ({directory} not found); it "
                "must be a local cross-encoder directory (config.json, tokenizer files, model.safetensors)"
            )
        verify_sha256(directory / "model.safetensors", self._sha256, what="knowledge reranker")
        try:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(
                str(directory), device="cpu", local_files_only=True, trust_remote_code=False
            )
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigError(
                f"knowledge.reranker_path: cannot load a cross-encoder from {directory}: {exc}"
            ) from exc

    async def __call__(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        async with self._lock:  # one forward pass at a time on the CPU
            scores = await asyncio.to_thread(self._model.predict, [(query, p) for p in passages])
        return [float(s) for s in scores]
