"""llama.cpp, loaded: one GGUF model, its vocabulary, one multi-sequence context and sampler chains.

This is the only module that calls llama.cpp's C API (through llama-cpp-python's ctypes bindings)
outside the batch scheduler. It owns the native handles and frees them once, in :meth:`close`.

Threading: the *context* (KV cache, logits) is used by exactly one thread, the scheduler. The
*vocabulary* is read-only after load, so :meth:`LlamaRuntime.tokenize` may be called from any thread
(the event loop tokenizes prompts while the scheduler decodes). Every ctypes call releases the GIL, so
native work never blocks the event loop.

Logging: llama.cpp prints model-load chatter to stderr by default. :func:`quiet_llama_logs` routes it
to the ``socle.engines.llamacpp`` logger instead (information at DEBUG, warnings and errors as such).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from socle.errors import BadRequestError, ConfigError, EngineUnavailableError

__all__ = ["LlamaRuntime", "RuntimeOptions", "SamplerSpec", "quiet_llama_logs"]

logger = logging.getLogger("socle.engines.llamacpp")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous line).
# llama.cpp's INFO is model-load chatter: it goes to DEBUG here.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_log_state: dict[str, Any] = {}
_log_lock = threading.Lock()


def quiet_llama_logs() -> None:
    """Send llama.cpp's log lines to Python logging instead of stderr (process-wide, idempotent).

    The callback object must outlive every native call that may log, so it is kept in a module dict
    created on first use (importing this module installs nothing).
    """
    with _log_lock:
        if "callback" in _log_state:
            return
        last = [logging.DEBUG]

        def _on_log(level: int, text: bytes | None, _user: Any) -> None:
            py_level = last[0] if level == 5 else _LEVELS.get(level, logging.DEBUG)
            last[0] = py_level
            if text and logger.isEnabledFor(py_level):
                logger.log(py_level, "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        callback = llama_cpp.llama_log_callback(_on_log)
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        _log_state["callback"] = callback


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How to size the context: ``n_seq`` sequences of ``n_ctx_seq`` tokens each."""

    n_seq: int
    n_ctx_seq: int
    n_batch: int
    threads: int
    kv_unified: bool = False


@dataclass(frozen=True, slots=True)
class SamplerSpec:
    """A resolved sampling recipe (defaults already applied)."""

    temperature: float
    top_p: float
    seed: int
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class LlamaRuntime:
    """Native handles for one model and one context with ``n_seq`` independent KV sequences."""

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        """Load the model and create the context. Blocking: call it from a worker thread."""
        quiet_llama_logs()
        llama_cpp.llama_backend_init()
        max_seq = int(llama_cpp.llama_max_parallel_sequences())
        if options.n_seq > max_seq:
            raise ConfigError(
                f"llama.cpp serves at most {max_seq} sequences at once, concurrency is {options.n_seq}"
            )
        self.options = options
        model_params = llama_cpp.llama_model_default_params()
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise ConfigError(f"llama.cpp could not load the model file {path} (not a valid GGUF?)")
        self._model: Any = model
        self._model_lock = threading.Lock()
        self._ctx: Any = None
        try:
            self._ctx = self._new_context(options)
        except BaseException:
            self.close()
            raise
        self.vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.memory: Any = llama_cpp.llama_get_memory(self._ctx)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    def _new_context(self, options: RuntimeOptions) -> Any:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = options.n_seq * options.n_ctx_seq
        params.n_batch = options.n_batch
        params.n_ubatch = options.n_batch
        params.n_seq_max = options.n_seq
        params.n_threads = options.threads
        params.n_threads_batch = options.threads
        params.kv_unified = options.kv_unified
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise ConfigError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens for {options.n_seq} "
                "sequences (out of memory? lower concurrency or n_ctx)"
            )
        return ctx

    @property
    def ctx(self) -> Any:
        """The llama_context pointer: for the scheduler thread only."""
        return self._ctx

    # Model metadata ---------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string, or None when the key is absent."""
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = int(llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, size))
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", "replace")
            size = n + 1

    def token_text(self, token: int) -> str:
        """The vocabulary text of a token, special tokens included (for chat templates' bos/eos)."""
        if token < 0:
            return ""
        return self._render(token, special=True).decode("utf-8", "replace")

    # Tokens -------------------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Text to token ids; special tokens in the text (``<|im_start|>``) are parsed. Thread-safe.

        Holds the model lock so that :meth:`close` cannot free the vocabulary under a tokenization
        running in a worker thread (tokenizing is fast: serialising it costs nothing measurable).
        """
        data = text.encode("utf-8")
        capacity = len(data) + 8
        with self._model_lock:
            if not self._model:
                raise EngineUnavailableError("the llama.cpp engine is closed")
            while True:
                buf = (llama_cpp.llama_token * capacity)()
                n = int(
                    llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, True)
                )
                if n >= 0:
                    return list(buf[:n])
                if -n <= capacity:
                    raise BadRequestError("the prompt could not be tokenized")
                capacity = -n

    def piece(self, token: int) -> bytes:
        """The bytes a generated token adds to the text (control tokens add nothing). Scheduler thread."""
        found = self._pieces.get(token)
        if found is None:
            found = self._pieces[token] = self._render(token, special=False)
        return found

    def is_eog(self, token: int) -> bool:
        """End-of-generation token (EOS, EOT, ``<|im_end|>``...). Scheduler thread."""
        found = self._eog.get(token)
        if found is None:
            found = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return found

    def _render(self, token: int, *, special: bool) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = int(llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special))
            if n >= 0:
                return buf.raw[:n]
            size = -n

    # Sequences and samplers ---------------------------------------------------------------------------
    def clear_sequence(self, seq: int) -> None:
        """Free every KV cell of one sequence. Scheduler thread."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def used_cells(self, seq: int) -> int:
        """Number of KV positions held by a sequence (0 when empty). Scheduler thread."""
        return int(llama_cpp.llama_memory_seq_pos_max(self.memory, seq)) + 1

    def new_sampler(self, spec: SamplerSpec) -> Any:
        """One sequence's sampler chain: penalties, then greedy, or temperature, top-p and a seeded draw."""
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(chain_params)
        if spec.presence_penalty or spec.frequency_penalty:
            penalties = llama_cpp.llama_sampler_init_penalties(
                self.n_vocab, self.options.n_ctx_seq, 1.0, spec.frequency_penalty, spec.presence_penalty
            )
            llama_cpp.llama_sampler_chain_add(chain, penalties)
        if spec.temperature <= 0.0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            return chain
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(spec.temperature))
        if spec.top_p < 1.0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(spec.top_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(spec.seed))
        return chain

    @staticmethod
    def free_sampler(sampler: Any) -> None:
        llama_cpp.llama_sampler_free(sampler)

    def sample(self, sampler: Any, output_index: int) -> int:
        """Sample (and accept) the next token of a sequence from row ``output_index`` of the last batch."""
        return int(llama_cpp.llama_sampler_sample(sampler, self._ctx, output_index))

    def decode(self, batch: Any) -> int:
        """Run one llama_batch through the model; llama.cpp's status code (0 = success)."""
        return int(llama_cpp.llama_decode(self._ctx, batch))

    def close(self) -> None:
        """Free the context and the model. Idempotent; call after the scheduler thread has stopped."""
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        with self._model_lock:
            if self._model:
                llama_cpp.llama_model_free(self._model)
                self._model = None
