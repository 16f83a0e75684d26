"""Quotas: the budget and rate-limit steps of the pipeline, in one place.

:meth:`Quotas.admit` runs after authorization and before the engine is called; :meth:`Quotas.finish`
runs when the call ends, however it ends. Between them, a :class:`Hold` says what the request reserved.

Worst case
    A request reserves what it may use at most: an upper bound of its prompt tokens plus its output
    bound, priced at the most expensive engine of its model's pool.

    * Prompt: the UTF-8 bytes of its text, plus 8 tokens per message (role markers) and 64 for the
      template (BOS, default system prompt). No tokenizer is needed, and it is a bound, not a guess: every
      token of a BPE or SentencePiece vocabulary (byte fallback included) stands for at least one byte
      of text, so a text of *n* bytes is at most *n* tokens; only the template's own special tokens are
      not text. It over-reserves about fourfold for English, which is safe: the difference is given
      back at settlement, a fraction of a second later.
    * Output: ``max_tokens``; without it, ``n_ctx`` for llama.cpp engines and
      ``budget_default_max_tokens`` for the others, which then becomes the request's ``max_tokens``, so
      that the reservation is a hard bound.

    Settlement charges the engine's own count, priced at the engine that answered. A stream that ends
    without the engine's count (the client went away, the engine failed mid-way) is charged the prompt
    bound plus one token per streamed chunk. A call that fails before any output releases everything.

Transactions
    With database counters, admission is one write transaction (rate-limit counters, budget counters,
    the reservation row) and settlement one more, only if something is to be settled: a request under
    requests-per-minute limits only writes once, and one with no budget or limit never writes. With
    Redis counters, the counters are taken first (one script call), then the budgets; if a budget
    refuses, the counters are given back.

Configuration cache
    Which budgets and limits exist is read from the database at most every ``governance_cache_s``
    seconds per process (default 5), so requests that no budget or limit governs cost no database
    access at all. Counters are never cached. Changes made through a :class:`Quotas` apply at once in
    its process and within ``governance_cache_s`` on the others; a changed *budget limit* applies at
    once everywhere, because reservations read it in SQL.

Failing closed
    If the database (or Redis) cannot be reached, admission raises
    :class:`~socle.errors.StorageError` (503), unless ``budget_fail_open`` is set: then the request is
    served ungoverned and an error is logged (at most every 10 s). A settlement that fails is retried in
    the background; if it never succeeds, the sweeper releases the reservation after the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from socle.config import EngineConfig, LlamaCppEngineConfig, Settings
from socle.errors import BudgetExceededError, RateLimitError, StorageError
from socle.governance.alerts import Alert, Alerts
from socle.governance.budgets import Budget, BudgetStatus, BudgetStore, Reservation
from socle.governance.identity import Principal
from socle.governance.money import Spend, cost_nano_eur
from socle.governance.ratelimits import (
    Bucket,
    Counters,
    DatabaseCounters,
    RateLimit,
    RateLimitStore,
    RedisCounters,
    Taken,
)
from socle.storage.db import Database
from socle.storage.types import utcnow

__all__ = ["Hold", "Quotas", "Worst", "prompt_bound", "worst_case"]

log = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 8
PROMPT_OVERHEAD_TOKENS = 64
_SWEEP_INTERVAL_S = 60.0
_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_LOG_EVERY_S = 10.0
_CLOSE_TIMEOUT_S = 10.0


# Estimates and prices ------------------------------------------------------------------------------
def prompt_bound(texts: Sequence[str], *, messages: int = 0) -> int:
    """An upper bound of the tokens of a prompt made of ``texts`` (see the module docs)."""
    return sum(len(t.encode("utf-8")) for t in texts) + TOKENS_PER_MESSAGE * messages + PROMPT_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True)
class Worst:
    """A request's worst case: prompt and output token bounds and their highest price."""

    prompt_tokens: int
    output_tokens: int
    nano_eur: int

    @property
    def spend(self) -> Spend:
        return Spend(self.prompt_tokens + self.output_tokens, self.nano_eur)


