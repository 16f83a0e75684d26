"""The audit head gets a pruning lease: replicas sharing the database take turns at scheduled pruning.

``prune_lease_owner`` names the process that prunes now and ``prune_lease_until`` when its lease runs
out (both null when nobody prunes). See socle.governance.audit.schedule.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from socle.storage.types import UTCDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_head", sa.Column("prune_lease_owner", sa.String(length=64), nullable=True))
    op.add_column("audit_head", sa.Column("prune_lease_until", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("prune_lease_until")
        batch.drop_column("prune_lease_owner")
