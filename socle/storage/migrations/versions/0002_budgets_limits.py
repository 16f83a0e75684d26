"""Budgets (limits, per-period counters, reservations) and rate limits (limits, per-minute counters).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(length=26)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _amount(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", _ID, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", _ID, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        _amount("limit_nano_eur", nullable=True),
        _amount("limit_tokens", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("scope IN ('organisation', 'team', 'user', 'key')", name="ck_budgets_scope"),
        sa.CheckConstraint("period IN ('daily', 'monthly', 'total')", name="ck_budgets_period"),
        sa.CheckConstraint(
            "limit_nano_eur IS NOT NULL OR limit_tokens IS NOT NULL", name="ck_budgets_has_limit"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.UniqueConstraint("scope", "scope_id", "period", name="uq_budgets_scope_scope_id_period"),
    )
    op.create_table(
        "budget_counters",
        sa.Column("budget_id", _ID, nullable=False),
        _timestamp("period_start"),
        _amount("spent_nano_eur"),
        _amount("reserved_nano_eur"),
        _amount("spent_tokens"),
        _amount("reserved_tokens"),
        sa.ForeignKeyConstraint(
            ["budget_id"], ["budgets.id"], name="fk_budget_counters_budget_id_budgets", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("budget_id", "period_start", name="pk_budget_counters"),
    )
    op.create_table(
        "budget_reservations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        _amount("nano_eur"),
        _amount("tokens"),
        _amount("charged_nano_eur", nullable=True),
        _amount("charged_tokens", nullable=True),
        _timestamp("created_at"),
        _timestamp("finished_at", nullable=True),
        sa.CheckConstraint(
            "state IN ('held', 'settled', 'released', 'expired')", name="ck_budget_reservations_state"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_budget_reservations"),
    )
    op.create_index("ix_budget_reservations_state_created_at", "budget_reservations", ["state", "created_at"])
    op.create_table(
        "budget_reservation_items",
        sa.Column("reservation_id", _ID, nullable=False),
        sa.Column("budget_id", _ID, nullable=False),
        _timestamp("period_start"),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name="fk_budget_reservation_items_budget_id_budgets",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["budget_reservations.id"],
            name="fk_budget_reservation_items_reservation_id_budget_reservations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reservation_id", "budget_id", name="pk_budget_reservation_items"),
    )
    op.create_index("ix_budget_reservation_items_budget_id", "budget_reservation_items", ["budget_id"])
    op.create_table(
        "rate_limits",
        sa.Column("id", _ID, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=200), nullable=False),
        _amount("requests_per_minute", nullable=True),
        _amount("tokens_per_minute", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("scope IN ('key', 'team', 'model')", name="ck_rate_limits_scope"),
        sa.CheckConstraint(
            "requests_per_minute IS NOT NULL OR tokens_per_minute IS NOT NULL",
            name="ck_rate_limits_has_limit",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rate_limits"),
        sa.UniqueConstraint("scope", "scope_id", name="uq_rate_limits_scope_scope_id"),
    )
    op.create_table(
        "rate_limit_counters",
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("minute", sa.BigInteger(), autoincrement=False, nullable=False),
        _amount("requests"),
        _amount("tokens"),
        sa.PrimaryKeyConstraint("bucket", "minute", name="pk_rate_limit_counters"),
    )


def downgrade() -> None:
    for table in (
        "rate_limit_counters",
        "rate_limits",
        "budget_reservation_items",
        "budget_reservations",
        "budget_counters",
        "budgets",
    ):
        op.drop_table(table)
