"""Budgets: what an organisation, team, user or key may spend, enforced by atomic reservation.

Budgets
    A budget limits one *scope* (``organisation``, ``team``, ``user``: a principal, person or service,
    or ``key``) over one *period* (``daily``, ``monthly`` or ``total``), in euros, in tokens, or both. A
    scope has at most one budget per period. A request is admitted only if every budget that applies to
    it (its key's, its principal's, its team's and its organisation's, of every period) can take its
    worst case.

Units
    Money is counted in integer nano-euros (10^-9 EUR), never in floats: a price of 0.15 EUR per million
    tokens is exactly 150 nano-euros per token. A cost is rounded up to the next nano-euro, which only
    prices with more than three decimals (per million tokens) need. ``BIGINT`` holds 9.2 billion euros.
    The API speaks euros as :class:`~decimal.Decimal`.

Periods reset without a cron job
    A budget has one counter row per period, keyed ``(budget_id, period_start)``: the start of the UTC
    day, of the UTC month, or the epoch for ``total``. The first reservation of a new period inserts its
    row, with nothing spent: that is the reset. Older rows stay as history. A request is charged to the
    period it was reserved in, even if it ends after midnight.

Reservation, settlement, release
    Before the engine is called, :meth:`BudgetStore.reserve` adds the request's worst case to the
    ``reserved`` amounts of every applicable counter, in one transaction, each with one conditional
    upsert::

        INSERT INTO budget_counters (...) SELECT ... FROM budgets WHERE id = :budget AND :x <= limit
        ON CONFLICT (budget_id, period_start) DO UPDATE SET reserved = reserved + :x
            WHERE spent + reserved + :x <= (SELECT limit FROM budgets WHERE id = :budget)
        RETURNING budget_id

    The limit is read from the ``budgets`` row in the statement itself, so a changed limit applies at
    once, on every replica. If one upsert returns no row, that budget cannot admit the request: the
    transaction is rolled back (no counter changed: all budgets or none) and
    :class:`~socle.errors.BudgetExceededError` (429, ``insufficient_quota``) names the budget. Otherwise a
    reservation row (state ``held``) records the amounts and the counters. After the call,
    :meth:`BudgetStore.settle` moves the real cost from ``reserved`` to ``spent``, or
    :meth:`BudgetStore.release` (the call failed) gives the reservation back; each marks the reservation
    ``settled`` or ``released`` with a conditional UPDATE, so that a reservation is finished once only.

Why this is atomic, on each database
    PostgreSQL: the upsert locks the counter row. A concurrent reservation of the same row, from any
    replica, waits until the first commits, then evaluates its ``WHERE`` against the newly committed row
    (READ COMMITTED re-checks a row that changed under it), so two requests can never both take the
    last euro. Rows are locked in one global order everywhere (rate-limit counters, then reservation
    rows, then budget counters by budget id), so these transactions cannot deadlock.
    SQLite: write transactions begin ``IMMEDIATE`` and so hold the database's single write lock from
    their first statement (see :mod:`socle.storage.db`): they run one at a time, across processes too.
    Every transaction of this store runs through :meth:`Database.transact`: synchronous SQL in a worker
    thread, so a lock (SQLite's write lock, a team's counter rows) is held for the SQL alone, never for
    turns of a busy event loop. On SQLite one writer thread per process queues them in order, instead of
    polling in SQLite's busy handler.

Crashes
    A process that dies between reservation and settlement leaves its reservations ``held``.
    :meth:`BudgetStore.sweep`, which every gateway runs each minute, marks those older than
    ``reservation_timeout_s`` (setting ``budget_reservation_timeout_s``, default one hour: longer than
    any answer may take) ``expired`` and gives their amounts back. A reservation settled after it expired
    is still charged (``spent``) but gives nothing back twice. Finished reservations are deleted after
    ``retention_s`` (``budget_reservation_retention_s``, default one hour).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Insert,
    RowMapping,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from socle.errors import BadRequestError, BudgetExceededError, ConflictError, NotFoundError
from socle.governance.identity import Principal
from socle.governance.money import (
    EurAmount,
    Spend,
    decimal_text,
    eur_to_nano,
    format_eur,
    nano_to_eur,
)
from socle.storage.db import Database
from socle.storage.models import (
    ApiKeyRow,
    Base,
    BudgetCounterRow,
    BudgetReservationItemRow,
    BudgetReservationRow,
    BudgetRow,
    OrganisationRow,
    PrincipalRow,
    TeamRow,
)
from socle.storage.types import UTCDateTime, new_id, utcnow

__all__ = [
    "BUDGET_PERIODS",
    "BUDGET_SCOPES",
    "Budget",
    "BudgetPeriod",
    "BudgetScope",
    "BudgetStatus",
    "BudgetStore",
    "Reservation",
    "period_bounds",
]

log = logging.getLogger(__name__)

BudgetScope = Literal["organisation", "team", "user", "key"]
BudgetPeriod = Literal["daily", "monthly", "total"]
BUDGET_SCOPES: tuple[BudgetScope, ...] = ("organisation", "team", "user", "key")
BUDGET_PERIODS: tuple[BudgetPeriod, ...] = ("daily", "monthly", "total")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCOPE_TABLES: dict[str, Any] = {
    "organisation": OrganisationRow,
    "team": TeamRow,
    "user": PrincipalRow,
    "key": ApiKeyRow,
}
_SWEEP_BATCH = 500
_DELETE_BATCH = 5000


class _Unset(Enum):
    UNSET = 0


_UNSET = _Unset.UNSET


# Periods ---------------------------------------------------------------------------------------
def period_bounds(period: str, when: datetime) -> tuple[datetime, datetime | None]:
    """The UTC period containing ``when``: its start and its end (``None`` for ``total``)."""
    when = when.astimezone(UTC)
    if period == "daily":
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == "monthly":
        start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    if period == "total":
        return _EPOCH, None
    raise BadRequestError(f"Unknown budget period {period!r}; use one of {', '.join(BUDGET_PERIODS)}.")


# What the rest of Socle sees --------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """One budget. ``limit_nano_eur`` / ``limit_tokens``: ``None`` means no limit of that kind."""

    id: str
    scope: BudgetScope
    scope_id: str
    period: BudgetPeriod
    limit_nano_eur: int | None
    limit_tokens: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def limit_eur(self) -> Decimal | None:
        return None if self.limit_nano_eur is None else nano_to_eur(self.limit_nano_eur)

    @classmethod
    def from_row(cls, row: BudgetRow | RowMapping) -> Budget:
        get = row.__getitem__ if isinstance(row, RowMapping) else lambda name: getattr(row, name)
        return cls(
            id=get("id"),
            scope=get("scope"),
            scope_id=get("scope_id"),
            period=get("period"),
            limit_nano_eur=get("limit_nano_eur"),
            limit_tokens=get("limit_tokens"),
            created_at=get("created_at"),
            updated_at=get("updated_at"),
        )

    def describe(self, principal: Principal | None = None) -> str:
        """``the monthly budget of team research``: names the scope as well as ``principal`` allows."""
        name = self.scope_id
        if principal is not None:
            name = {
                "organisation": self.scope_id,
                "team": principal.team_name if principal.team_id == self.scope_id else self.scope_id,
                "user": principal.name if principal.principal_id == self.scope_id else self.scope_id,
                "key": self.scope_id,
            }[self.scope]
        return f"the {self.period} budget of {self.scope} {name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (euros as strings, exact)."""
        return {
            "id": self.id,
            "scope": self.scope,
            "scope_id": self.scope_id,
            "period": self.period,
            "limit_eur": None if self.limit_nano_eur is None else decimal_text(self.limit_nano_eur),
            "limit_tokens": self.limit_tokens,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatus:
    """A budget's counters in its current period."""

    budget: Budget
    period_start: datetime
    period_end: datetime | None
    spent: Spend
    reserved: Spend

    @property
    def remaining_nano_eur(self) -> int | None:
        limit = self.budget.limit_nano_eur
        return None if limit is None else limit - self.spent.nano_eur - self.reserved.nano_eur

    @property
    def remaining_tokens(self) -> int | None:
        limit = self.budget.limit_tokens
        return None if limit is None else limit - self.spent.tokens - self.reserved.tokens

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the admin API (euros as exact decimal strings)."""
        remaining = self.remaining_nano_eur
        return {
            "budget": self.budget.to_dict(),
            "period_start": self.period_start.isoformat(),
            "period_end": None if self.period_end is None else self.period_end.isoformat(),
            "spent_eur": decimal_text(self.spent.nano_eur),
            "reserved_eur": decimal_text(self.reserved.nano_eur),
            "remaining_eur": None if remaining is None else decimal_text(remaining),
            "spent_tokens": self.spent.tokens,
            "reserved_tokens": self.reserved.tokens,
            "remaining_tokens": self.remaining_tokens,
        }


@dataclass(slots=True, kw_only=True)
class Reservation:
    """A request's worst case, held in some budget counters until settled or released."""

    id: str
    request_id: str
    counters: tuple[tuple[str, datetime], ...]
    """``(budget_id, period_start)`` of each counter holding the amount, sorted by budget id."""
    amount: Spend
    created_at: datetime
    state: str = "held"


# The store -----------------------------------------------------------------------------------
class BudgetStore:
    """Budgets (create, update, delete, list, status) and their accounting (reserve, settle, release).

    ``clock`` returns the current aware UTC time (tests move it).
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        reservation_timeout_s: float = 3600.0,
        retention_s: float = 3600.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self.reservation_timeout = timedelta(seconds=reservation_timeout_s)
        self.retention = timedelta(seconds=retention_s)
        budgets, counters, reservations, items = (
            Base.metadata.tables[row.__tablename__]
            for row in (BudgetRow, BudgetCounterRow, BudgetReservationRow, BudgetReservationItemRow)
        )
        self._budgets, self._counters, self._reservations, self._items = (
            budgets,
            counters,
            reservations,
            items,
        )
        self._reserve = _reserve_statement(db.backend, budgets, counters)
        self._charge = (
            update(counters)
            .where(
                counters.c.budget_id == bindparam("b_budget"),
                counters.c.period_start == bindparam("b_start"),
            )
            .values(
                spent_nano_eur=counters.c.spent_nano_eur + bindparam("b_spent_nano", type_=BigInteger),
                reserved_nano_eur=counters.c.reserved_nano_eur - bindparam("b_held_nano", type_=BigInteger),
                spent_tokens=counters.c.spent_tokens + bindparam("b_spent_tokens", type_=BigInteger),
                reserved_tokens=counters.c.reserved_tokens - bindparam("b_held_tokens", type_=BigInteger),
            )
        )

    # Management -------------------------------------------------------------------------------
    async def create_budget(
        self,
        scope: str,
        scope_id: str,
        period: str,
        *,
        limit_eur: EurAmount | None = None,
        limit_tokens: int | None = None,
    ) -> Budget:
        """Create the budget of one scope for one period.

        Raises :class:`NotFoundError` if the scope's organisation, team, principal or key does not
        exist, and :class:`BadRequestError` for invalid limits or if that scope already has a budget
        for that period.
        """
        _check_scope(scope)
        period_bounds(period, _EPOCH)  # validates the period
        limit_nano = _limit_nano(limit_eur)
        tokens = _limit_tokens(limit_tokens)
        if limit_nano is None and tokens is None:
            raise BadRequestError(
                "A budget needs limit_eur, limit_tokens or both.", code="budget_without_limit"
            )
        now = self._clock()
        try:
            async with self._db.session() as session:
                if await session.get(_SCOPE_TABLES[scope], scope_id) is None:
                    raise NotFoundError(f"No {scope} with id {scope_id!r}.", code=f"{scope}_not_found")
                row = BudgetRow(
                    id=new_id(),
                    scope=scope,
                    scope_id=scope_id,
                    period=period,
                    limit_nano_eur=limit_nano,
                    limit_tokens=tokens,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
        except IntegrityError as exc:
            raise ConflictError(
                f"The {scope} {scope_id} already has a {period} budget; update it instead.",
                code="budget_exists",
            ) from exc
        return Budget.from_row(row)

    async def update_budget(
        self,
        budget_id: str,
        *,
        limit_eur: EurAmount | None | _Unset = _UNSET,
        limit_tokens: int | None | _Unset = _UNSET,
    ) -> Budget:
        """Change a budget's limits (``None`` removes a limit; an omitted one is kept). Applies at once."""
        async with self._db.session() as session:
            row = await session.get(BudgetRow, budget_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"No budget with id {budget_id!r}.", code="budget_not_found")
            if not isinstance(limit_eur, _Unset):
                row.limit_nano_eur = _limit_nano(limit_eur)
            if not isinstance(limit_tokens, _Unset):
                row.limit_tokens = _limit_tokens(limit_tokens)
            if row.limit_nano_eur is None and row.limit_tokens is None:
                raise BadRequestError(
                    "A budget needs limit_eur, limit_tokens or both.", code="budget_without_limit"
                )
            row.updated_at = self._clock()
            return Budget.from_row(row)

    async def delete_budget(self, budget_id: str) -> None:
        """Delete a budget and its counters; reservations held in it finish without it."""
        async with self._db.session() as session:
            result = await session.execute(delete(BudgetRow).where(BudgetRow.id == budget_id))
            if cast(Any, result).rowcount == 0:
                raise NotFoundError(f"No budget with id {budget_id!r}.", code="budget_not_found")

    async def get_budget(self, budget_id: str) -> Budget:
        async with self._db.read() as connection:
            row = (
                await connection.execute(select(self._budgets).where(self._budgets.c.id == budget_id))
            ).first()
        if row is None:
            raise NotFoundError(f"No budget with id {budget_id!r}.", code="budget_not_found")
        return Budget.from_row(row._mapping)

    async def list_budgets(self, *, scope: str | None = None, scope_id: str | None = None) -> list[Budget]:
        """Budgets, oldest first, optionally of one scope kind and/or one scope id."""
        query = select(self._budgets).order_by(self._budgets.c.id)
        if scope is not None:
            _check_scope(scope)
            query = query.where(self._budgets.c.scope == scope)
        if scope_id is not None:
            query = query.where(self._budgets.c.scope_id == scope_id)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [Budget.from_row(row._mapping) for row in rows]

    async def applicable(self, principal: Principal) -> list[Budget]:
        """Every budget that applies to a principal's requests: its key's, its own, its team's, its org's."""
        b = self._budgets.c
        query = select(self._budgets).where(
            or_(
                and_(b.scope == "organisation", b.scope_id == principal.org_id),
                and_(b.scope == "team", b.scope_id == principal.team_id),
                and_(b.scope == "user", b.scope_id == principal.principal_id),
                and_(b.scope == "key", b.scope_id == principal.key_id),
            )
        )
        return [Budget.from_row(row._mapping) for row in await self._db.fetch_all(query)]

    async def status(self, scope: str, scope_id: str) -> list[BudgetStatus]:
        """The current period of every budget of one scope (e.g. ``status("team", team_id)``)."""
        return [await self._status_of(b) for b in await self.list_budgets(scope=scope, scope_id=scope_id)]

    async def budget_status(self, budget_id: str) -> BudgetStatus:
        """The current period of one budget."""
        return await self._status_of(await self.get_budget(budget_id))

    async def _status_of(self, budget: Budget) -> BudgetStatus:
        start = period_bounds(budget.period, self._clock())[0]
        async with self._db.read() as connection:  # a read: never through the writer thread
            return (await connection.run_sync(self.statuses_in, [(budget, start)]))[0]

    def statuses_in(
        self, connection: Connection, periods: Sequence[tuple[Budget, datetime]]
    ) -> list[BudgetStatus]:
        """The counters of ``(budget, period start)`` pairs, in one statement on the caller's connection
        (settlement uses it inside its own transaction to check alert thresholds without more round trips)."""
        if not periods:
            return []
        c = self._counters.c
        keys = [(budget.id, start) for budget, start in periods]
        query = select(
            c.budget_id,
            c.period_start,
            c.spent_nano_eur,
            c.reserved_nano_eur,
            c.spent_tokens,
            c.reserved_tokens,
        ).where(or_(*(and_(c.budget_id == b, c.period_start == s) for b, s in keys)))
        found = {
            (row[0], row[1]): (Spend(row[4], row[2]), Spend(row[5], row[3]))
            for row in connection.execute(query)
        }
        statuses = []
        for budget, start in periods:
            spent, reserved = found.get((budget.id, start), (Spend(0, 0), Spend(0, 0)))
            end = period_bounds(budget.period, start)[1]
            statuses.append(
                BudgetStatus(
                    budget=budget, period_start=start, period_end=end, spent=spent, reserved=reserved
                )
            )
        return statuses

    # Accounting -------------------------------------------------------------------------------
    async def reserve(
        self,
        principal: Principal,
        amount: Spend,
        *,
        request_id: str = "",
        budgets: Sequence[Budget] | None = None,
    ) -> Reservation | None:
        """Reserve ``amount`` in every budget that applies to ``principal`` (or in ``budgets``), all or none.

        Returns ``None`` when no budget applies; raises :class:`BudgetExceededError` naming the first
        budget (by id) that cannot admit the amount.
        """
        if budgets is None:
            budgets = await self.applicable(principal)
        if not budgets:
            return None
        return await self._db.transact(self.reserve_in, principal, budgets, amount, request_id=request_id)

    def reserve_in(
        self,
        connection: Connection,
        principal: Principal,
        budgets: Iterable[Budget],
        amount: Spend,
        *,
        request_id: str = "",
    ) -> Reservation | None:
        """:meth:`reserve` inside the caller's transaction (which must roll back if this raises)."""
        now = self._clock()
        by_id = {b.id: b for b in budgets}
        held: list[tuple[str, datetime]] = []
        for budget_id in sorted(by_id):  # one lock order everywhere: no deadlocks
            budget = by_id[budget_id]
            start = period_bounds(budget.period, now)[0]
            params = {"budget": budget_id, "start": start, "nano": amount.nano_eur, "tokens": amount.tokens}
            if (connection.execute(self._reserve, params)).first() is None:
                refusal = self._refusal(connection, budget, start, amount, principal)
                if refusal is not None:
                    raise refusal
                continue  # the budget was deleted meanwhile: it no longer applies
            held.append((budget_id, start))
        if not held:
            return None
        reservation = Reservation(
            id=new_id(), request_id=request_id[:64], counters=tuple(held), amount=amount, created_at=now
        )
        connection.execute(
            insert(self._reservations),
            {
                "id": reservation.id,
                "request_id": reservation.request_id,
                "state": "held",
                "nano_eur": amount.nano_eur,
                "tokens": amount.tokens,
                "created_at": now,
            },
        )
        connection.execute(
            insert(self._items),
            [{"reservation_id": reservation.id, "budget_id": b, "period_start": s} for b, s in held],
        )
        return reservation

    async def settle(self, reservation: Reservation, actual: Spend) -> None:
        """Charge the real use and give the rest of the reservation back (once; later calls do nothing)."""
        await self._finish(reservation, actual)

    async def release(self, reservation: Reservation) -> None:
        """Give the whole reservation back: the call failed (once; later calls do nothing)."""
        await self._finish(reservation, None)

    async def _finish(self, reservation: Reservation, actual: Spend | None) -> None:
        if reservation.state != "held":
            return
        await self._db.transact(self.finish_in, reservation, actual)

    def finish_in(self, connection: Connection, reservation: Reservation, actual: Spend | None) -> None:
        """Settle (``actual``) or release (``None``) inside the caller's transaction."""
        if reservation.state != "held":
            return
        state = "released" if actual is None else "settled"
        charged = actual or Spend(0, 0)
        r = self._reservations.c
        values = {
            "state": state,
            "charged_nano_eur": charged.nano_eur,
            "charged_tokens": charged.tokens,
            "finished_at": self._clock(),
        }
        result = connection.execute(
            update(self._reservations).where(r.id == reservation.id, r.state == "held").values(**values)
        )
        held = reservation.amount
        if cast(Any, result).rowcount == 0:
            # Expired by a sweeper (its amounts were given back then): charge the use, release nothing.
            result = connection.execute(
                update(self._reservations)
                .where(r.id == reservation.id, r.state == "expired")
                .values(**values)
            )
            if cast(Any, result).rowcount == 0:
                reservation.state = state  # already finished elsewhere
                return
            held = Spend(0, 0)
        if charged != Spend(0, 0) or held != Spend(0, 0):
            connection.execute(
                self._charge,
                [
                    {
                        "b_budget": budget_id,
                        "b_start": start,
                        "b_spent_nano": charged.nano_eur,
                        "b_held_nano": held.nano_eur,
                        "b_spent_tokens": charged.tokens,
                        "b_held_tokens": held.tokens,
                    }
                    for budget_id, start in reservation.counters
                ],
            )
        reservation.state = state

    # Housekeeping -----------------------------------------------------------------------------
    async def sweep(self) -> int:
        """Expire reservations held longer than the timeout (giving them back) and delete old finished
        ones; returns how many were expired. Safe to run on every replica at once."""
        now = self._clock()
        r = self._reservations.c
        async with self._db.read() as connection:
            stale = (
                await connection.execute(
                    select(r.id, r.nano_eur, r.tokens)
                    .where(r.state == "held", r.created_at < now - self.reservation_timeout)
                    .order_by(r.created_at)
                    .limit(_SWEEP_BATCH)
                )
            ).all()
        expired = 0
        for row in stale:  # one transaction each: budget counters stay locked in budget id order
            expired += await self._db.transact(self._expire, row.id, row.nano_eur, row.tokens, now)
        if expired:
            log.warning("budgets: released %d reservation(s) held past %s", expired, self.reservation_timeout)
        await self._delete_finished(now - self.retention)
        return expired

    def _expire(
        self, connection: Connection, reservation_id: str, nano_eur: int, tokens: int, now: datetime
    ) -> int:
        """Expire one held reservation, giving its amounts back; 0 if it was finished meanwhile."""
        r = self._reservations.c
        result = connection.execute(
            update(self._reservations)
            .where(r.id == reservation_id, r.state == "held")
            .values(state="expired", finished_at=now)
        )
        if cast(Any, result).rowcount == 0:
            return 0  # settled meanwhile, or another replica expired it
        items = connection.execute(
            select(self._items.c.budget_id, self._items.c.period_start)
            .where(self._items.c.reservation_id == reservation_id)
            .order_by(self._items.c.budget_id)
        ).all()
        if items:
            connection.execute(
                self._charge,
                [
                    {
                        "b_budget": item.budget_id,
                        "b_start": item.period_start,
                        "b_spent_nano": 0,
                        "b_held_nano": nano_eur,
                        "b_spent_tokens": 0,
                        "b_held_tokens": tokens,
                    }
                    for item in items
                ],
            )
        return 1

    async def _delete_finished(self, before: datetime) -> None:
        r = self._reservations.c
        ids = select(r.id).where(r.state != "held", r.created_at < before).limit(_DELETE_BATCH)
        statement = delete(self._reservations).where(r.id.in_(ids.scalar_subquery()))
        while True:
            deleted = await self._db.transact(lambda c: int(cast(Any, c.execute(statement)).rowcount))
            if deleted < _DELETE_BATCH:
                return

    async def held_reservations(self) -> int:
        """How many reservations are held now (all processes): zero when every call has finished."""
        r = self._reservations.c
        async with self._db.read() as connection:
            return int(await connection.scalar(select(func.count()).where(r.state == "held")) or 0)

    # Internals --------------------------------------------------------------------------------
    def _refusal(
        self,
        connection: Connection,
        budget: Budget,
        start: datetime,
        amount: Spend,
        principal: Principal,
    ) -> BudgetExceededError | None:
        """Why ``budget`` refused ``amount`` (read inside the refused transaction); ``None`` if it is gone."""
        b, c = self._budgets.c, self._counters.c
        row = (
            connection.execute(
                select(
                    b.limit_nano_eur,
                    b.limit_tokens,
                    c.spent_nano_eur,
                    c.reserved_nano_eur,
                    c.spent_tokens,
                    c.reserved_tokens,
                )
                .select_from(
                    self._budgets.outerjoin(
                        self._counters, and_(c.budget_id == b.id, c.period_start == start)
                    )
                )
                .where(b.id == budget.id)
            )
        ).first()
        if row is None:
            return None
        limit_nano, limit_tokens = row[0], row[1]
        spent_nano, held_nano, spent_tokens, held_tokens = (v or 0 for v in row[2:])
        what = budget.describe(principal)
        if limit_nano is not None and spent_nano + held_nano + amount.nano_eur > limit_nano:
            detail = (
                f"{format_eur(max(0, limit_nano - spent_nano - held_nano))} left of {format_eur(limit_nano)} "
                f"({format_eur(spent_nano)} spent, {format_eur(held_nano)} reserved by calls in progress); "
                f"this request may cost up to {format_eur(amount.nano_eur)}"
            )
        else:
            limit = limit_tokens or 0
            detail = (
                f"{max(0, limit - spent_tokens - held_tokens)} tokens left of {limit} ({spent_tokens} used, "
                f"{held_tokens} reserved by calls in progress); this request may use up to {amount.tokens}"
            )
        return BudgetExceededError(
            f"You exceeded your current quota: {what} has {detail}. Lower max_tokens, or ask an "
            "administrator to raise the budget.",
            param=budget.id,
        )


def _check_scope(scope: str) -> None:
    if scope not in BUDGET_SCOPES:
        raise BadRequestError(
            f"Unknown budget scope {scope!r}; use one of {', '.join(BUDGET_SCOPES)}.", param="scope"
        )


def _limit_nano(limit_eur: EurAmount | None) -> int | None:
    if limit_eur is None:
        return None
    nano = eur_to_nano(limit_eur)
    if nano < 0:
        raise BadRequestError("limit_eur must not be negative.", param="limit_eur")
    return nano


def _limit_tokens(limit_tokens: int | None) -> int | None:
    if limit_tokens is None:
        return None
    if isinstance(limit_tokens, bool) or not isinstance(limit_tokens, int) or limit_tokens < 0:
        raise BadRequestError("limit_tokens must be a whole number, not negative.", param="limit_tokens")
    return limit_tokens


def _reserve_statement(backend: str, budgets: Any, counters: Any) -> Insert:
    """The conditional upsert that reserves an amount in one budget counter (see the module docs)."""
    nano = bindparam("nano", type_=BigInteger)
    tokens = bindparam("tokens", type_=BigInteger)
    b, c = budgets.c, counters.c

    def fits(spent_nano: Any, held_nano: Any, spent_tokens: Any, held_tokens: Any, limits: Any) -> Any:
        limit_nano, limit_tokens = limits
        return and_(
            or_(limit_nano.is_(None), spent_nano + held_nano <= limit_nano),
            or_(limit_tokens.is_(None), spent_tokens + held_tokens <= limit_tokens),
        )

    first = select(
        b.id,
        bindparam("start", type_=UTCDateTime()),
        literal(0, BigInteger),
        nano,
        literal(0, BigInteger),
        tokens,
    ).where(b.id == bindparam("budget"), fits(0, nano, 0, tokens, (b.limit_nano_eur, b.limit_tokens)))
    dialect_insert = postgresql.insert if backend == "postgresql" else sqlite.insert
    statement = dialect_insert(counters).from_select(
        [
            "budget_id",
            "period_start",
            "spent_nano_eur",
            "reserved_nano_eur",
            "spent_tokens",
            "reserved_tokens",
        ],
        first,
    )
    excluded = statement.excluded
    # The limits as they are now, by scalar subqueries that name no other table (nothing to correlate).
    current = tuple(
        select(column).where(b.id == bindparam("budget")).scalar_subquery()
        for column in (b.limit_nano_eur, b.limit_tokens)
    )
    again = fits(
        c.spent_nano_eur,
        c.reserved_nano_eur + excluded.reserved_nano_eur,
        c.spent_tokens,
        c.reserved_tokens + excluded.reserved_tokens,
        current,
    )
    return statement.on_conflict_do_update(
        index_elements=[c.budget_id, c.period_start],
        set_={
            "reserved_nano_eur": c.reserved_nano_eur + excluded.reserved_nano_eur,
            "reserved_tokens": c.reserved_tokens + excluded.reserved_tokens,
        },
        where=again,
    ).returning(c.budget_id)
