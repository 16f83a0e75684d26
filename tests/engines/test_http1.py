"""The lean HTTP/1.1 transport behind the OpenAI-compatible engine: keep-alive, limits, framing, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import orjson
import pytest

from socle.engines._http1 import Http1Transport
from socle.testing.mock_upstream import DEFAULT_REPLY, MockUpstream, mock_upstream

pytestmark = pytest.mark.anyio
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    with mock_upstream() as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(upstream: MockUpstream) -> Iterator[None]:
    yield
    upstream.state.failure, upstream.state.latency_s, upstream.state.token_delay_s = None, 0.0, 0.0


def client(base_url: str, *, max_connections: int = 4, **timeouts: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(timeouts.get("read", 10.0), pool=timeouts.get("pool", 10.0))
    transport = Http1Transport(max_connections=max_connections)
    return httpx.AsyncClient(base_url=base_url + "/", transport=transport, timeout=timeout)


async def test_keep_alive_reuses_one_connection(upstream: MockUpstream) -> None:
    before = upstream.state.connections
    async with client(upstream.base_url) as http:
        for _ in range(5):
            response = await http.post("chat/completions", content=orjson.dumps(CHAT))
            assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert upstream.state.connections - before == 1


async def test_connection_limit_queues_requests(upstream: MockUpstream) -> None:
    upstream.state.latency_s = 0.01
    before = upstream.state.connections
    async with client(upstream.base_url, max_connections=2) as http:
        responses = await asyncio.gather(*(http.get("models") for _ in range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    assert upstream.state.connections - before == 2


async def test_pool_timeout(upstream: MockUpstream) -> None:
    upstream.state.latency_s = 0.5
    async with client(upstream.base_url, max_connections=1, pool=0.05) as http:
        slow = asyncio.create_task(http.get("models"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await http.get("models")
        assert (await slow).status_code == 200


async def test_stream_closed_early_drops_its_connection(upstream: MockUpstream) -> None:
    body = orjson.dumps({**CHAT, "stream": True})
    before = upstream.state.connections
    async with client(upstream.base_url) as http:
        upstream.state.token_delay_s = 0.01  # the answer is still coming when the client leaves
        async with http.stream("POST", "chat/completions", content=body) as response:
            async for _ in response.aiter_bytes():
                break
        upstream.state.token_delay_s = 0.0
        async with http.stream("POST", "chat/completions", content=body) as response:
            text = (await response.aread()).decode()
    assert text.endswith("data: [DONE]\n\n")
    assert upstream.state.connections - before == 2


async def test_streamed_request_body_is_sent_chunked(upstream: MockUpstream) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"model": "m", "prompt": "x",'
        yield b' "max_tokens": 2}'

    async with client(upstream.base_url) as http:
        response = await http.post("completions", content=body())
    assert response.json()["choices"][0]["text"] == "Hello from"


async def test_large_bodies_are_read_whole(upstream: MockUpstream) -> None:
    inputs = [f"text number {i}" for i in range(4000)]
    async with client(upstream.base_url) as http:
        response = await http.post("embeddings", content=orjson.dumps({"model": "e", "input": inputs}))
    assert len(response.content) > 1 << 19
    assert len(response.json()["data"]) == 4000


async def test_read_timeout(upstream: MockUpstream) -> None:
    upstream.state.latency_s = 0.5
    async with client(upstream.base_url, read=0.05) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("models")


async def test_dropped_connection_is_a_protocol_error(upstream: MockUpstream) -> None:
    upstream.state.failure = "drop"
    async with client(upstream.base_url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("models")


async def test_refused_connection_is_a_connect_error() -> None:
    async with raw_server(lambda reader, writer: asyncio.sleep(0)) as url:
        pass  # the port is closed again: nobody listens there now
    async with client(url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("models")


async def test_answer_read_until_close_and_http_1_0() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with raw_server(answer) as url, client(url) as http:
        first = await http.get("models")
        second = await http.get("models")
    assert first.text == second.text == "until the end"


async def test_malformed_answer_is_a_protocol_error() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with raw_server(answer) as url, client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("models")


async def test_only_plain_http() -> None:
    async with httpx.AsyncClient(transport=Http1Transport(max_connections=1)) as http:
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.get("https://127.0.0.1:9/")


class raw_server:  # noqa: N801 - used like a function, as an async context manager
    """A throw-away asyncio server on loopback, for answers the mock never gives."""

    def __init__(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await self._handler(reader, writer)

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
