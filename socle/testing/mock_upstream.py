"""A fast mock of an OpenAI-compatible upstream, for tests and benchmarks.

It answers ``/v1/chat/completions`` and ``/v1/completions`` (streaming and not), ``/v1/embeddings`` and
``/v1/models`` exactly as :class:`socle.engines.fake.FakeEngine` would (same reply, same ``max_tokens``
and stop rules, same hash embeddings), after a fixed latency, and can be told to fail: HTTP 500, a
connection dropped before the first byte or in the middle of a stream, a 400 saying the context is too
long, a plain 400, or a 429. It records the last request (path, headers, JSON body) for assertions,
and, when ``state.received`` is a ``bytearray``, every byte it receives (to prove that nothing reached it).

It must never be the bottleneck of a benchmark, so it is a minimal HTTP/1.1 server written directly on
:class:`asyncio.Protocol` (keep-alive, ``Content-Length`` and chunked request bodies, chunked responses
for streams): a request without latency is answered inside ``data_received``, with no task and no
framework. It is a test tool, not a web server: it trusts its clients and listens on loopback.

Two ways to run it:

* :func:`mock_upstream` -- a context manager that serves from a background thread of the test process
  and yields a :class:`MockUpstream` whose :attr:`~MockUpstream.state` the test changes directly::

      with mock_upstream(latency_s=0.01) as upstream:
          engine = OpenAICompatEngine(OpenAICompatEngineConfig(name="up", zone="on-prem",
                                                               base_url=upstream.base_url))
          upstream.state.failure = "http_500"

* ``python -m socle.testing.mock_upstream --port P --latency-ms L`` in its own process, for benchmarks
  (so that it does not share a GIL with the client or the gateway); :func:`mock_upstream_process` starts
  it that way, and :func:`configure` changes its state over HTTP (``POST /__mock__/state``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

import orjson

from socle.engines.fake import count_words, hash_embedding, message_texts, script_reply

__all__ = [
    "DEFAULT_REPLY",
    "Failure",
    "MockState",
    "MockUpstream",
    "MockUpstreamProcess",
    "RecordedRequest",
    "configure",
    "main",
    "mock_upstream",
    "mock_upstream_process",
]

Failure = Literal["http_500", "drop", "drop_mid_stream", "context_length", "bad_request", "rate_limit"]
DEFAULT_REPLY: Final = "Hello from the mock upstream, answering every request the same way."
CONTEXT_LENGTH_MESSAGE: Final = (
    "This model's maximum context length is 2048 tokens. However, you requested 4096 tokens "
    "(4000 in the messages, 96 in the completion). Please reduce the length of the messages or completion."
)
_MAX_HEAD = 64 * 1024
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Server Error",
}
_FAILURES: Final[dict[str, tuple[int, dict[str, Any]]]] = {
    "http_500": (500, {"message": "mock upstream: internal error", "type": "server_error", "code": None}),
    "context_length": (
        400,
        {
            "message": CONTEXT_LENGTH_MESSAGE,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    "bad_request": (
        400,
        {
            "message": "mock upstream: 'temperature' must be between 0 and 2",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        },
    ),
    "rate_limit": (
        429,
        {
            "message": "mock upstream: rate limit reached",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
        },
    ),
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the mock received it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class MockState:
    """How the mock answers. Change the fields at any time; each request reads them when it arrives."""

    latency_s: float = 0.0
    token_delay_s: float = 0.0
    reply: str = DEFAULT_REPLY
    failure: Failure | None = None
    model: str | None = None
    """Model name the answers carry; ``None`` echoes the request's ``model``."""
    send_usage: bool = True
    """Whether answers carry ``usage`` (some servers ignore ``stream_options.include_usage``)."""
    last_request: RecordedRequest | None = None
    requests: int = 0
    connections: int = 0
    """Connections accepted so far (to check keep-alive reuse)."""
    received: bytearray | None = None
    """Set to a ``bytearray`` to record every byte received, control requests included."""

    def update(self, changes: dict[str, Any]) -> None:
        """Apply control-endpoint changes; ``latency_ms``/``token_delay_ms`` are accepted in ms."""
        for key, value in changes.items():
            if key in ("latency_ms", "token_delay_ms"):
                setattr(self, key.replace("_ms", "_s"), float(value) / 1000)
            elif key == "failure" and value is not None and value not in get_args(Failure):
                raise ValueError(f"unknown failure {value!r}; one of {get_args(Failure)}")
            elif key in ("latency_s", "token_delay_s", "reply", "failure", "model", "send_usage"):
                setattr(self, key, value)
            else:
                raise ValueError(f"unknown mock state field {key!r}")

    def public(self) -> dict[str, Any]:
        state = dataclasses.asdict(self)
        received = state.pop("received")
        state["received_bytes"] = None if received is None else len(received)
        return state


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _parse_chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``; ``(body, end)`` or None if incomplete."""
    body = bytearray()
    pos = start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if trailer_end == line_end:
                return bytes(body), line_end + 4
            if buffer[line_end + 2 : line_end + 4] == b"\r\n":
                return bytes(body), line_end + 4
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        data_start = line_end + 2
        if len(buffer) < data_start + size + 2:
            return None
        body += buffer[data_start : data_start + size]
        pos = data_start + size + 2


def _parse_request(buffer: bytearray) -> _Request | None:
    """Take one complete request off the front of ``buffer``; None if it has not all arrived."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buffer) > _MAX_HEAD:
            raise ValueError("request head too large")
        return None
    lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    start = head_end + 4
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parsed = _parse_chunked(buffer, start)
        if parsed is None:
            return None
        body, end = parsed
    else:
        end = start + int(headers.get("content-length") or 0)
        if len(buffer) < end:
            return None
        body = bytes(buffer[start:end])
    del buffer[:end]
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return _Request(method, target.split("?", 1)[0], headers, body, keep_alive)


