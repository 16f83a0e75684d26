"""The OpenAI-compatible dialect: any upstream that speaks ``/v1/chat/completions`` and friends.

vLLM, the llama.cpp server, TGI, Ollama and hosted providers all answer the same wire format, so one
engine class talks to all of them; *where* the upstream is (URL, key, timeouts, zone, model name) is
:class:`~socle.config.OpenAICompatEngineConfig`.

Design notes, because this code sits on the gateway's hot path:

* One :class:`httpx.AsyncClient` per engine, opened in :meth:`OpenAICompatEngine.start` and closed in
  :meth:`~OpenAICompatEngine.aclose`. HTTP/1.1 with keep-alive; the pool holds ``concurrency``
  connections plus one, so that a health probe never queues behind a full set of long streams.
  Plain-http upstreams (the on-prem case: vLLM or llama.cpp server on the LAN) go through
  :class:`socle.engines._http1.Http1Transport`, several times cheaper per request than httpx's default
  transport; ``https://`` upstreams keep httpx's transport (TLS is its job). Proxy variables of the
  environment are ignored (``trust_env=False``): where requests go is configuration, not ambient state.
* Bodies are built as plain dicts and serialised with orjson; answers are parsed with orjson. No
  pydantic model is built per request or per streamed chunk.
* ``chat`` and ``complete`` make *non-streaming* upstream calls (one response to parse instead of one
  event per token). ``chat_stream`` and ``completion_stream`` ask for ``stream: true`` with
  ``stream_options.include_usage`` and split the server-sent events themselves on raw bytes.
* Errors are translated at this boundary. An upstream that cannot be reached, times out, drops the
  connection or answers 5xx raises :class:`~socle.errors.EngineError`; in a stream that happens on the
  first ``__anext__``, *before* any delta is yielded, so the router can still fail over. Upstream 4xx
  answers are the client's fault and keep the upstream's message: :class:`~socle.errors.BadRequestError`,
  or :class:`~socle.errors.ContextLengthError` when the upstream says the context is too long; 429 is
  :class:`~socle.errors.RateLimitError` (with the upstream's ``Retry-After``). 401, 403, 404 and 408 say
  that *this engine* is misconfigured or stuck (wrong key, wrong model name, wrong URL), not that the
  request is bad, so they are :class:`~socle.errors.EngineError` too.
* Usage: when the upstream sends none (some servers ignore ``include_usage``), the counts are 0. Socle
  does not guess token counts with a tokenizer it does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, Final

import httpx
import orjson

from socle import egress
from socle.config import EngineConfig, OpenAICompatEngineConfig
from socle.engines._http1 import Http1Transport
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
)
from socle.errors import (
    BadRequestError,
    ConfigError,
    ContextLengthError,
    EngineError,
    RateLimitError,
    SocleError,
)

__all__ = ["OpenAICompatEngine"]

_JSON_HEADERS: Final = {"content-type": "application/json"}
_STREAM_HEADERS: Final = {"content-type": "application/json", "accept": "text/event-stream"}
_HEALTH_TIMEOUT_S: Final = 5.0
_DRAIN_TIMEOUT_S: Final = 0.05
_MAX_MESSAGE_CHARS: Final = 1000
# Upstream 4xx that mean "this engine is misconfigured or stuck", not "the request is bad".
_ENGINE_SIDE_4XX: Final = frozenset({401, 403, 404, 408})
# How OpenAI, vLLM, llama.cpp server and TGI say "the prompt does not fit".
_CONTEXT_LENGTH = re.compile(
    r"context[ _-]?length|context size|context window|maximum context|exceed_context_size"
    r"|tokens \+ `max_new_tokens` must be",
    re.IGNORECASE,
)
_OPTIONAL_PARAMS: Final = (
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


def _sampling_body(params: SamplingParams) -> dict[str, Any]:
    """The upstream body fields for ``params``; fields left unset (None, no stop) are omitted."""
    body: dict[str, Any] = {}
    for name in _OPTIONAL_PARAMS:
        value = getattr(params, name)
        if value is not None:
            body[name] = value
    if params.stop:
        body["stop"] = list(params.stop)
    return body


def _finish(reason: object) -> FinishReason:
    """Upstreams also say ``eos``, ``tool_calls``, ``content_filter``: all of them end the text."""
    return "length" if reason == "length" else "stop"


def _usage(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens")
    completion = data.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
    )


def _error_details(body: bytes) -> tuple[str, str]:
    """``(message, code)`` from an upstream error body, whatever shape the upstream uses.

    OpenAI and vLLM: ``{"error": {"message", "code", "type"}}``; TGI: ``{"error": "...", "error_type"}``;
    FastAPI-based servers: ``{"detail": ...}``; anything else: the body as text.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:_MAX_MESSAGE_CHARS], ""
    if not isinstance(data, dict):
        return str(data)[:_MAX_MESSAGE_CHARS], ""
    error = data.get("error", data)
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or error.get("msg") or error
        code = error.get("code") or error.get("type") or ""
    else:
        message, code = error, data.get("error_type") or ""
    return str(message)[:_MAX_MESSAGE_CHARS], str(code)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body) so that the connection is reused.

    It is usually there already; an upstream that keeps the stream open is given up on after a moment
    (its connection is then closed instead of reused).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in chunks:
                pass


