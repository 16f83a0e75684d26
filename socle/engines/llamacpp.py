"""The in-process llama.cpp engine: a GGUF model served to concurrent requests in shared batches.

:class:`LlamaCppEngine` is the dialect "llama.cpp, in this process". Its configuration
(:class:`socle.config.LlamaCppEngineConfig`) says which file, its approved sha256 and the sizes.

Life cycle: :meth:`~LlamaCppEngine.start` resolves the model path, checks the file's sha256 *before*
llama.cpp reads a byte of it, then loads the model and creates one context in a worker thread (the
event loop keeps serving). The context holds ``concurrency`` KV sequences of ``n_ctx`` tokens each and
belongs to one scheduler thread (:mod:`socle.engines._llama_batch`) that decodes every running request
in one ``llama_decode`` per step: continuous batching. :meth:`~LlamaCppEngine.aclose` stops that thread,
which frees the context and the model.

Per request, on the event loop: the messages are rendered with the model's own chat template, the
prompt is tokenized and checked against the context (a prompt that does not fit is a
:class:`~socle.errors.ContextLengthError` saying by how much; a generation that would overflow is cut
there with ``finish_reason="length"``), then a :class:`~socle.engines._llama_batch.Job` is submitted.
If all ``concurrency`` slots are taken it waits in a FIFO queue of ``queue_size`` places; when that is
full too, :class:`~socle.errors.EngineUnavailableError` is raised at once (the gateway answers 503 with
Retry-After). The stream then yields what the scheduler posts to the job's asyncio queue.

Cancellation: when the consumer stops iterating (closed generator, cancelled task, disconnected HTTP
client), the generator's ``finally`` cancels the job; the scheduler drops it before its next step and
removes its KV cells, so the slot serves the next request.

Sampling follows the OpenAI API: temperature defaults to 1.0, ``temperature=0`` is greedy decoding,
``top_p`` defaults to 1.0, a ``seed`` makes sampling repeatable, presence and frequency penalties apply
to the tokens generated so far.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING

from socle.config import LlamaCppEngineConfig
from socle.engines.base import (
    ChatInput,
    CompletionInput,
    Delta,
    EmbeddingResult,
    EngineHealth,
    Generated,
    SamplingParams,
    Usage,
    collect,
)
from socle.engines.files import resolve_model_path, verify_sha256
from socle.errors import (
    BadRequestError,
    ContextLengthError,
    EngineUnavailableError,
    SocleError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from socle.engines._chat_template import ChatTemplate
    from socle.engines._llama_batch import BatchScheduler
    from socle.engines._llama_runtime import LlamaRuntime, SamplerSpec

__all__ = ["LlamaCppEngine", "SchedulerStats"]

# Prompts longer than this many characters are tokenized in a worker thread, not on the event loop.
_INLINE_TOKENIZE_CHARS = 16_384


class SchedulerStats:
    """A snapshot of the scheduler: running and waiting requests, KV cells in use."""

    __slots__ = ("active", "waiting", "kv_cells")

    def __init__(self, active: int, waiting: int, kv_cells: int) -> None:
        self.active = active
        self.waiting = waiting
        self.kv_cells = kv_cells

    def __repr__(self) -> str:
        return f"SchedulerStats(active={self.active}, waiting={self.waiting}, kv_cells={self.kv_cells})"


class LlamaCppEngine:
    """A GGUF chat/completion model run in-process by llama.cpp with continuous batching."""

    def __init__(self, config: LlamaCppEngineConfig) -> None:
        self.config = config
        self._digest: str | None = None
        self._runtime: LlamaRuntime | None = None
        self._scheduler: BatchScheduler | None = None
        self._template: ChatTemplate | None = None
        self._start_lock = asyncio.Lock()

    # Identity -----------------------------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        if self._runtime is not None and self._template is None:
            return frozenset({"completion"})
        return frozenset({"chat", "completion"})

    @property
    def model_id(self) -> str:
        return f"sha256:{self._digest or self.config.sha256}"

    # Life cycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Verify the model file, load it and start the scheduler thread. Idempotent."""
        async with self._start_lock:
            if self._scheduler is not None:
                return
            config = self.config
            path = resolve_model_path(config.model_path)
            self._digest = await asyncio.to_thread(
                verify_sha256, path, config.sha256, what=f"engine {config.name}"
            )
            runtime, template = await asyncio.to_thread(self._load, path)
            from socle.engines._llama_batch import BatchScheduler

            try:
                scheduler = BatchScheduler(
                    runtime,
                    n_slots=config.concurrency,
                    n_batch=runtime.options.n_batch,
                    queue_size=config.queue_size,
                    name=config.name,
                )
                scheduler.start()
            except BaseException:
                runtime.close()
                raise
            self._runtime, self._template, self._scheduler = runtime, template, scheduler

    def _load(self, path: Path) -> tuple[LlamaRuntime, ChatTemplate | None]:
        """Worker thread: import llama.cpp, load the model, create the context, compile the template."""
        from socle.engines._chat_template import ChatTemplate
        from socle.engines._llama_runtime import LlamaRuntime, RuntimeOptions

        config = self.config
        # Every decoding sequence adds one token per step: a batch holds at least one per slot.
        options = RuntimeOptions(
            n_seq=config.concurrency,
            n_ctx_seq=config.n_ctx,
            n_batch=max(config.n_batch, config.concurrency),
            threads=config.threads,
        )
        runtime = LlamaRuntime(path, options)
        try:
            source = config.chat_template or runtime.meta("tokenizer.chat_template")
            template = None
            if source:
                template = ChatTemplate(
                    source,
                    bos_token=runtime.token_text(runtime.bos),
                    eos_token=runtime.token_text(runtime.eos),
                )
        except BaseException:
            runtime.close()
            raise
        return runtime, template

    async def aclose(self) -> None:
        """Stop the scheduler (running requests end with an error) and free the model and context."""
        scheduler, self._scheduler = self._scheduler, None
        self._runtime = None
        if scheduler is not None:
            scheduler.stop()
            await asyncio.to_thread(scheduler.join)

    async def health(self) -> EngineHealth:
        scheduler = self._scheduler
        if scheduler is None:
            return EngineHealth(ok=False, detail="not started")
        if scheduler.failure is not None or not scheduler.is_alive():
            return EngineHealth(ok=False, detail=f"scheduler stopped: {scheduler.failure!r}")
        return EngineHealth(ok=True, detail=f"{scheduler.active} running, {scheduler.waiting} waiting")

    @property
    def active_sequences(self) -> int:
        """Requests holding a slot of the batch (prefilling or decoding)."""
        return self._scheduler.active if self._scheduler is not None else 0

    @property
    def queued_requests(self) -> int:
        """Requests waiting for a free slot."""
        return self._scheduler.waiting if self._scheduler is not None else 0

    async def scheduler_stats(self) -> SchedulerStats:
        """Running and waiting requests and the KV cells they hold (asked of the scheduler thread)."""
        scheduler, runtime = self._require()
        slots = range(self.config.concurrency)
        # All three are read on the scheduler thread between two steps, so they agree with each other.
        future = scheduler.call(
            lambda: SchedulerStats(
                active=scheduler.active,
                waiting=scheduler.waiting,
                kv_cells=sum(runtime.used_cells(slot) for slot in slots),
            )
        )
        return await asyncio.wrap_future(future)

    # Requests -----------------------------------------------------------------------------------------
    async def chat(self, request: ChatInput) -> Generated:
        return await collect(self.chat_stream(request))

    async def complete(self, request: CompletionInput) -> Generated:
        return await collect(self.completion_stream(request))

    async def chat_stream(self, request: ChatInput) -> AsyncGenerator[Delta, None]:
        _, runtime = self._require()
        if self._template is None:
            raise UnsupportedError(f"model {request.model!r} has no chat template; use completions")
        prompt = self._template.render(request.messages)
        bos = self._template.bos_token  # a template that writes the BOS text itself gets no second one
        add_bos = runtime.add_bos and not (bos and prompt.startswith(bos))
        async with aclosing(
            self._generate(prompt, request.params, add_bos=add_bos, param="messages")
        ) as stream:
            async for delta in stream:
                yield delta

    async def completion_stream(self, request: CompletionInput) -> AsyncGenerator[Delta, None]:
        _, runtime = self._require()
        stream = self._generate(request.prompt, request.params, add_bos=runtime.add_bos, param="prompt")
        async with aclosing(stream):  # closing this generator closes the inner one at once
            async for delta in stream:
                yield delta

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResult:
        raise UnsupportedError(f"model {model!r} is a text generation model; it does not make embeddings")

    # Internals ----------------------------------------------------------------------------------------
    def _require(self) -> tuple[BatchScheduler, LlamaRuntime]:
        scheduler, runtime = self._scheduler, self._runtime
        if scheduler is None or runtime is None:
            raise EngineUnavailableError(f"engine {self.config.name} is not started")
        return scheduler, runtime

    async def _tokenize(self, runtime: LlamaRuntime, prompt: str, *, add_bos: bool) -> list[int]:
        if len(prompt) > _INLINE_TOKENIZE_CHARS:
            tokens = await asyncio.to_thread(runtime.tokenize, prompt, add_special=add_bos)
        else:
            tokens = runtime.tokenize(prompt, add_special=add_bos)
        if not tokens:
            if runtime.bos < 0:
                raise BadRequestError("the prompt is empty", param="prompt")
            tokens = [runtime.bos]
        return tokens

    def _check_context(self, n_prompt: int, param: str) -> int:
        """Raise if the prompt leaves no room; return how many tokens may be generated."""
        n_ctx = self.config.n_ctx
        if n_prompt >= n_ctx:
            over = n_prompt - n_ctx + 1
            raise ContextLengthError(
                f"This model's context is {n_ctx} tokens; the prompt has {n_prompt} tokens, {over} too many "
                "(at least one token must be left for the answer).",
                param=param,
            )
        return n_ctx - n_prompt

    async def _generate(
        self, prompt: str, params: SamplingParams, *, add_bos: bool, param: str
    ) -> AsyncGenerator[Delta, None]:
        from socle.engines._llama_batch import Job

        scheduler, runtime = self._require()
        tokens = await self._tokenize(runtime, prompt, add_bos=add_bos)
        room = self._check_context(len(tokens), param)
        limit = room if params.max_tokens is None else min(room, params.max_tokens)
        if limit <= 0:
            yield Delta("", finish_reason="length", usage=Usage(len(tokens), 0))
            return
        queue: asyncio.Queue[Delta | SocleError] = asyncio.Queue()
        job = Job(
            tokens,
            limit=limit,
            spec=_sampler_spec(params),
            stops=params.stop,
            loop=asyncio.get_running_loop(),
            queue=queue,
        )
        scheduler.submit(job)
        try:
            while True:
                event = await queue.get()
                if isinstance(event, SocleError):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            scheduler.cancel(job)


def _sampler_spec(params: SamplingParams) -> SamplerSpec:
    """OpenAI defaults: temperature 1, top_p 1, a random seed unless one is given."""
    from socle.engines._llama_runtime import SamplerSpec

    temperature = 1.0 if params.temperature is None else max(0.0, params.temperature)
    top_p = 1.0 if params.top_p is None else min(1.0, max(0.0, params.top_p))
    # 0xFFFFFFFF is llama.cpp's "random seed": a given seed is mapped below it.
    seed = random.getrandbits(32) if params.seed is None else params.seed % 0xFFFFFFFF
    return SamplerSpec(
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        presence_penalty=params.presence_penalty or 0.0,
        frequency_penalty=params.frequency_penalty or 0.0,
    )
