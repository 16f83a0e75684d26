"""Continuous batching: one thread decodes every running request of a llama.cpp engine together.

The scheduler owns the llama context. The context holds ``n_slots`` independent KV sequences; each
running request (a :class:`Job`) occupies one slot. Every step of :meth:`BatchScheduler.run`:

1. **admit** waiting jobs into free slots (FIFO, lowest slot first) and **reap** cancelled ones: their
   KV cells are removed with ``llama_memory_seq_rm`` and the slot is free for the next step;
2. **build one llama_batch**: the last sampled token of every decoding sequence (one token each, with
   logits), then prompt tokens of prefilling sequences, in admission order, until ``n_batch`` tokens.
   A long prompt is thus prefilled in chunks across steps and never stalls the decoding sequences for
   more than one batch; several short prompts are prefilled together in one batch;
3. **decode** the batch once (``llama_decode``; the GIL is released for its whole duration);
4. **sample** every sequence that has an output row, with its own sampler chain (greedy, or temperature,
   top-p and seed), turn the token into text with :class:`TextStream` and post one event per sequence.

Sequences join and leave between steps, so a new request never waits for the current ones to finish:
it only waits for a free slot. Events go to the asyncio side in one ``call_soon_threadsafe`` per event
loop per step, where each job's ``asyncio.Queue`` receives :class:`Delta` objects (the last one has
``finish_reason`` and ``usage``) or a :class:`SocleError` to raise.

The batch arrays (tokens, positions, sequence ids, output flags) are ctypes arrays allocated once and
filled with slice assignments; the per-token Python work is a sampler call, a cached piece lookup and
the stop-string check.
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import llama_cpp

from socle.engines._llama_runtime import LlamaRuntime, SamplerSpec
from socle.engines._text_stream import TextStream
from socle.engines.base import Delta, FinishReason, Usage
from socle.errors import EngineError, EngineUnavailableError, SocleError

__all__ = ["BatchScheduler", "Job"]

logger = logging.getLogger("socle.engines.llamacpp")

T = TypeVar("T")
Event = Delta | SocleError


class Job:
    """One generation request, from submission to its last event.

    The engine fills the request fields; the scheduler thread owns the decoding state once the job is
    admitted. ``cancelled`` is the only field another thread writes after submission.
    """

    __slots__ = (
        "prompt",
        "limit",
        "spec",
        "loop",
        "queue",
        "cancelled",
        "slot",
        "sampler",
        "text",
        "n_prefilled",
        "n_past",
        "n_generated",
        "last_token",
    )

    def __init__(
        self,
        prompt: list[int],
        *,
        limit: int,
        spec: SamplerSpec,
        stops: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Event],
    ) -> None:
        self.prompt = prompt
        self.limit = limit
        self.spec = spec
        self.loop = loop
        self.queue = queue
        self.cancelled = False
        self.slot = -1
        self.sampler: Any = None
        self.text = TextStream(stops)
        self.n_prefilled = 0
        self.n_past = 0
        self.n_generated = 0
        self.last_token = -1

    @property
    def prefilling(self) -> bool:
        return self.n_prefilled < len(self.prompt)


class _Batch:
    """A llama_batch whose arrays Python owns and fills with slice assignments."""

    def __init__(self, capacity: int, n_slots: int) -> None:
        self.capacity = capacity
        self.n = 0
        # Typed Any: ctypes' stubs do not accept a list[int] or a range for a slice assignment.
        self.token: Any = (llama_cpp.llama_token * capacity)()
        self.pos: Any = (llama_cpp.llama_pos * capacity)()
        self.n_seq_id = (ctypes.c_int32 * capacity)(*([1] * capacity))
        self.seq_ids = (llama_cpp.llama_seq_id * n_slots)(*range(n_slots))
        self.seq_ptr = (ctypes.c_void_p * capacity)()
        self.logits = (ctypes.c_int8 * capacity)()
        base = ctypes.addressof(self.seq_ids)
        size = ctypes.sizeof(llama_cpp.llama_seq_id)
        self.slot_address = [base + size * slot for slot in range(n_slots)]
        batch: Any = llama_cpp.llama_batch()
        batch.n_tokens = 0
        batch.token = ctypes.cast(self.token, ctypes.POINTER(llama_cpp.llama_token))
        batch.embd = None
        batch.pos = ctypes.cast(self.pos, ctypes.POINTER(llama_cpp.llama_pos))
        batch.n_seq_id = ctypes.cast(self.n_seq_id, ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(self.seq_ptr, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id)))
        batch.logits = ctypes.cast(self.logits, ctypes.POINTER(ctypes.c_int8))
        self.struct = batch

    def clear(self) -> None:
        if self.n:
            ctypes.memset(self.logits, 0, self.n)
        self.n = 0

    def add_one(self, token: int, pos: int, slot: int) -> int:
        """Add one token that needs logits; return its index in the batch."""
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self.seq_ptr[i] = self.slot_address[slot]
        self.logits[i] = 1
        self.n = i + 1
        return i

    def add_many(self, tokens: list[int], pos: int, slot: int, *, logits_last: bool) -> int:
        """Add prompt tokens; return the index of the last one."""
        start, end = self.n, self.n + len(tokens)
        self.token[start:end] = tokens
        self.pos[start:end] = range(pos, pos + len(tokens))
        self.seq_ptr[start:end] = [self.slot_address[slot]] * len(tokens)
        if logits_last:
            self.logits[end - 1] = 1
        self.n = end
        return end - 1

    def finish(self) -> Any:
        self.struct.n_tokens = self.n
        return self.struct


def _slot_of(job: Job) -> int:
    return job.slot


def _deliver(pairs: list[tuple[asyncio.Queue[Event], Event]]) -> None:
    """Runs on the event loop: hand each event to its job's queue."""
    for queue, event in pairs:
        queue.put_nowait(event)


