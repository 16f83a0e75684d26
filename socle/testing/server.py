"""Run a real Socle server (uvicorn, real sockets) in a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from socle.config import Settings
from socle.gateway.app import create_app
from socle.gateway.services import Services

__all__ = ["RunningServer", "free_port", "run_server"]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    admin_key: str
    services: Services
    loop: asyncio.AbstractEventLoop

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run a coroutine on the server's event loop (e.g. to inspect its services) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


@contextmanager
def run_server(settings: Settings, *, startup_timeout_s: float = 120.0) -> Iterator[RunningServer]:
    """Start ``create_app(settings)`` on a free loopback port; stop it on exit.

    ``settings.admin_key`` must be set: it is the key the tests use.
    """
    if settings.admin_key is None:
        raise ValueError("run_server needs settings.admin_key")
    admin_key = settings.admin_key.get_secret_value()
    port = settings.port or free_port()
    settings = settings.model_copy(update={"port": port, "host": "127.0.0.1"})
    started: list[tuple[Services, asyncio.AbstractEventLoop]] = []
    app = create_app(
        settings, on_started=lambda services: started.append((services, asyncio.get_running_loop()))
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"socle-test-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"server failed to start: {errors[0] if errors else 'exited'}") from (
                errors[0] if errors else None
            )
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("server did not start in time")
        time.sleep(0.02)
    services, loop = started[0]
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", admin_key, services, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