def worst_case(
    engines: Sequence[EngineConfig], prompt_tokens: int, max_tokens: int | None, default_max_tokens: int
) -> Worst:
    """The worst case of a generation on any of ``engines`` (pass ``max_tokens=0`` for embeddings)."""
    output = 0
    nano = 0
    for config in engines:
        if isinstance(config, LlamaCppEngineConfig):
            out = config.n_ctx if max_tokens is None else min(max_tokens, config.n_ctx)
        else:
            out = default_max_tokens if max_tokens is None else max_tokens
        output = max(output, out)
        nano = max(nano, cost_nano_eur(config, prompt_tokens, out))
    return Worst(prompt_tokens, output, nano)


@dataclass(slots=True, kw_only=True)
class Hold:
    """What one admitted request reserved: budget amounts and rate-limit counts."""

    request_id: str
    worst: Worst
    reservation: Reservation | None = None
    taken: tuple[Taken, ...] = ()
    budgets: tuple[Budget, ...] = ()
    """The budgets the reservation holds amounts in (for the alert thresholds at settlement)."""
    finished: bool = field(default=False)


@dataclass(frozen=True, slots=True)
class _Config:
    budgets: dict[tuple[str, str], tuple[Budget, ...]]
    limits: dict[tuple[str, str], RateLimit]
    loaded: float