def _json_body(request: _Request) -> dict[str, Any]:
    if not request.body:
        return {}
    data = orjson.loads(request.body)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _stops(value: object) -> Sequence[str]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str)]
    return ()


class _Answer:
    """Builds the OpenAI-shaped answers of one generation request."""

    __slots__ = ("chat", "created", "id", "model", "prompt_tokens", "script", "send_usage")

    def __init__(self, state: MockState, body: dict[str, Any], *, chat: bool, number: int) -> None:
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-mock{number}"
        self.created = int(time.time())
        self.model = state.model or str(body.get("model", "mock-model"))
        self.send_usage = state.send_usage
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        self.script = script_reply(
            state.reply, max_tokens if isinstance(max_tokens, int) else None, _stops(body.get("stop"))
        )
        if chat:
            self.prompt_tokens = count_words(message_texts(body.get("messages") or []))
        else:
            prompt = body.get("prompt", "")
            self.prompt_tokens = count_words(prompt if isinstance(prompt, list) else [str(prompt)])

    def usage(self) -> dict[str, int]:
        completion = self.script.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def whole(self) -> bytes:
        text = self.script.text
        choice: dict[str, Any] = {"index": 0, "finish_reason": self.script.finish_reason, "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        answer: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if self.send_usage:
            answer["usage"] = self.usage()
        return orjson.dumps(answer)

    def event(self, text: str | None, finish: str | None = None, *, usage: bool = False) -> bytes:
        choices: list[dict[str, Any]] = []
        if text is not None or finish is not None:
            if self.chat:
                delta = {} if text is None else {"content": text}
                choices.append({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None})
            else:
                choices.append({"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None})
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage:
            chunk["usage"] = self.usage()
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def events(self, include_usage: bool) -> list[bytes]:
        events = [self.event(piece) for piece in self.script.pieces]
        events.append(self.event(None, self.script.finish_reason))
        if include_usage and self.send_usage:
            events.append(self.event(None, usage=True))
        events.append(b"data: [DONE]\n\n")
        return events


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time and answers them in order."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._state = server.state
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False

    # asyncio.Protocol -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._server.connections.add(self)
        self._state.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._state.received is not None:
            self._state.received += data
        self._buffer += data
        if not self._busy:
            self._next()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # Request handling -----------------------------------------------------------------------------
    def _next(self) -> None:
        while not self._busy and self._transport is not None:
            try:
                request = _parse_request(self._buffer)
            except ValueError:
                self._send(400, b'{"error": {"message": "malformed HTTP request"}}', keep_alive=False)
                return
            if request is None:
                return
            self._dispatch(request)

    def _dispatch(self, request: _Request) -> None:
        state = self._state
        if request.path.startswith("/__mock__"):
            self._control(request)
            return
        state.requests += 1
        try:
            body = _json_body(request)
        except ValueError as exc:
            self._send(400, orjson.dumps({"error": {"message": f"invalid JSON: {exc}"}}), request.keep_alive)
            return
        state.last_request = RecordedRequest(request.method, request.path, request.headers, body)
        stream = bool(body.get("stream"))
        if state.latency_s > 0 or (stream and state.token_delay_s > 0):
            self._busy = True
            task = asyncio.get_running_loop().create_task(self._answer_later(request, body))
            self._server.tasks.add(task)
            task.add_done_callback(self._done)
        else:
            self._answer(request, body, [])

    def _done(self, task: asyncio.Task[None]) -> None:
        self._server.tasks.discard(task)
        self._busy = False
        if not task.cancelled() and self._transport is not None:
            self._next()

    async def _answer_later(self, request: _Request, body: dict[str, Any]) -> None:
        await asyncio.sleep(self._state.latency_s)
        delayed: list[bytes] = []
        self._answer(request, body, delayed)
        for event in delayed:
            await asyncio.sleep(self._state.token_delay_s)
            if self._transport is None:
                return
            self._transport.write(_chunk(event))
        if delayed:
            # Like a real server, the end of the body follows the last event a little later.
            await asyncio.sleep(self._state.token_delay_s)
        if delayed and self._transport is not None:
            self._transport.write(b"0\r\n\r\n")
            if not request.keep_alive:
                self._transport.close()

    def _answer(self, request: _Request, body: dict[str, Any], delayed: list[bytes]) -> None:
        """Answer ``request``; stream events that must wait for ``token_delay_s`` go to ``delayed``."""
        state = self._state
        failure = state.failure
        path = request.path.removeprefix("/v1")
        stream = bool(body.get("stream"))
        if failure == "drop" or (failure == "drop_mid_stream" and not stream):
            self.abort()
        elif failure is not None and failure in _FAILURES:
            status, error = _FAILURES[failure]
            extra = b"retry-after: 1\r\n" if status == 429 else b""
            self._send(status, orjson.dumps({"error": error}), request.keep_alive, extra)
        elif path in ("/chat/completions", "/completions") and request.method == "POST":
            answer = _Answer(state, body, chat=path == "/chat/completions", number=state.requests)
            if not stream:
                self._send(200, answer.whole(), request.keep_alive)
                return
            options = body.get("stream_options")
            events = answer.events(isinstance(options, dict) and bool(options.get("include_usage")))
            self._stream(events, request.keep_alive, delayed, drop=failure == "drop_mid_stream")
        elif path == "/embeddings" and request.method == "POST":
            self._send(200, self._embeddings(body), request.keep_alive)
        elif path == "/models" and request.method == "GET":
            data = [
                {"id": state.model or "mock-model", "object": "model", "created": 0, "owned_by": "socle-mock"}
            ]
            self._send(200, orjson.dumps({"object": "list", "data": data}), request.keep_alive)
        else:
            message = f"mock upstream: no route {request.method} {request.path}"
            self._send(404, orjson.dumps({"error": {"message": message}}), request.keep_alive)

    def _embeddings(self, body: dict[str, Any]) -> bytes:
        raw = body.get("input", [])
        inputs = [raw] if isinstance(raw, str) else [str(text) for text in raw]
        tokens = count_words(inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": hash_embedding(t)} for i, t in enumerate(inputs)
        ]
        return orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": self._state.model or str(body.get("model", "mock-model")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _control(self, request: _Request) -> None:
        if request.method == "POST":
            try:
                self._state.update(_json_body(request))
            except ValueError as exc:
                self._send(400, orjson.dumps({"error": {"message": str(exc)}}), request.keep_alive)
                return
        self._send(200, orjson.dumps(self._state.public()), request.keep_alive)

    # Writing --------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, keep_alive: bool, extra_headers: bytes = b"") -> None:
        transport = self._transport
        if transport is None:
            return
        head = b"HTTP/1.1 %d %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b%b\r\n" % (
            status,
            _REASONS.get(status, "Status").encode(),
            len(body),
            extra_headers,
            b"" if keep_alive else b"connection: close\r\n",
        )
        transport.write(head + body)
        if not keep_alive:
            transport.close()

    def _stream(self, events: list[bytes], keep_alive: bool, delayed: list[bytes], *, drop: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        head += b"transfer-encoding: chunked\r\n%b\r\n" % (b"" if keep_alive else b"connection: close\r\n")
        if drop:
            transport.write(head + _chunk(events[0]))
            transport.abort()
            return
        if self._state.token_delay_s > 0:
            transport.write(head + _chunk(events[0]))
            delayed.extend(events[1:])
            return
        transport.write(head + b"".join(_chunk(e) for e in events) + b"0\r\n\r\n")
        if not keep_alive:
            transport.close()


@dataclass(eq=False)
class _Server:
    state: MockState
    connections: set[_Connection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def protocol(self) -> _Connection:
        return _Connection(self)

    async def shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for connection in list(self.connections):
            connection.abort()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await server.wait_closed()


@dataclass(frozen=True)
class MockUpstream:
    """A mock running in this process. ``base_url`` ends in ``/v1``, as engines expect."""

    base_url: str
    port: int
    state: MockState


@contextlib.contextmanager
def mock_upstream(
    *, latency_s: float = 0.0, reply: str = DEFAULT_REPLY, host: str = "127.0.0.1", port: int = 0
) -> Iterator[MockUpstream]:
    """Serve the mock from a background thread (its own event loop) on a free loopback port."""
    state = MockState(latency_s=latency_s, reply=reply)
    mock = _Server(state)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: list[int] = []
    errors: list[BaseException] = []
    stop = loop.create_future()

    async def serve() -> None:
        server = await loop.create_server(mock.protocol, host, port)
        bound.append(server.sockets[0].getsockname()[1])
        ready.set()
        try:
            await stop
        finally:
            await mock.shutdown(server)

    def run() -> None:
        try:
            loop.run_until_complete(serve())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:  # reported to the starting thread
            errors.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="socle-mock-upstream", daemon=True)
    thread.start()
    ready.wait(timeout=30)
    if errors or not bound:
        thread.join(timeout=5)
        raise RuntimeError("the mock upstream did not start") from (errors[0] if errors else None)
    try:
        yield MockUpstream(base_url=f"http://{host}:{bound[0]}/v1", port=bound[0], state=state)
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(timeout=30)


@dataclass(frozen=True)
class MockUpstreamProcess:
    """A mock running in a child process (see :func:`mock_upstream_process`)."""

    base_url: str
    port: int
    pid: int

    def configure(self, **changes: Any) -> dict[str, Any]:
        return configure(self.base_url, **changes)


def configure(base_url: str, **changes: Any) -> dict[str, Any]:
    """Change a mock's state over HTTP (e.g. ``latency_ms=0``); returns the new state."""
    url = base_url.removesuffix("/").removesuffix("/v1") + "/__mock__/state"
    request = urllib.request.Request(
        url, data=json.dumps(changes).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
        result: dict[str, Any] = json.loads(response.read())
    return result


@contextlib.contextmanager
def mock_upstream_process(
    *, latency_ms: float = 0.0, host: str = "127.0.0.1", port: int = 0, python: str = sys.executable
) -> Iterator[MockUpstreamProcess]:
    """Run ``python -m socle.testing.mock_upstream`` in a child process; stop it on exit."""
    command = [python, "-m", "socle.testing.mock_upstream", "--host", host, "--port", str(port)]
    command += ["--latency-ms", str(latency_ms)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("listening on "):
                raise RuntimeError(f"the mock upstream did not start (exit code {process.poll()})")
            base_url = line.split()[-1]
            yield MockUpstreamProcess(
                base_url=base_url, port=int(base_url.rsplit(":", 1)[1].split("/")[0]), pid=process.pid
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _serve_forever(state: MockState, host: str, port: int) -> None:
    mock = _Server(state)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(mock.protocol, host, port, backlog=4096)
    stopped = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening on http://{host}:{bound}/v1\n")
    sys.stdout.flush()
    try:
        await stopped
    finally:
        await mock.shutdown(server)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``python -m socle.testing.mock_upstream --port 8001 --latency-ms 20``."""
    parser = argparse.ArgumentParser(
        prog="python -m socle.testing.mock_upstream", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before answering")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="wait between streamed events")
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio event loop")
    args = parser.parse_args(argv)
    state = MockState(
        latency_s=args.latency_ms / 1000, token_delay_s=args.token_delay_ms / 1000, reply=args.reply
    )
    loop_factory = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve_forever(state, args.host, args.port))


if __name__ == "__main__":
    main()