class _SSEDecoder:
    """Splits a ``text/event-stream`` byte stream into the payloads of its ``data:`` lines.

    OpenAI-style servers send one JSON object per ``data:`` line and end with ``data: [DONE]``;
    ``event:``, ``id:`` and comment lines are ignored, and so are multi-line events (no OpenAI-compatible
    server sends them).
    """

    __slots__ = ("_pending", "done")

    def __init__(self) -> None:
        self._pending = b""
        self.done = False

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        return self._payloads(lines)

    def flush(self) -> list[bytes]:
        lines, self._pending = [self._pending], b""
        return self._payloads(lines)

    def _payloads(self, lines: list[bytes]) -> list[bytes]:
        payloads = []
        for line in lines:
            if self.done or not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
            elif payload:
                payloads.append(payload)
        return payloads


class _StreamState:
    """What the stream has said so far besides text: finish reason, usage, answering model."""

    __slots__ = ("finish", "usage", "model")

    def __init__(self) -> None:
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.model: str | None = None


class OpenAICompatEngine:
    """An :class:`~socle.engines.base.Engine` backed by an OpenAI-compatible HTTP server.

    The request carries the public model name; ``config.upstream_model`` (when set) replaces it on the
    wire. :attr:`answered_model` keeps the ``model`` field of the upstream's latest answer, for
    traceability when the upstream serves something other than what was asked for.
    """

    def __init__(self, config: OpenAICompatEngineConfig) -> None:
        self.config: EngineConfig = config
        self._config = config
        self._capabilities = frozenset(config.capabilities)
        self._client: httpx.AsyncClient | None = None
        self.answered_model: str | None = None

    # Engine identity ------------------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    @property
    def model_id(self) -> str:
        return "upstream:" + (self._config.upstream_model or "<as requested>")

    # Lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the connection pool. The upstream is not contacted: health probes do that."""
        if self._client is not None:
            return
        config = self._config
        try:
            base_url = httpx.URL(config.base_url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"engine {config.name}: invalid base_url {config.base_url!r}: {exc}") from exc
        if base_url.scheme not in ("http", "https") or not base_url.host:
            raise ConfigError(
                f"engine {config.name}: base_url must be an http(s) URL, got {config.base_url!r}"
            )
        headers = {"user-agent": "socle"}
        if config.api_key is not None:
            headers["authorization"] = "Bearer " + config.api_key.get_secret_value()
        connections = config.concurrency + 1
        transport: httpx.AsyncBaseTransport
        if base_url.scheme == "http":
            transport = Http1Transport(max_connections=connections)
        else:
            limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            transport = egress.GuardedTransport(
                httpx.AsyncHTTPTransport(limits=limits, trust_env=False), via=f"engine {config.name}"
            )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.read_timeout_s,
                pool=config.read_timeout_s,
            ),
            transport=transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def health(self) -> EngineHealth:
        """``GET /models`` with a short timeout; healthy on any 2xx."""
        if self._client is None:
            return EngineHealth(ok=False, detail="not started")
        timeout = httpx.Timeout(
            _HEALTH_TIMEOUT_S, connect=min(_HEALTH_TIMEOUT_S, self._config.connect_timeout_s)
        )
        try:
            response = await self._client.get("models", timeout=timeout)
        except httpx.HTTPError as exc:
            return EngineHealth(ok=False, detail=f"upstream unreachable: {type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return EngineHealth(ok=True)
        return EngineHealth(ok=False, detail=f"GET /models answered {response.status_code}")

    # Generation -----------------------------------------------------------------------------------
    async def chat(self, request: ChatInput) -> Generated:
        data = await self._post("chat/completions", self._chat_body(request, stream=False))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = _finish(choice.get("finish_reason"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("chat completion", exc) from exc
        return Generated(text=text, finish_reason=finish, usage=_usage(data.get("usage")) or Usage(0, 0))

    def chat_stream(self, request: ChatInput) -> AsyncIterator[Delta]:
        return self._stream("chat/completions", self._chat_body(request, stream=True), chat=True)

    async def complete(self, request: CompletionInput) -> Generated:
        data = await self._post("completions", self._completion_body(request, stream=False))
        try:
            choice = data["choices"][0]
            text = choice.get("text") or ""
            finish = _finish(choice.get("finish_reason"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("completion", exc) from exc
        return Generated(text=text, finish_reason=finish, usage=_usage(data.get("usage")) or Usage(0, 0))

    def completion_stream(self, request: CompletionInput) -> AsyncIterator[Delta]:
        return self._stream("completions", self._completion_body(request, stream=True), chat=False)

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResult:
        body = {"model": self._config.upstream_model or model, "input": inputs, "encoding_format": "float"}
        data = await self._post("embeddings", body)
        try:
            items = sorted(data["data"], key=lambda item: item.get("index", 0))
            vectors = [item["embedding"] for item in items]
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._malformed("embedding answer", exc) from exc
        if len(vectors) != len(inputs) or not all(isinstance(v, list) for v in vectors):
            raise EngineError(
                f"upstream {self._config.name} answered {len(vectors)} float vectors for {len(inputs)} inputs"
            )
        usage = _usage(data.get("usage"))
        return EmbeddingResult(vectors=vectors, prompt_tokens=usage.prompt_tokens if usage else 0)

    # Wire bodies ----------------------------------------------------------------------------------
    def _chat_body(self, request: ChatInput, *, stream: bool) -> dict[str, Any]:
        body = _sampling_body(request.params)
        body["model"] = self._config.upstream_model or request.model
        body["messages"] = request.messages
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _completion_body(self, request: CompletionInput, *, stream: bool) -> dict[str, Any]:
        body = _sampling_body(request.params)
        body["model"] = self._config.upstream_model or request.model
        body["prompt"] = request.prompt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    # Transport ------------------------------------------------------------------------------------
    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineError(f"engine {self._config.name} is not started")
        return self._client

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streaming call; the parsed JSON object, or a translated error."""
        client = self._require_client()
        try:
            response = await client.post(path, content=orjson.dumps(body), headers=_JSON_HEADERS)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if not 200 <= response.status_code < 300:
            raise self._status_error(response.status_code, response.content, response.headers)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise self._malformed("answer (not JSON)", exc) from exc
        if not isinstance(data, dict):
            raise EngineError(
                f"upstream {self._config.name} answered a JSON {type(data).__name__}, not an object"
            )
        self._remember_model(data.get("model"))
        return data

    async def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> AsyncIterator[Delta]:
        """Stream deltas from the upstream; everything up to the response headers fails before a yield."""
        client = self._require_client()
        request = client.build_request("POST", path, content=orjson.dumps(body), headers=_STREAM_HEADERS)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        try:
            if not 200 <= response.status_code < 300:
                await response.aread()
                raise self._status_error(response.status_code, response.content, response.headers)
            if response.headers.get("content-type", "").startswith("application/json"):
                # The upstream ignored ``stream: true`` and answered in one piece.
                await response.aread()
                for delta in self._single_answer(response.content, chat=chat):
                    yield delta
                return
            async with aclosing(self._events(response, chat=chat)) as events:
                async for delta in events:
                    yield delta
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response, *, chat: bool) -> AsyncGenerator[Delta, None]:
        decoder = _SSEDecoder()
        state = _StreamState()
        chunks = response.aiter_bytes()
        async for chunk in chunks:
            for payload in decoder.feed(chunk):
                text = self._apply_event(payload, state, chat=chat)
                if text:
                    yield Delta(text)
            if decoder.done:
                await _drain(chunks)
                break
        for payload in decoder.flush():
            text = self._apply_event(payload, state, chat=chat)
            if text:
                yield Delta(text)
        if not decoder.done and state.finish is None:
            raise EngineError(f"upstream {self._config.name} ended the stream before it finished")
        self._remember_model(state.model)
        yield Delta("", finish_reason=state.finish or "stop", usage=state.usage or Usage(0, 0))

    def _apply_event(self, payload: bytes, state: _StreamState, *, chat: bool) -> str | None:
        """Record finish reason, usage and model from one event; return its text, if any."""
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise self._malformed("stream event (not JSON)", exc) from exc
        if not isinstance(event, dict):
            raise EngineError(f"upstream {self._config.name} sent a stream event that is not an object")
        if "error" in event:
            message, _ = _error_details(payload)
            raise EngineError(f"upstream {self._config.name} failed mid-stream: {message}")
        if state.model is None and isinstance(event.get("model"), str):
            state.model = event["model"]
        usage = event.get("usage")
        if usage:
            state.usage = _usage(usage)
        choices = event.get("choices")
        if not choices:
            return None
        try:
            choice = choices[0]
            reason = choice.get("finish_reason")
            if reason is not None:
                state.finish = _finish(reason)
            text = choice["delta"].get("content") if chat else choice.get("text")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("stream event", exc) from exc
        return text if isinstance(text, str) else None

    def _single_answer(self, content: bytes, *, chat: bool) -> list[Delta]:
        try:
            data = orjson.loads(content)
            choice = data["choices"][0]
            text = (choice["message"].get("content") if chat else choice.get("text")) or ""
            finish = _finish(choice.get("finish_reason"))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("answer to a stream request", exc) from exc
        self._remember_model(data.get("model"))
        final = Delta("", finish_reason=finish, usage=_usage(data.get("usage")) or Usage(0, 0))
        return [Delta(text), final] if text else [final]

    # Error translation ----------------------------------------------------------------------------
    def _remember_model(self, model: object) -> None:
        if isinstance(model, str) and model != self.answered_model:
            self.answered_model = model

    def _transport_error(self, exc: httpx.HTTPError) -> EngineError:
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        detail = str(exc) or "no detail"
        return EngineError(f"upstream {self._config.name} {what}: {type(exc).__name__}: {detail}")

    def _malformed(self, what: str, exc: Exception) -> EngineError:
        return EngineError(
            f"upstream {self._config.name} sent a malformed {what}: {type(exc).__name__}: {exc}"
        )

    def _status_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SocleError:
        message, code = _error_details(body)
        if status == 429:
            retry_after = headers.get("retry-after")
            return RateLimitError(
                f"upstream rate limit: {message}",
                headers={"Retry-After": retry_after} if retry_after else None,
            )
        if 400 <= status < 500 and status not in _ENGINE_SIDE_4XX:
            if code == "context_length_exceeded" or _CONTEXT_LENGTH.search(message):
                return ContextLengthError(message)
            return BadRequestError(message)
        return EngineError(f"upstream {self._config.name} answered {status}: {message}")
