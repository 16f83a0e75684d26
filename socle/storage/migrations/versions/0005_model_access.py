"""Model access grants (which teams may use which public models) and team-and-model rate limits.

Revision ID: 0005
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_grants",
        sa.Column("team_id", sa.String(length=26), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_model_grants_team_id_teams", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "model", name="pk_model_grants"),
    )
    op.create_index("ix_model_grants_model", "model_grants", ["model"])
    _scopes("'key', 'team', 'model', 'team_model'")


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM rate_limits WHERE scope = 'team_model'"))
    _scopes("'key', 'team', 'model'")
    op.drop_index("ix_model_grants_model", table_name="model_grants")
    op.drop_table("model_grants")


def _scopes(values: str) -> None:
    # Batch mode: SQLite cannot alter a CHECK constraint in place, so the table is copied and swapped.
    # Names go through the models' naming convention, as they did when 0002 created the constraint.
    with op.batch_alter_table("rate_limits") as batch:
        batch.drop_constraint("ck_rate_limits_scope", type_="check")
        batch.create_check_constraint("ck_rate_limits_scope", f"scope IN ({values})")