# The step ----------------------------------------------------------------------------------------
class Quotas:
    """Budgets and rate limits for the pipeline; owns the stores the admin API uses.

    ``budgets`` (:class:`BudgetStore`) and ``limits`` (:class:`RateLimitStore`) are the management
    interfaces; call :meth:`invalidate` after changing them so that this process sees the change at once.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        counters: Counters | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self._db = db
        self._alerts = alerts
        self._thresholds = sorted(set(settings.alerts.thresholds))
        self._alerted: set[tuple[str, int, str]] = set()  # (subject, threshold, period) already emitted here
        self._clock = clock
        self.budgets = BudgetStore(
            db,
            clock=clock,
            reservation_timeout_s=settings.budget_reservation_timeout_s,
            retention_s=settings.budget_reservation_retention_s,
        )
        self.limits = RateLimitStore(db, clock=clock)
        if counters is None:
            url = settings.redis_url
            counters = DatabaseCounters(db) if url is None else RedisCounters(url.get_secret_value())
        self.counters: Counters = counters
        self._fail_open = settings.budget_fail_open
        self._default_max_tokens = settings.budget_default_max_tokens
        self._cache_s = settings.governance_cache_s
        self._defaults = {
            "key": (settings.default_key_rpm, settings.default_key_tpm),
            "team": (settings.default_team_rpm, settings.default_team_tpm),
        }
        self._config: _Config | None = None
        self._load_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._last_warning = -_LOG_EVERY_S

    # Life cycle -------------------------------------------------------------------------------
    async def start(self, *, sweep_interval_s: float = _SWEEP_INTERVAL_S) -> None:
        """Start the sweeper (expired reservations, old counters)."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(
                self._sweep_loop(sweep_interval_s), name="socle-quota-sweeper"
            )

    async def aclose(self) -> None:
        """Stop the sweeper, finish pending settlements, close the counters (before the database)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.drain(timeout_s=_CLOSE_TIMEOUT_S)
        await self.counters.aclose()

    async def drain(self, *, timeout_s: float | None = None) -> None:
        """Wait until every settlement started so far has finished; after ``timeout_s``, give up on the
        ones still retrying (the sweeper will release their reservations)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.error(
                    "%d settlement(s) unfinished at shutdown; the sweeper will release them", len(self._tasks)
                )
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
                return
            await asyncio.wait(list(self._tasks), timeout=left)

    def invalidate(self) -> None:
        """Forget the cached configuration: the next request reads budgets and limits again."""
        self._config = None

    # Admission --------------------------------------------------------------------------------
    async def admit(
        self, principal: Principal, model: str, estimate: Callable[[], Worst], *, request_id: str = ""
    ) -> Hold | None:
        """Reserve the request's worst case in every budget and count it in every rate limit that
        applies, atomically; ``None`` if none applies. Raises :class:`~socle.errors.RateLimitError`,
        :class:`~socle.errors.BudgetExceededError` or :class:`~socle.errors.StorageError`."""
        try:
            config = await self._current()
            budgets = self._budgets_for(config, principal)
            buckets = self._buckets_for(config, principal, model)
            if not budgets and not buckets:
                return None
            hold = Hold(request_id=request_id, worst=estimate(), budgets=tuple(budgets))
            await self._reserve(hold, principal, budgets, buckets)
        except RateLimitError as exc:  # BudgetExceededError is one too
            self._alert_refusal(exc, principal)
            raise
        except StorageError as exc:
            if not self._fail_open:
                raise
            self._warn(
                "budget_fail_open: serving request %s without budgets and rate limits: %s", request_id, exc
            )
            return None
        return hold

    async def _reserve(
        self, hold: Hold, principal: Principal, budgets: Sequence[Budget], buckets: Sequence[Bucket]
    ) -> None:
        now_ms = int(self._clock().timestamp() * 1000)
        spend = hold.worst.spend
        counters = self.counters
        in_database = isinstance(counters, DatabaseCounters)
        if buckets and not in_database:  # Redis: counted first, given back below if a budget refuses
            hold.taken = tuple(await counters.take(buckets, spend.tokens, now_ms))

        def reserve(connection: Connection) -> tuple[tuple[Taken, ...], Reservation | None]:
            taken = hold.taken
            if buckets and isinstance(counters, DatabaseCounters):
                taken = tuple(counters.take_in(connection, buckets, spend.tokens, now_ms))
            reservation = (
                self.budgets.reserve_in(connection, principal, budgets, spend, request_id=hold.request_id)
                if budgets
                else None
            )
            return taken, reservation

        if not budgets and not in_database:
            return
        try:
            hold.taken, hold.reservation = await self._committed(hold, self._db.transact(reserve))
        except BaseException:
            if not in_database:
                await self._give_back_quietly(hold.taken)
            raise

    async def _committed(
        self, hold: Hold, work: Awaitable[tuple[tuple[Taken, ...], Reservation | None]]
    ) -> tuple[tuple[Taken, ...], Reservation | None]:
        """Await a reservation's transaction; if the caller is cancelled meanwhile (the client went away),
        the transaction still commits in its thread, so release what it reserved as soon as it has."""
        future = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda done: self._release_orphan(hold, done))
            raise

    def _release_orphan(self, hold: Hold, done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        hold.taken, hold.reservation = done.result()
        hold.finished = True
        self._spawn(self._finish_first(hold, None))

    async def _give_back_quietly(self, taken: Sequence[Taken]) -> None:
        try:
            await self.counters.give_back(taken, requests=True)
        except StorageError as exc:
            log.warning("could not give back rate-limit counts of a refused request: %s", exc)

    # Settlement -------------------------------------------------------------------------------
    async def finish(self, hold: Hold, actual: Spend | None, *, wait: bool = True) -> None:
        """Settle a hold to ``actual`` use, or release it (``None``: the call failed); once per hold.

        The work runs in a task of its own, so a client that goes away (cancelling the caller) cannot
        interrupt it. If the store fails, this returns and the task retries in the background. With
        ``wait=False`` (the pipeline's choice) it returns at once: an answer is never held back by its
        settlement, and until it lands the request's worst case stays reserved, so nothing can overspend
        meanwhile. :meth:`drain` (and :meth:`aclose`) wait for every settlement started.
        """
        if hold.finished:
            return
        hold.finished = True
        task = self._spawn(self._finish_first(hold, actual))
        if wait:
            await asyncio.shield(task)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name="socle-quota-settle")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _finish_first(self, hold: Hold, actual: Spend | None) -> None:
        try:
            statuses = await self._finish_once(hold, actual)
        except StorageError as exc:
            log.warning("could not settle request %s (retrying in the background): %s", hold.request_id, exc)
            self._spawn(self._finish_later(hold, actual))
            return
        await self._alert_thresholds(statuses)

    async def _finish_later(self, hold: Hold, actual: Spend | None) -> None:
        for delay in _RETRY_DELAYS_S:
            await asyncio.sleep(delay)
            try:
                await self._finish_once(hold, actual)
                return
            except StorageError as exc:
                log.warning("could not settle request %s (will retry): %s", hold.request_id, exc)
        log.error(
            "gave up settling request %s; the sweeper will release its reservation after %s",
            hold.request_id,
            self.budgets.reservation_timeout,
        )

    async def _finish_once(self, hold: Hold, actual: Spend | None) -> list[BudgetStatus]:
        """Settle or release in one transaction; returns the budgets' counters after a settlement when
        alert thresholds are watched (read in the same transaction: no extra round trip)."""
        used = 0 if actual is None else actual.tokens
        refunds = [
            Taken(t.bucket, t.minute, 0, t.tokens - used, True)
            for t in hold.taken
            if t.limits_tokens and t.tokens > used
        ]
        reservation = hold.reservation
        if reservation is None and not refunds:
            return []
        watched = self._watched(hold, actual)
        counters = self.counters
        if refunds and not isinstance(counters, DatabaseCounters):  # Redis: given back on their own
            await counters.give_back(refunds, requests=False)
            hold.taken = ()
            refunds = []
            if reservation is None:
                return []

        def finish(connection: Connection) -> list[BudgetStatus]:
            if refunds and isinstance(counters, DatabaseCounters):
                counters.give_back_in(connection, refunds, requests=False)
            if reservation is not None:
                self.budgets.finish_in(connection, reservation, actual)
            return self.budgets.statuses_in(connection, watched)

        return await self._db.transact(finish)

    def _watched(self, hold: Hold, actual: Spend | None) -> list[tuple[Budget, datetime]]:
        """The (budget, period) counters whose thresholds a settlement may cross."""
        if actual is None or hold.reservation is None or self._alerts is None or not self._thresholds:
            return []
        by_id = {budget.id: budget for budget in hold.budgets}
        return [(by_id[b], start) for b, start in hold.reservation.counters if b in by_id]

    # Alerts ---------------------------------------------------------------------------------------
    async def _alert_thresholds(self, statuses: Sequence[BudgetStatus]) -> None:
        """After a settlement: alert once for each configured threshold a budget has now reached."""
        if self._alerts is None:
            return
        for status in statuses:
            used = _percent_used(status)
            period = status.period_start.date().isoformat()
            for threshold in self._thresholds:
                key = (f"budget:{status.budget.id}", threshold, period)
                if used < threshold or key in self._alerted:
                    continue
                self._alerted.add(key)
                await self._alerts.emit(
                    Alert(
                        kind="budget.threshold",
                        subject=key[0],
                        threshold=threshold,
                        period=period,
                        message=f"{status.budget.describe()} has reached {threshold}% ({used:.0f}% used).",
                        data=status.to_dict(),
                    )
                )

    def _alert_refusal(self, exc: RateLimitError, principal: Principal) -> None:
        """A refused request: alert once per kind, team and UTC day (the first refusal's message)."""
        if self._alerts is None:
            return
        kind = "budget.exceeded" if isinstance(exc, BudgetExceededError) else "limit.hit"
        subject = f"team:{principal.team_id}"
        period = self._clock().date().isoformat()
        if (f"{kind}:{subject}", 100, period) in self._alerted:
            return
        self._alerted.add((f"{kind}:{subject}", 100, period))
        alert = Alert(
            kind=kind,
            subject=subject,
            threshold=100,
            period=period,
            message=f"Team {principal.team_name}: {exc.message}",
            data={"team_id": principal.team_id, "team": principal.team_name, "code": exc.code},
        )
        self._spawn(self._emit_quietly(alert))

    async def _emit_quietly(self, alert: Alert) -> None:
        assert self._alerts is not None
        try:
            await self._alerts.emit(alert)
        except StorageError as exc:
            log.warning("could not record alert %s: %s", alert.kind, exc)

    # Configuration ----------------------------------------------------------------------------
    async def _current(self) -> _Config:
        config = self._config
        if config is not None and time.monotonic() - config.loaded < self._cache_s:
            return config
        async with self._load_lock:
            config = self._config
            if config is not None and time.monotonic() - config.loaded < self._cache_s:
                return config
            budgets: dict[tuple[str, str], list[Budget]] = {}
            for budget in await self.budgets.list_budgets():
                budgets.setdefault((budget.scope, budget.scope_id), []).append(budget)
            limits: dict[tuple[str, str], RateLimit] = {
                (limit.scope, limit.scope_id): limit for limit in await self.limits.list_limits()
            }
            config = _Config({k: tuple(v) for k, v in budgets.items()}, limits, time.monotonic())
            self._config = config
            return config

    def _budgets_for(self, config: _Config, principal: Principal) -> list[Budget]:
        if not config.budgets:
            return []
        scopes = (
            ("organisation", principal.org_id),
            ("team", principal.team_id),
            ("user", principal.principal_id),
            ("key", principal.key_id),
        )
        return [b for scope in scopes for b in config.budgets.get(scope, ())]

    def _buckets_for(self, config: _Config, principal: Principal, model: str) -> list[Bucket]:
        team = principal.team_name
        scopes = (
            ("key", principal.key_id, f"key {principal.key_id}"),
            ("team", principal.team_id, f"team {team}"),
            ("model", model, f"model {model}"),
            ("team_model", f"{principal.team_id}:{model}", f"team {team} on model {model}"),
        )
        buckets = []
        for scope, scope_id, label in scopes:
            limit = config.limits.get((scope, scope_id))
            rpm, tpm = (
                (limit.requests_per_minute, limit.tokens_per_minute)
                if limit is not None
                else self._defaults.get(scope, (None, None))
            )
            if rpm is not None or tpm is not None:
                buckets.append(Bucket(f"{scope}:{scope_id}", label, rpm, tpm))
        return buckets

    # Estimates --------------------------------------------------------------------------------
    def worst_case(
        self, engines: Sequence[EngineConfig], prompt_tokens: int, max_tokens: int | None
    ) -> Worst:
        """:func:`worst_case` with this gateway's ``budget_default_max_tokens``."""
        return worst_case(engines, prompt_tokens, max_tokens, self._default_max_tokens)

    # Housekeeping -----------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Expire reservations of dead processes and forget old rate-limit minutes."""
        await self.budgets.sweep()
        await self.counters.purge(int(self._clock().timestamp() * 1000))

    async def _sweep_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except StorageError as exc:
                log.warning("quota sweeper: %s", exc)
            except Exception:  # noqa: BLE001 - the sweeper must outlive one bad run; logged with traceback
                log.exception("quota sweeper failed")

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_S:
            self._last_warning = now
            log.error(message, *args)


def _percent_used(status: BudgetStatus) -> float:
    """The larger of the euro and token shares of the budget's limits that the period has spent."""
    shares = []
    budget = status.budget
    if budget.limit_nano_eur:
        shares.append(100 * status.spent.nano_eur / budget.limit_nano_eur)
    if budget.limit_tokens:
        shares.append(100 * status.spent.tokens / budget.limit_tokens)
    return max(shares, default=0.0)
