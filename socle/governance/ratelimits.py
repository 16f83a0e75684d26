"""Rate limits: requests and tokens per minute, per key, team and model, shared by every replica.

Limits
    A limit (table ``rate_limits``) allows one *scope* some requests per minute (RPM) and/or tokens per
    minute (TPM): ``key``, ``team``, ``model`` (a public model name, whoever calls it) or ``team_model``
    (one team on one model; ``scope_id`` is ``<team id>:<model name>``, and team ids hold no colon). A
    key or team without its own limit gets the defaults of the settings (``default_key_rpm`` and so
    on), if any. A request is admitted only if every limit that applies (its key's, its team's, its
    model's, its team's on its model) admits it; otherwise 429 with ``Retry-After`` and an OpenAI-style
    error naming the limit (code ``rate_limit_exceeded``).

Sliding window
    Each limited scope is a *bucket* with one counter per wall-clock minute (requests and tokens). A
    request is admitted if ``previous × (1 − elapsed) + current + cost ≤ limit``, where ``elapsed`` is
    the fraction of the current minute gone: the previous minute's count weighted by the part of it still
    inside the sliding minute that ends now. Unlike a fixed window, a burst at the turn of a minute cannot
    pass twice the limit; unlike a log of every request, it costs one row per bucket and minute. (It
    assumes the previous minute's requests were spread evenly; Cloudflare measured the error at 0.003 %.)
    All arithmetic is on integers (milliseconds), in SQL and in Lua alike. ``Retry-After`` is computed
    from the same counters: the seconds until the weighted count leaves room for the request.

Tokens per minute
    At admission a request counts its worst case (prompt upper bound + ``max_tokens``, the estimate
    budgets use); at settlement the unused part is given back to the minute it was taken from.

Where the counters live
    * The database (default): one conditional upsert per bucket, in the same transaction as the budget
      reservation (see :mod:`socle.governance.budgets`)::

          INSERT INTO rate_limit_counters (bucket, minute, requests, tokens)
          SELECT :bucket, :minute, 1, :tokens WHERE <fits with the previous minute alone>
          ON CONFLICT (bucket, minute) DO UPDATE SET requests = requests + 1, tokens = tokens + :tokens
              WHERE <previous and current minute still fit>
          RETURNING requests

      Atomic on PostgreSQL (the row is locked and the condition re-checked on the committed row) and on
      SQLite (one writer at a time). Rows older than the previous minute are deleted by the sweeper.
    * Redis, when ``redis_url`` is set: one Lua script checks every bucket of the request and, only if
      all admit it, increments them all (scripts run atomically); counter keys expire by themselves.
      Needs the ``redis`` Python package (``pip install 'socle[redis]'``). The limits themselves stay
      in the database. Replicas use their own clocks to name minutes: keep them synchronised (NTP).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal, Protocol, cast

from sqlalchemy import BigInteger, Connection, Insert, String, and_, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from socle.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    StorageError,
)
from socle.storage.db import Database
from socle.storage.models import ApiKeyRow, Base, RateLimitCounterRow, RateLimitRow, TeamRow
from socle.storage.types import new_id, utcnow

__all__ = [
    "LIMIT_SCOPES",
    "WINDOW_MS",
    "Bucket",
    "Counters",
    "DatabaseCounters",
    "LimitScope",
    "RateLimit",
    "RateLimitStore",
    "RedisCounters",
    "Taken",
    "retry_after_ms",
]

log = logging.getLogger(__name__)

LimitScope = Literal["key", "team", "model", "team_model"]
LIMIT_SCOPES: tuple[LimitScope, ...] = ("key", "team", "model", "team_model")
WINDOW_MS = 60_000
_SCOPE_TABLES: dict[str, Any] = {"key": ApiKeyRow, "team": TeamRow}


class _Unset(Enum):
    UNSET = 0


_UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """A configured limit; ``None`` means no limit of that kind."""

    id: str
    scope: LimitScope
    scope_id: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_mapping(cls, row: Any) -> RateLimit:
        return cls(
            id=row["id"],
            scope=row["scope"],
            scope_id=row["scope_id"],
            requests_per_minute=row["requests_per_minute"],
            tokens_per_minute=row["tokens_per_minute"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "scope_id": self.scope_id,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limited scope as the counters see it: ``key`` names its counters, ``label`` is for people."""

    key: str
    label: str
    requests_per_minute: int | None
    tokens_per_minute: int | None


