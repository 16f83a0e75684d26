"""Teams get a default data classification (residency routing); existing teams become ``internal``.

Revision ID: 0008
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "teams",
        sa.Column("classification", sa.String(length=16), nullable=False, server_default="internal"),
    )


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("classification")
