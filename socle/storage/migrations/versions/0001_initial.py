"""Initial schema: organisations, teams, principals, team members, API keys, usage records.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(length=26)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_organisations"),
        sa.UniqueConstraint("name", name="uq_organisations_name"),
    )
    op.create_table(
        "teams",
        sa.Column("id", _ID, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name="fk_teams_org_id_organisations", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.UniqueConstraint("org_id", "name", name="uq_teams_org_id_name"),
    )
    op.create_table(
        "principals",
        sa.Column("id", _ID, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("external_subject", sa.String(length=255), nullable=True),
        _timestamp("created_at"),
        _timestamp("disabled_at", nullable=True),
        sa.CheckConstraint("kind IN ('user', 'service')", name="ck_principals_kind"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name="fk_principals_org_id_organisations", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_principals"),
        sa.UniqueConstraint("org_id", "email", name="uq_principals_org_id_email"),
        sa.UniqueConstraint("org_id", "external_subject", name="uq_principals_org_id_external_subject"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", _ID, nullable=False),
        sa.Column("principal_id", _ID, nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name="fk_team_members_principal_id_principals",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_team_members_team_id_teams", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "principal_id", "role", name="pk_team_members"),
    )
    op.create_index("ix_team_members_principal_id", "team_members", ["principal_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("principal_id", _ID, nullable=False),
        sa.Column("team_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("allowed_models", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("ip_allowlist", sa.JSON(none_as_null=True), nullable=True),
        _timestamp("expires_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("last_used_at", nullable=True),
        _timestamp("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name="fk_api_keys_principal_id_principals",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_api_keys_team_id_teams", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("hash", name="uq_api_keys_hash"),
    )
    op.create_index("ix_api_keys_principal_id", "api_keys", ["principal_id"])
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_table(
        "usage_records",
        sa.Column("id", _ID, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", _ID, nullable=False),
        sa.Column("principal_id", _ID, nullable=False),
        sa.Column("team_id", _ID, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("engine", sa.String(length=200), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_eur", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("ttft_ms", sa.Double(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
        sa.UniqueConstraint("request_id", name="uq_usage_records_request_id"),
    )
    op.create_index("ix_usage_records_team_id_created_at", "usage_records", ["team_id", "created_at"])
    op.create_index(
        "ix_usage_records_principal_id_created_at", "usage_records", ["principal_id", "created_at"]
    )


def downgrade() -> None:
    for table in ("usage_records", "api_keys", "team_members", "principals", "teams", "organisations"):
        op.drop_table(table)
