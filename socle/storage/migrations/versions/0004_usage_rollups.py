"""Usage rollups: daily sums per team (and per principal), and an index on usage_records.created_at.

The sums of the records already written are computed here, so that reports read from the rollups
agree with the records from the start.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = 40
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_nano_eur")


def _create(name: str, keys: list[str]) -> None:
    op.create_table(
        name,
        sa.Column("day", sa.Date(), nullable=False),
        *(
            sa.Column(key, sa.String(length=26 if key.endswith("_id") else 200), nullable=False)
            for key in keys
        ),
        *(sa.Column(column, sa.BigInteger(), nullable=False) for column in SUMS),
        sa.Column("latency_ms_sum", sa.Double(), nullable=False),
        sa.Column("latency_ms_max", sa.Double(), nullable=False),
        sa.Column("ttft_ms_sum", sa.Double(), nullable=False),
        sa.Column("ttft_count", sa.BigInteger(), nullable=False),
        *(sa.Column(f"latency_{i:02d}", sa.BigInteger(), nullable=False) for i in range(BUCKETS)),
        sa.PrimaryKeyConstraint("day", *keys, name=f"pk_{name}"),
    )


def upgrade() -> None:
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    _create("usage_daily_team", ["team_id", "model", "engine", "zone"])
    _create("usage_daily_principal", ["team_id", "principal_id", "model", "engine", "zone"])
    op.create_index(
        "ix_usage_daily_principal_principal_id_day", "usage_daily_principal", ["principal_id", "day"]
    )
    op.create_index("ix_usage_daily_principal_team_id_day", "usage_daily_principal", ["team_id", "day"])
    _backfill()


def _backfill() -> None:
    """Sum the records written before this migration (bucket bounds: 2^(i/2) ms, as in rollups.py)."""
    if op.get_bind().dialect.name == "postgresql":
        day = "(created_at AT TIME ZONE 'UTC')::date"
        nano = "CAST(round(cost_eur * 1000000000) AS BIGINT)"
    else:
        day = "substr(created_at, 1, 10)"
        nano = "CAST(round(cost_eur * 1000000000) AS INTEGER)"
    bounds = [2 ** (i / 2) for i in range(BUCKETS - 1)]
    counts = []
    for i in range(BUCKETS):
        above = f"latency_ms > {bounds[i - 1]!r}" if i else "1 = 1"
        below = f"latency_ms <= {bounds[i]!r}" if i < BUCKETS - 1 else "1 = 1"
        counts.append(f"sum(CASE WHEN {above} AND {below} THEN 1 ELSE 0 END)")
    for table, keys in (
        ("usage_daily_team", "team_id, model, engine, zone"),
        ("usage_daily_principal", "team_id, principal_id, model, engine, zone"),
    ):
        buckets = ", ".join(f"latency_{i:02d}" for i in range(BUCKETS))
        histogram = ", ".join(counts)
        op.execute(
            f"INSERT INTO {table} (day, {keys}, {', '.join(SUMS)}, latency_ms_sum, latency_ms_max, "  # noqa: S608
            f"ttft_ms_sum, ttft_count, {buckets}) "
            f"SELECT {day}, {keys}, count(*), sum(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END), "
            f"sum(prompt_tokens), sum(completion_tokens), sum({nano}), sum(latency_ms), max(latency_ms), "
            f"coalesce(sum(ttft_ms), 0), count(ttft_ms), {histogram} "
            f"FROM usage_records GROUP BY {day}, {keys}"
        )


def downgrade() -> None:
    op.drop_index("ix_usage_daily_principal_team_id_day", table_name="usage_daily_principal")
    op.drop_index("ix_usage_daily_principal_principal_id_day", table_name="usage_daily_principal")
    op.drop_table("usage_daily_principal")
    op.drop_table("usage_daily_team")
    op.drop_index("ix_usage_records_created_at", table_name="usage_records")
