"""A lean HTTP/1.1 transport for httpx, used by the OpenAI-compatible engine for plain-http upstreams.

Why: every request through the gateway to an upstream pays for the HTTP client twice (request and
answer). httpx's default transport (httpcore's connection pool, the pure-Python h11 state machine,
AnyIO locks and checkpoints) costs about a millisecond of CPU per request on the benchmark machine,
as much as the rest of the gateway. This transport keeps httpx's client API (URL merging, headers,
timeouts, ``Response``) and replaces only the wire: an :class:`asyncio.Protocol` per connection, the
``httptools`` C parser (shipped with ``uvicorn[standard]``) for answers, and a small LIFO keep-alive
pool. It cuts the client's cost several-fold (see ``bench/gateway_overhead.py``).

Scope, on purpose: plain ``http://`` origins only (TLS upstreams keep httpx's own transport, where the
handshake dominates anyway), no proxies, no HTTP/2, no ``Expect: 100-continue``, no HEAD requests.
Semantics follow httpx: the ``connect``, ``read`` (longest wait between two reads) and ``pool`` timeouts
of the request raise :class:`httpx.ConnectTimeout`, :class:`httpx.ReadTimeout` and
:class:`httpx.PoolTimeout`; a refused connection is :class:`httpx.ConnectError`, a connection that closes
before the answer is complete is :class:`httpx.RemoteProtocolError`, so callers translate errors the same
way whichever transport runs. An answer that is not read to its end (a client went away mid-stream)
closes its connection, which tells the upstream to stop generating.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

from socle import egress

__all__ = ["Http1Transport"]

_PAUSE_ABOVE = 1 << 18  # stop reading from the socket while this much body waits to be consumed


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; carries one request-response exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self._until_eof = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        if self.headers_done and self._until_eof and not self.complete:
            self.complete = True
            self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        if not self.complete:
            detail = f": {exc}" if exc else ""
            what = "before completing the answer" if self.headers_done else "without sending an answer"
            self._fail(httpx.RemoteProtocolError(f"server disconnected {what}{detail}"))

    # httptools callbacks --------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True
        names = {name.lower() for name, _ in self.headers}
        self._until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _PAUSE_ABOVE and self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # Exchange -------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._reset()
        if self._transport is None:
            raise httpx.RemoteProtocolError("connection closed before the request was sent")
        self._transport.write(data)

    async def wait_headers(self, read_timeout_s: float | None) -> None:
        while not self.headers_done:
            await self._wait(read_timeout_s)

    async def next_chunk(self, read_timeout_s: float | None) -> bytes:
        """The next piece of body, or ``b""`` at its end."""
        while not self._chunks:
            if self.complete:
                return b""
            await self._wait(read_timeout_s)
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= _PAUSE_ABOVE // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    async def _wait(self, read_timeout_s: float | None) -> None:
        """Wait for the parser's next event; a timer (cheaper than ``asyncio.timeout``) bounds the wait."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        timer = None
        if read_timeout_s is not None:
            timer = self._loop.call_later(read_timeout_s, self._timed_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self._error is not None:
            raise self._error

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("timed out waiting for the upstream"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class _Pool:
    """Keep-alive connections to one origin, at most ``limit`` open at once; LIFO reuse."""

    def __init__(self, host: str, port: int, limit: int, keepalive_expiry: float) -> None:
        self._host, self._port = host, port
        self._limit = limit
        self._expiry = keepalive_expiry
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, timeouts: dict[str, float | None]) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and now - connection.idle_since < self._expiry:
                    return connection
                self._discard(connection)
            if len(self._open) + self._connecting < self._limit:
                return await self._connect(loop, timeouts.get("connect"))
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await waiter
            except TimeoutError as exc:
                raise httpx.PoolTimeout("no free connection to the upstream in time") from exc
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, loop: asyncio.AbstractEventLoop, connect_timeout_s: float | None) -> _Connection:
        self._connecting += 1  # the slot is taken while connecting
        try:
            egress.check(self._host, self._port, via="engine http client")
            async with asyncio.timeout(connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), self._host, self._port
                )
        except TimeoutError as exc:
            self._wake_one()
            raise httpx.ConnectTimeout(f"connecting to {self._host}:{self._port} timed out") from exc
        except OSError as exc:
            self._wake_one()
            raise httpx.ConnectError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        finally:
            self._connecting -= 1
        self._open.add(connection)
        return connection

    def release(self, connection: _Connection) -> None:
        """Return ``connection`` after an exchange; it is kept only if it can carry another one."""
        if connection.complete and connection.keep_alive and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            self._discard(connection)
        self._wake_one()

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()


class _Body(httpx.AsyncByteStream):
    """An answer's body, read from its connection as the caller iterates."""

    def __init__(self, pool: _Pool, connection: _Connection, read_timeout: float | None) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        while chunk := await connection.next_chunk(self._timeout):
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)


class Http1Transport(httpx.AsyncBaseTransport):
    """An :class:`httpx.AsyncBaseTransport` for ``http://`` URLs; see the module docstring.

    Idle connections are dropped after ``keepalive_expiry`` seconds, below uvicorn's default keep-alive
    timeout (5 s, used by vLLM and many others), so that a request is not sent on a connection that
    the server is closing at the same moment.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float = 4.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._pools: dict[tuple[str, int], _Pool] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"this transport serves http:// URLs only, not {url.scheme}://")
        origin = (url.host, url.port or 80)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(*origin, self._max_connections, self._keepalive_expiry)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        data = await _serialise(request)
        connection = await pool.acquire(timeouts)
        try:
            connection.send(data)
            await connection.wait_headers(timeouts.get("read"))
        except BaseException:
            connection.close()
            pool.release(connection)
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(pool, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


async def _serialise(request: httpx.Request) -> bytes:
    """The request's bytes on the wire: request line, headers, body (chunked if it is a stream)."""
    parts = [b"%b %b HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    parts += [b"%b: %b\r\n" % (name, value) for name, value in request.headers.raw]
    parts.append(b"\r\n")
    try:
        parts.append(request.content)
    except httpx.RequestNotRead:
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for chunk in request.stream:
            parts.append(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            parts.append(b"0\r\n\r\n")
    return b"".join(parts)
