"""The router: public model names → pools of engines, with balancing, caps, failover and health.

* Each public model (and its aliases) maps to a pool: an ordered list of engines.
* A request goes to the least-busy engine of its pool (in-flight / capacity), among the healthy ones;
  the pool order breaks ties. Capacity is the engine's ``concurrency`` plus, for engines that queue
  internally (llama.cpp), their ``queue_size``.
* When every engine of the pool is at capacity the request is refused at once with
  :class:`EngineUnavailableError` (503 + ``Retry-After``): a gateway should shed load, not pile it up.
* If an engine fails *before the first byte* (:class:`EngineError` or its own queue is full), the
  request fails over to the next engine of the pool; once bytes have reached the client, an error
  ends the stream instead. A failed engine is marked unhealthy until a health probe succeeds.
* A background task probes every engine every ``health_check_interval_s`` and restores recovered ones.
  If no engine of a pool is healthy, the unhealthy ones are still tried (the probe may be stale).
* Residency: a call may be restricted to engines in some ``zones`` (the request's classification
  decides which, see :mod:`socle.governance.residency`). The restriction holds for the first choice
  and for every failover: an engine outside those zones is never tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from socle.config import ModelRoute
from socle.engines.base import Delta, Engine
from socle.errors import (
    EngineError,
    EngineUnavailableError,
    ModelNotFoundError,
    ResidencyError,
    UnsupportedError,
)

__all__ = ["Pool", "Router", "Slot", "close_stream"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_FAILOVER = (EngineError, EngineUnavailableError)


@dataclass(eq=False)
class Slot:
    """One engine as the router sees it: live load and health."""

    engine: Engine
    capacity: int
    in_flight: int = 0
    healthy: bool = True
    detail: str = ""
    checked_at: datetime | None = None
    """When a health probe last ran (``None``: not yet)."""
    last_error: str = ""
    """The last failure seen, by a call or a probe (kept after recovery, for the console)."""
    last_error_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.engine.config.name

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity


@dataclass(eq=False)
class Pool:
    """The engines behind one public model name."""

    name: str
    aliases: tuple[str, ...]
    slots: list[Slot] = field(default_factory=list)

    @property
    def capabilities(self) -> frozenset[str]:
        caps: set[str] = set()
        for slot in self.slots:
            caps |= slot.engine.capabilities
        return frozenset(caps)

    def candidates(self, capability: str) -> list[Slot]:
        """Engines to try, best first: healthy before unhealthy, then least busy, then pool order."""
        able = [s for s in self.slots if capability in s.engine.capabilities]
        if not able:
            raise UnsupportedError(
                f"model {self.name!r} does not support {capability}", code="unsupported_model"
            )
        order = {id(s): i for i, s in enumerate(able)}
        return sorted(able, key=lambda s: (not s.healthy, s.load, order[id(s)]))


class Router:
    """Resolves public model names and runs calls on the best engine of a pool, with failover."""

    def __init__(
        self,
        engines: Iterable[Engine],
        routes: Iterable[ModelRoute],
        *,
        retry_after_s: int = 1,
        on_engine_change: Callable[[Slot], None] | None = None,
    ) -> None:
        self.slots = {e.config.name: Slot(e, _capacity(e)) for e in engines}
        self.pools: dict[str, Pool] = {}
        self._by_name: dict[str, Pool] = {}
        for route in routes:
            pool = Pool(route.name, tuple(route.aliases), [self.slots[n] for n in route.engines])
            self.pools[route.name] = pool
            for name in (route.name, *route.aliases):
                self._by_name[name] = pool
        self.retry_after_s = retry_after_s
        self._on_change = on_engine_change
        self._health_task: asyncio.Task[None] | None = None

    def resolve(self, model: str) -> Pool:
        pool = self._by_name.get(model)
        if pool is None:
            raise ModelNotFoundError(
                f"The model {model!r} does not exist or you do not have access to it.", param="model"
            )
        return pool

    # Calls ----------------------------------------------------------------------------------------
    async def call(
        self,
        pool: Pool,
        capability: str,
        fn: Callable[[Engine], Awaitable[T]],
        *,
        zones: Collection[str] | None = None,
        on_failover: Callable[[Slot, Exception], None] | None = None,
    ) -> tuple[T, Engine]:
        """Run ``fn(engine)`` on the best engine of ``pool`` in ``zones`` (default: any), failing over
        on engine errors (``on_failover`` hears of each engine left behind)."""
        last: Exception | None = None
        for slot in self._admit(pool, capability, zones):
            self._enter(slot)
            try:
                return await fn(slot.engine), slot.engine
            except _FAILOVER as exc:
                last = exc
                self._failed(slot, exc, on_failover)
            finally:
                self._leave(slot)
        raise self._exhausted(pool, last)

    async def stream(
        self,
        pool: Pool,
        capability: str,
        fn: Callable[[Engine], AsyncIterator[Delta]],
        *,
        zones: Collection[str] | None = None,
        on_failover: Callable[[Slot, Exception], None] | None = None,
    ) -> tuple[AsyncIterator[Delta], Engine]:
        """Open a stream on the best engine in ``zones``; fail over until one produces its first delta.

        The returned iterator holds the engine's slot until it is exhausted or closed; callers must
        close it (``aclose``) when they stop early, e.g. when the client disconnects.
        """
        last: Exception | None = None
        for slot in self._admit(pool, capability, zones):
            self._enter(slot)
            stream = fn(slot.engine)
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                self._leave(slot)
                return _empty(), slot.engine
            except _FAILOVER as exc:
                self._leave(slot)
                await close_stream(stream)
                last = exc
                self._failed(slot, exc, on_failover)
                continue
            except BaseException:
                self._leave(slot)
                await close_stream(stream)
                raise
            return self._held(slot, first, stream), slot.engine
        raise self._exhausted(pool, last)

    def _held(self, slot: Slot, first: Delta, stream: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        return _HeldStream(first, stream, lambda: self._leave(slot))

    def _admit(self, pool: Pool, capability: str, zones: Collection[str] | None) -> list[Slot]:
        able = pool.candidates(capability)
        if zones is not None:
            able = [s for s in able if s.engine.config.zone in zones]
            if not able:  # the pipeline refuses such requests first; this is the last line of defence
                raise ResidencyError(
                    f"No engine serving {pool.name!r} is in an allowed zone ({', '.join(sorted(zones))})."
                )
        candidates = [s for s in able if s.in_flight < s.capacity]
        if not candidates:
            raise EngineUnavailableError(
                f"All engines serving {pool.name!r} are busy; retry shortly.",
                code="engine_overloaded",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        return candidates

    def _exhausted(self, pool: Pool, last: Exception | None) -> Exception:
        if isinstance(last, EngineUnavailableError):
            last.headers.setdefault("Retry-After", str(self.retry_after_s))
            return last
        return EngineUnavailableError(
            f"No engine serving {pool.name!r} could answer: {last}",
            code="engine_unavailable",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    def _enter(self, slot: Slot) -> None:
        slot.in_flight += 1
        if self._on_change:
            self._on_change(slot)

    def _leave(self, slot: Slot) -> None:
        slot.in_flight -= 1
        if self._on_change:
            self._on_change(slot)

    def _failed(
        self, slot: Slot, exc: Exception, on_failover: Callable[[Slot, Exception], None] | None
    ) -> None:
        if on_failover is not None:
            on_failover(slot, exc)
        if isinstance(exc, EngineError):
            log.warning("engine %s failed, failing over: %s", slot.name, exc)
            slot.healthy, slot.detail = False, str(exc)
            slot.last_error, slot.last_error_at = str(exc), datetime.now(UTC)
            if self._on_change:
                self._on_change(slot)

    # Health ---------------------------------------------------------------------------------------
    async def check_health(self, timeout_s: float = 5.0) -> None:
        """Probe every engine once and update its health."""
        await asyncio.gather(*(self._probe(slot, timeout_s) for slot in self.slots.values()))

    async def _probe(self, slot: Slot, timeout_s: float) -> None:
        try:
            health = await asyncio.wait_for(slot.engine.health(), timeout_s)
            ok, detail = health.ok, health.detail
        except (TimeoutError, EngineError, OSError) as exc:
            ok, detail = False, f"health probe failed: {exc!r}"
        if ok != slot.healthy:
            log.warning("engine %s is now %s %s", slot.name, "healthy" if ok else "unhealthy", detail)
        slot.healthy, slot.detail, slot.checked_at = ok, detail, datetime.now(UTC)
        if not ok:
            slot.last_error, slot.last_error_at = detail, slot.checked_at
        if self._on_change:
            self._on_change(slot)

    def start_health_checks(self, interval_s: float) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                await self.check_health(timeout_s=min(interval_s, 5.0))

        self._health_task = asyncio.create_task(loop(), name="socle-engine-health")

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None


def _capacity(engine: Engine) -> int:
    return engine.config.concurrency + int(getattr(engine.config, "queue_size", 0))


class _HeldStream:
    """An engine stream that holds its slot: released exactly once, when exhausted or closed,
    even if it is closed before anyone iterates it."""

    def __init__(self, first: Delta, stream: AsyncIterator[Delta], release: Callable[[], None]) -> None:
        self._first: Delta | None = first
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> _HeldStream:
        return self

    async def __anext__(self) -> Delta:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._release is None:
            raise StopAsyncIteration
        try:
            return await anext(self._stream)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        self._first = None
        try:
            await close_stream(self._stream)
        finally:
            release()


async def close_stream(stream: AsyncIterator[Delta]) -> None:
    """Close an engine stream (async generators have ``aclose``; plain iterators may not)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _empty() -> AsyncIterator[Delta]:
    return
    yield  # pragma: no cover