@dataclass(frozen=True, slots=True)
class Taken:
    """What one request added to one bucket's counter of one minute (to give back what it did not use)."""

    bucket: str
    minute: int
    requests: int
    tokens: int
    limits_tokens: bool
    """The bucket has a tokens-per-minute limit (else giving tokens back changes nothing that matters)."""


def retry_after_ms(limit: int, previous: int, current: int, cost: int, elapsed_ms: int) -> int | None:
    """Milliseconds until a sliding-window counter admits ``cost`` more (0: now; ``None``: never)."""
    if cost > limit:
        return None
    room = limit - current - cost
    if room >= 0:
        if previous == 0:
            return 0
        needed = max(0, WINDOW_MS - room * WINDOW_MS // previous)  # elapsed time at which it fits
        if needed <= elapsed_ms:
            return 0
        if needed < WINDOW_MS:
            return needed - elapsed_ms
    # Not in this minute: in the next one, this minute's count becomes the previous one.
    if current == 0:
        return WINDOW_MS - elapsed_ms
    needed = max(0, WINDOW_MS - (limit - cost) * WINDOW_MS // current)
    return WINDOW_MS - elapsed_ms + needed


def _refusal(
    bucket: Bucket, metric: str, previous: int, current: int, cost: int, elapsed_ms: int
) -> RateLimitError:
    requests = metric == "requests"
    limit = bucket.requests_per_minute if requests else bucket.tokens_per_minute
    assert limit is not None
    what = f"{metric} per minute on {bucket.label}"
    wait = retry_after_ms(limit, previous, current, cost, elapsed_ms)
    if wait is None:
        return RateLimitError(
            f"Request too large for {what}: it may use up to {cost} tokens, the limit is {limit}. "
            "Lower max_tokens or shorten the prompt.",
            param="max_tokens",
        )
    seconds = max(1, -(-wait // 1000))
    used = -(-(previous * (WINDOW_MS - elapsed_ms)) // WINDOW_MS) + current
    detail = f"{used}/{limit}" if requests else f"{used}/{limit}, this request may use up to {cost}"
    return RateLimitError(
        f"Rate limit reached for {what}: {detail}. Please try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )


# Configured limits -------------------------------------------------------------------------------
class RateLimitStore:
    """Create, update, delete and list the configured rate limits."""

    def __init__(self, db: Database, *, clock: Any = utcnow) -> None:
        self._db = db
        self._clock = clock
        self._table = Base.metadata.tables[RateLimitRow.__tablename__]

    async def create_limit(
        self,
        scope: str,
        scope_id: str,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> RateLimit:
        """Limit one key or team (by id), one public model (by name), or one team on one model
        (``team_model``, ``"<team id>:<model>"``).

        Raises :class:`NotFoundError` for an unknown key or team and :class:`BadRequestError` for
        invalid values or if the scope already has a limit.
        """
        _check_scope(scope)
        rpm, tpm = (
            _per_minute(requests_per_minute, "requests_per_minute"),
            _per_minute(tokens_per_minute, "tokens_per_minute"),
        )
        if rpm is None and tpm is None:
            raise BadRequestError("A rate limit needs requests_per_minute, tokens_per_minute or both.")
        if not scope_id or len(scope_id) > 200:
            raise BadRequestError("scope_id must have 1 to 200 characters.", param="scope_id")
        now = self._clock()
        try:
            async with self._db.session() as session:
                table = _SCOPE_TABLES.get(scope)
                row_id = scope_id
                if scope == "team_model":
                    table, (row_id, _, model) = TeamRow, scope_id.partition(":")
                    if not model:
                        raise BadRequestError(
                            "A team_model limit's scope_id is '<team id>:<model>'.", param="scope_id"
                        )
                if table is not None and await session.get(table, row_id) is None:
                    what = "team" if scope == "team_model" else scope
                    raise NotFoundError(f"No {what} with id {row_id!r}.", code=f"{what}_not_found")
                row = RateLimitRow(
                    id=new_id(),
                    scope=scope,
                    scope_id=scope_id,
                    requests_per_minute=rpm,
                    tokens_per_minute=tpm,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
        except IntegrityError as exc:
            raise ConflictError(
                f"The {scope} {scope_id} already has a rate limit; update it instead.",
                code="rate_limit_exists",
            ) from exc
        return RateLimit.from_mapping(vars(row))

    async def update_limit(
        self,
        limit_id: str,
        *,
        requests_per_minute: int | None | _Unset = _UNSET,
        tokens_per_minute: int | None | _Unset = _UNSET,
    ) -> RateLimit:
        """Change a limit (``None`` removes one kind; an omitted one is kept)."""
        async with self._db.session() as session:
            row = await session.get(RateLimitRow, limit_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"No rate limit with id {limit_id!r}.", code="rate_limit_not_found")
            if not isinstance(requests_per_minute, _Unset):
                row.requests_per_minute = _per_minute(requests_per_minute, "requests_per_minute")
            if not isinstance(tokens_per_minute, _Unset):
                row.tokens_per_minute = _per_minute(tokens_per_minute, "tokens_per_minute")
            if row.requests_per_minute is None and row.tokens_per_minute is None:
                raise BadRequestError("A rate limit needs requests_per_minute, tokens_per_minute or both.")
            row.updated_at = self._clock()
            return RateLimit.from_mapping(vars(row))

    async def delete_limit(self, limit_id: str) -> None:
        async with self._db.session() as session:
            result = await session.execute(delete(RateLimitRow).where(RateLimitRow.id == limit_id))
            if cast(Any, result).rowcount == 0:
                raise NotFoundError(f"No rate limit with id {limit_id!r}.", code="rate_limit_not_found")

    async def get_limit(self, limit_id: str) -> RateLimit:
        rows = await self._db.fetch_all(select(self._table).where(self._table.c.id == limit_id))
        if not rows:
            raise NotFoundError(f"No rate limit with id {limit_id!r}.", code="rate_limit_not_found")
        return RateLimit.from_mapping(rows[0]._mapping)

    async def list_limits(self, *, scope: str | None = None, scope_id: str | None = None) -> list[RateLimit]:
        """Limits, oldest first, optionally of one scope kind and/or one scope id."""
        query = select(self._table).order_by(self._table.c.id)
        if scope is not None:
            _check_scope(scope)
            query = query.where(self._table.c.scope == scope)
        if scope_id is not None:
            query = query.where(self._table.c.scope_id == scope_id)
        return [RateLimit.from_mapping(row._mapping) for row in await self._db.fetch_all(query)]


def _check_scope(scope: str) -> None:
    if scope not in LIMIT_SCOPES:
        raise BadRequestError(
            f"Unknown rate-limit scope {scope!r}; use one of {', '.join(LIMIT_SCOPES)}.", param="scope"
        )


def _per_minute(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequestError(f"{name} must be a whole number of at least 1.", param=name)
    return value


# Counters ----------------------------------------------------------------------------------------
class Counters(Protocol):
    """Where the per-minute counters live (the database counters also offer ``take_in`` and
    ``give_back_in``, which count inside the caller's transaction so that limits and budgets commit or
    roll back together)."""

    in_database: bool

    async def take(self, buckets: Sequence[Bucket], tokens: int, now_ms: int) -> list[Taken]:
        """Count one request of up to ``tokens`` in every bucket, or in none (raises RateLimitError)."""
        ...

    async def give_back(self, taken: Sequence[Taken], *, requests: bool) -> None:
        """Remove ``taken`` tokens (and, if ``requests``, the request) from the counters."""
        ...

    async def usage(self, bucket: str, now_ms: int) -> tuple[int, int]:
        """Requests and tokens in the sliding minute ending now (weighted as admission weighs them)."""
        ...

    async def purge(self, now_ms: int) -> None:
        """Forget minutes that no longer count."""
        ...

    async def aclose(self) -> None: ...


class DatabaseCounters:
    """Counters in ``rate_limit_counters`` (see the module docs)."""

    in_database = True

    def __init__(self, db: Database) -> None:
        self._db = db
        self._table = Base.metadata.tables[RateLimitCounterRow.__tablename__]
        self._statements: dict[tuple[bool, bool], Insert] = {}
        t = self._table.c
        self._give = (
            update(self._table)
            .where(t.bucket == bindparam("g_bucket"), t.minute == bindparam("g_minute"))
            .values(
                requests=t.requests - bindparam("g_requests", type_=BigInteger),
                tokens=func.max(t.tokens - bindparam("g_tokens", type_=BigInteger), 0)
                if db.backend == "sqlite"
                else func.greatest(t.tokens - bindparam("g_tokens", type_=BigInteger), 0),
            )
        )

    async def take(self, buckets: Sequence[Bucket], tokens: int, now_ms: int) -> list[Taken]:
        return await self._db.transact(self.take_in, buckets, tokens, now_ms)

    async def give_back(self, taken: Sequence[Taken], *, requests: bool) -> None:
        await self._db.transact(self.give_back_in, taken, requests=requests)

    def take_in(
        self, connection: Connection, buckets: Sequence[Bucket], tokens: int, now_ms: int
    ) -> list[Taken]:
        """:meth:`take` inside the caller's (synchronous) transaction, which must roll back if this raises."""
        minute, elapsed = divmod(now_ms, WINDOW_MS)
        taken = []
        for bucket in sorted(buckets, key=lambda b: b.key):  # one lock order everywhere: no deadlocks
            params = {
                "bucket": bucket.key,
                "minute": minute,
                "prev_minute": minute - 1,
                "left_ms": WINDOW_MS - elapsed,
                "window_ms": WINDOW_MS,
                "requests": 1,
                "tokens": tokens,
                "rpm": bucket.requests_per_minute,
                "tpm": bucket.tokens_per_minute,
            }
            if connection.execute(self._statement(bucket), params).first() is None:
                raise self._refusal(connection, bucket, minute, elapsed, tokens)
            taken.append(Taken(bucket.key, minute, 1, tokens, bucket.tokens_per_minute is not None))
        return taken

    def give_back_in(self, connection: Connection, taken: Sequence[Taken], *, requests: bool) -> None:
        """:meth:`give_back` inside the caller's (synchronous) transaction."""
        if not taken:
            return
        connection.execute(
            self._give,
            [
                {
                    "g_bucket": t.bucket,
                    "g_minute": t.minute,
                    "g_requests": t.requests if requests else 0,
                    "g_tokens": t.tokens,
                }
                for t in sorted(taken, key=lambda t: (t.bucket, t.minute))
            ],
        )

    async def usage(self, bucket: str, now_ms: int) -> tuple[int, int]:
        minute, elapsed = divmod(now_ms, WINDOW_MS)
        rows = await self._db.fetch_all(self._read(), {"bucket": bucket, "minute": minute})
        return _weighted(rows, minute, elapsed)

    async def purge(self, now_ms: int) -> None:
        async with self._db.connect() as connection:
            await connection.execute(
                delete(self._table).where(self._table.c.minute < now_ms // WINDOW_MS - 1)
            )

    async def aclose(self) -> None:
        return None

    def _read(self) -> Any:
        t = self._table.c
        return select(t.minute, t.requests, t.tokens).where(
            t.bucket == bindparam("bucket"), t.minute.in_([bindparam("minute"), bindparam("minute") - 1])
        )

    def _refusal(
        self, connection: Connection, bucket: Bucket, minute: int, elapsed: int, tokens: int
    ) -> RateLimitError:
        rows = connection.execute(self._read(), {"bucket": bucket.key, "minute": minute}).all()
        counts = {row.minute: (int(row.requests), int(row.tokens)) for row in rows}
        prev, cur = counts.get(minute - 1, (0, 0)), counts.get(minute, (0, 0))
        if bucket.requests_per_minute is not None and _over(
            bucket.requests_per_minute, prev[0], cur[0], 1, elapsed
        ):
            return _refusal(bucket, "requests", prev[0], cur[0], 1, elapsed)
        return _refusal(bucket, "tokens", prev[1], cur[1], tokens, elapsed)

    def _statement(self, bucket: Bucket) -> Insert:
        shape = (bucket.requests_per_minute is not None, bucket.tokens_per_minute is not None)
        statement = self._statements.get(shape)
        if statement is None:
            statement = self._statements[shape] = _take_statement(self._db.backend, self._table, *shape)
        return statement


def _over(limit: int, previous: int, current: int, cost: int, elapsed: int) -> bool:
    return previous * (WINDOW_MS - elapsed) + (current + cost) * WINDOW_MS > limit * WINDOW_MS


def _weighted(rows: Sequence[Any], minute: int, elapsed: int) -> tuple[int, int]:
    counts = {row[0]: (int(row[1]), int(row[2])) for row in rows}
    prev, cur = counts.get(minute - 1, (0, 0)), counts.get(minute, (0, 0))
    left = WINDOW_MS - elapsed
    return tuple(-(-(p * left) // WINDOW_MS) + c for p, c in zip(prev, cur, strict=True))  # type: ignore[return-value]


def _take_statement(backend: str, table: Any, rpm: bool, tpm: bool) -> Insert:
    """The conditional upsert that counts one request in one bucket (see the module docs)."""
    t = table.c
    previous = table.alias("previous")
    left, window = bindparam("left_ms", type_=BigInteger), bindparam("window_ms", type_=BigInteger)
    cost = {
        "requests": bindparam("requests", type_=BigInteger),
        "tokens": bindparam("tokens", type_=BigInteger),
    }
    limit = {"requests": bindparam("rpm", type_=BigInteger), "tokens": bindparam("tpm", type_=BigInteger)}
    metrics = [m for m, on in (("requests", rpm), ("tokens", tpm)) if on]

    def before(metric: str) -> Any:
        return func.coalesce(
            select(previous.c[metric])
            .where(previous.c.bucket == bindparam("bucket"), previous.c.minute == bindparam("prev_minute"))
            .scalar_subquery(),
            0,
        )

    def fits(metric: str, current: Any) -> Any:
        return before(metric) * left + current * window <= limit[metric] * window

    first = select(
        bindparam("bucket", type_=String),
        bindparam("minute", type_=BigInteger),
        cost["requests"],
        cost["tokens"],
    ).where(and_(*(fits(m, cost[m]) for m in metrics)))
    dialect_insert = postgresql.insert if backend == "postgresql" else sqlite.insert
    statement = dialect_insert(table).from_select(["bucket", "minute", "requests", "tokens"], first)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[t.bucket, t.minute],
        set_={"requests": t.requests + excluded.requests, "tokens": t.tokens + excluded.tokens},
        where=and_(*(fits(m, t[m] + excluded[m]) for m in metrics)),
    ).returning(t.requests)


# Redis -------------------------------------------------------------------------------------------
_TAKE = """
local n = tonumber(ARGV[1])
local left = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cost = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local function num(v) if v then return tonumber(v) or 0 end return 0 end
for i = 1, n do
  local cur = redis.call('HMGET', KEYS[2 * i - 1], 'r', 't')
  local prev = redis.call('HMGET', KEYS[2 * i], 'r', 't')
  for m = 1, 2 do
    local limit = tonumber(ARGV[4 + 2 * i + m - 1])
    if limit >= 0 and num(prev[m]) * left + (num(cur[m]) + cost[m]) * window > limit * window then
      return {i, m, num(prev[m]), num(cur[m])}
    end
  end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[2 * i - 1], 'r', cost[1])
  redis.call('HINCRBY', KEYS[2 * i - 1], 't', cost[2])
  redis.call('PEXPIRE', KEYS[2 * i - 1], 3 * window)
end
return {0}
"""

_GIVE = """
local requests = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if requests ~= 0 then redis.call('HINCRBY', KEYS[i], 'r', -requests) end
    local tokens = tonumber(ARGV[i + 1])
    if tokens ~= 0 then
      local held = tonumber(redis.call('HGET', KEYS[i], 't') or '0') or 0
      redis.call('HINCRBY', KEYS[i], 't', -math.min(tokens, held))
    end
  end
end
return 0
"""


class RedisCounters:
    """Counters in Redis (see the module docs). Any Redis failure is a :class:`StorageError`."""

    in_database = False

    def __init__(self, url: str, *, prefix: str = "socle:rl:", timeout_s: float = 2.0) -> None:
        try:
            import redis.asyncio as redis_asyncio
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise ConfigError(
                "redis_url is set but the redis package is not installed: pip install 'socle[redis]'"
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._take = self._client.register_script(_TAKE)
        self._give = self._client.register_script(_GIVE)

    def _key(self, bucket: str, minute: int) -> str:
        return f"{self._prefix}{bucket}:{minute}"

    async def take(self, buckets: Sequence[Bucket], tokens: int, now_ms: int) -> list[Taken]:
        minute, elapsed = divmod(now_ms, WINDOW_MS)
        ordered = sorted(buckets, key=lambda b: b.key)
        keys: list[str] = []
        args: list[int] = [len(ordered), WINDOW_MS - elapsed, WINDOW_MS, 1, tokens]
        for bucket in ordered:
            keys += [self._key(bucket.key, minute), self._key(bucket.key, minute - 1)]
            args += [_or_none(bucket.requests_per_minute), _or_none(bucket.tokens_per_minute)]
        result = await self._call(self._take, keys, args)
        if int(result[0]) != 0:
            index, metric, previous, current = (int(v) for v in result)
            bucket = ordered[index - 1]
            name = "requests" if metric == 1 else "tokens"
            raise _refusal(bucket, name, previous, current, 1 if metric == 1 else tokens, elapsed)
        return [Taken(b.key, minute, 1, tokens, b.tokens_per_minute is not None) for b in ordered]

    async def give_back(self, taken: Sequence[Taken], *, requests: bool) -> None:
        if not taken:
            return
        keys = [self._key(t.bucket, t.minute) for t in taken]
        await self._call(self._give, keys, [1 if requests else 0, *(t.tokens for t in taken)])

    async def usage(self, bucket: str, now_ms: int) -> tuple[int, int]:
        minute, elapsed = divmod(now_ms, WINDOW_MS)
        try:
            pipe = self._client.pipeline(transaction=False)
            for m in (minute - 1, minute):
                pipe.hmget(self._key(bucket, m), "r", "t")
            prev, cur = await pipe.execute()
        except self._errors as exc:
            raise _unavailable(exc) from exc
        rows = [(m, int(v[0] or 0), int(v[1] or 0)) for m, v in ((minute - 1, prev), (minute, cur))]
        return _weighted(rows, minute, elapsed)

    async def purge(self, now_ms: int) -> None:
        return None  # keys expire by themselves

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except self._errors as exc:
            raise _unavailable(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, script: Any, keys: list[str], args: list[int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except self._errors as exc:
            raise _unavailable(exc) from exc


def _or_none(limit: int | None) -> int:
    return -1 if limit is None else limit


def _unavailable(exc: BaseException) -> StorageError:
    log.warning("rate-limit counters (redis) unavailable: %s", exc)
    return StorageError(
        "The rate-limit store is unavailable; the request was refused.",
        detail=f"redis: {type(exc).__name__}: {exc}",
    )