class BatchScheduler(threading.Thread):
    """The thread that owns the llama context and decodes all running jobs in shared batches."""

    def __init__(
        self, runtime: LlamaRuntime, *, n_slots: int, n_batch: int, queue_size: int, name: str
    ) -> None:
        super().__init__(name=f"socle-llamacpp-{name}", daemon=True)
        self._runtime = runtime
        self._n_slots = n_slots
        self._n_batch = n_batch
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: deque[Job] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._n_active = 0
        self._stopping = False
        self.failure: BaseException | None = None
        # Scheduler-thread state.
        self._free_slots = list(range(n_slots))
        self._running: list[Job] = []
        self._batch = _Batch(n_batch, n_slots)
        self._outbox: list[tuple[Job, Event]] = []

    # Any thread ----------------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        """Jobs holding a slot (being prefilled or decoded)."""
        return self._n_active

    @property
    def waiting(self) -> int:
        """Jobs waiting for a free slot."""
        return len(self._pending)

    def submit(self, job: Job) -> None:
        """Queue a job, or raise :class:`EngineUnavailableError` when every slot and queue place is taken."""
        with self._lock:
            if self._stopping or not self.is_alive():
                raise EngineUnavailableError("the llama.cpp engine is not running")
            if len(self._pending) + self._n_active >= self._n_slots + self._queue_size:
                raise EngineUnavailableError(
                    f"engine busy: {self._n_active} requests running and {len(self._pending)} waiting "
                    f"(queue size {self._queue_size}); retry later"
                )
            self._pending.append(job)
            self._wakeup.notify()

    def cancel(self, job: Job) -> None:
        """The consumer is gone: drop the job if it waits, else free its slot at the next step."""
        with self._lock:
            job.cancelled = True
            try:
                self._pending.remove(job)
            except ValueError:
                self._wakeup.notify()

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the scheduler thread between two steps (for inspection of the context)."""
        future: Future[T] = Future()
        with self._lock:
            if self._stopping or not self.is_alive():
                future.set_exception(EngineUnavailableError("the llama.cpp engine is not running"))
                return future
            self._calls.append((fn, future))
            self._wakeup.notify()
        return future

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wakeup.notify()

    # Scheduler thread -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while self._wait_for_work():
                self._step()
                self._flush()
        except Exception as exc:  # a bug or a native failure: fail every request, report unhealthy
            logger.exception("llama.cpp scheduler failed")
            self.failure = exc
        finally:
            self._shutdown()

    def _wait_for_work(self) -> bool:
        """Admit waiting jobs and run queued calls; block while idle. False when stopping."""
        with self._lock:
            while True:
                if self._stopping:
                    return False
                admitted = self._take_pending()
                calls = list(self._calls)
                self._calls.clear()
                if admitted or calls or self._running:
                    break
                self._wakeup.wait()
        for job in admitted:
            self._admit(job)
        for fn, future in calls:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as exc:  # handed to the caller, who raises it
                    future.set_exception(exc)
        return True

    def _take_pending(self) -> list[Job]:
        """Under the lock: pop waiting jobs into free slots."""
        taken: list[Job] = []
        while self._pending and self._free_slots:
            job = self._pending.popleft()
            job.slot = heapq.heappop(self._free_slots)
            self._n_active += 1
            taken.append(job)
        return taken

    def _admit(self, job: Job) -> None:
        job.sampler = self._runtime.new_sampler(job.spec)
        self._running.append(job)

    def _step(self) -> None:
        for job in [j for j in self._running if j.cancelled]:
            self._release(job)
        if not self._running:
            return
        # Prompt chunks are granted first come, first served; tokens are then laid out in slot order,
        # because llama.cpp splits a multi-sequence batch into one compute per run of consecutive ids.
        budget = self._n_batch - sum(1 for job in self._running if not job.prefilling)
        chunks: dict[Job, int] = {}
        for job in self._running:
            if budget <= 0:
                break
            if job.prefilling:
                chunks[job] = size = min(budget, len(job.prompt) - job.n_prefilled)
                budget -= size
        batch = self._batch
        batch.clear()
        outputs: list[tuple[Job, int]] = []
        for job in sorted(self._running, key=_slot_of):
            if not job.prefilling:
                outputs.append((job, batch.add_one(job.last_token, job.n_past, job.slot)))
                job.n_past += 1
            elif job in chunks:
                start = job.n_prefilled
                job.n_prefilled += chunks[job]
                done = not job.prefilling
                index = batch.add_many(
                    job.prompt[start : job.n_prefilled], job.n_past, job.slot, logits_last=done
                )
                job.n_past += chunks[job]
                if done:
                    outputs.append((job, index))
        status = self._runtime.decode(batch.finish())
        if status != 0:
            self._fail_batch(status)
            return
        for job, index in outputs:
            self._accept(job, self._runtime.sample(job.sampler, index))

    def _accept(self, job: Job, token: int) -> None:
        """A sampled token: extend the text, or finish the job."""
        runtime = self._runtime
        if runtime.is_eog(token):
            self._finish(job, job.text.flush(), "stop")
            return
        job.n_generated += 1
        text = job.text.feed(runtime.piece(token))
        if job.text.stopped:
            self._finish(job, text, "stop")
        elif job.n_generated >= job.limit:
            self._finish(job, text + job.text.flush(), "length")
        else:
            job.last_token = token
            if text:
                self._outbox.append((job, Delta(text)))

    def _finish(self, job: Job, text: str, reason: FinishReason) -> None:
        usage = Usage(prompt_tokens=len(job.prompt), completion_tokens=job.n_generated)
        self._outbox.append((job, Delta(text, finish_reason=reason, usage=usage)))
        self._release(job)

    def _release(self, job: Job) -> None:
        """Free the job's KV cells, sampler and slot."""
        self._running.remove(job)
        self._runtime.clear_sequence(job.slot)
        if job.sampler is not None:
            self._runtime.free_sampler(job.sampler)
            job.sampler = None
        heapq.heappush(self._free_slots, job.slot)
        with self._lock:
            self._n_active -= 1

    def _fail_batch(self, status: int) -> None:
        """llama_decode refused the batch: fail the jobs in it (their cells are removed) and go on."""
        logger.error("llama_decode failed with status %d for %d sequences", status, len(self._running))
        for job in list(self._running):
            self._outbox.append((job, EngineError(f"llama.cpp could not decode the batch (status {status})")))
            self._release(job)

    def _flush(self) -> None:
        """Post this step's events: one thread-safe callback per event loop."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Event], Event]]] = {}
        jobs: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job, event in self._outbox:
            by_loop.setdefault(job.loop, []).append((job.queue, event))
            jobs.setdefault(job.loop, []).append(job)
        self._outbox.clear()
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, pairs)
            except RuntimeError:  # the consumer's event loop is closed: nobody will read these jobs
                for job in jobs[loop]:
                    job.cancelled = True

    def _shutdown(self) -> None:
        """Fail whatever is left, free every native resource this thread owns."""
        with self._lock:
            self._stopping = True
            leftover = list(self._pending)
            self._pending.clear()
            calls = list(self._calls)
            self._calls.clear()
        error: SocleError = (
            EngineError("the llama.cpp engine failed; see the server log")
            if self.failure is not None
            else EngineUnavailableError("the llama.cpp engine is shutting down")
        )
        for job in [*self._running, *leftover]:
            self._outbox.append((job, error))
        for job in list(self._running):
            self._release(job)
        for _fn, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
        self._flush()
        self._runtime.close()
