"""Audit trail: append-only entries and checkpoints, the head row, the content vault.

UPDATE and DELETE on ``audit_entries`` and ``audit_checkpoints`` are refused by triggers, on SQLite and
PostgreSQL alike (TRUNCATE too, on PostgreSQL). One exception, the prune path: a row below the head's
``pruned_size`` may be deleted, and ``pruned_size`` only grows. The head row may not be deleted, nor its
``size`` or ``pruned_size`` go down. See socle.governance.audit.log for the design.

Revision ID: 0006
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from socle.storage.types import UTCDateTime, utcnow

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = "audit log tables are append-only"

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: audit_entries cannot be updated'); END""",
    f"""CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    WHEN OLD.seq >= (SELECT pruned_size FROM audit_head WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: only pruning deletes entries'); END""",
    f"""CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: audit_checkpoints cannot be updated'); END""",
    f"""CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    WHEN OLD.size >= (SELECT pruned_size FROM audit_head WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: only pruning deletes checkpoints'); END""",
    f"""CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: the audit head cannot be deleted'); END""",
    f"""CREATE TRIGGER audit_head_no_rewind BEFORE UPDATE ON audit_head
    WHEN NEW.size < OLD.size OR NEW.pruned_size < OLD.pruned_size OR NEW.id != OLD.id
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: the audit head only moves forward'); END""",
]

POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION socle_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN  -- nested IFs: PL/pgSQL does not short-circuit OLD.<column>
            IF TG_TABLE_NAME = 'audit_entries' THEN
                IF OLD.seq < (SELECT pruned_size FROM audit_head WHERE id = 1) THEN
                    RETURN OLD;
                END IF;
            ELSIF OLD.size < (SELECT pruned_size FROM audit_head WHERE id = 1) THEN
                RETURN OLD;
            END IF;
        END IF;
        RAISE EXCEPTION '{_APPEND_ONLY}: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END $$""",
    f"""CREATE FUNCTION socle_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR NEW.size < OLD.size OR NEW.pruned_size < OLD.pruned_size
           OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION '{_APPEND_ONLY}: the audit head only moves forward'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION socle_audit_append_only()""",
    """CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION socle_audit_append_only()""",
    """CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION socle_audit_append_only()""",
    """CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION socle_audit_append_only()""",
    """CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION socle_audit_head_forward()""",
    """CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION socle_audit_head_forward()""",
]


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        # INTEGER PRIMARY KEY on SQLite: the rowid, so scans in seq order read the table in order
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("team_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entries"),
    )
    op.create_index("ix_audit_entries_created_at", "audit_entries", ["created_at"])
    op.create_index("ix_audit_entries_request_id", "audit_entries", ["request_id"])
    op.create_index("ix_audit_entries_actor_seq", "audit_entries", ["actor", "seq"])
    op.create_index("ix_audit_entries_team_id_seq", "audit_entries", ["team_id", "seq"])
    op.create_index("ix_audit_entries_type_seq", "audit_entries", ["type", "seq"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoints"),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("pruned_size", sa.BigInteger(), nullable=False),
        sa.Column("pruned_frontier", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("verifier_key", sa.String(length=300), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.create_table(
        "audit_contents",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=True),
        sa.Column("principal_id", sa.String(length=64), nullable=True),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_audit_contents"),
    )
    op.create_index("ix_audit_contents_team_id_created_at", "audit_contents", ["team_id", "created_at"])
    op.create_index("ix_audit_contents_principal_id", "audit_contents", ["principal_id"])
    op.bulk_insert(
        head,
        [
            {
                "id": 1,
                "size": 0,
                "frontier": [],
                "pruned_size": 0,
                "pruned_frontier": [],
                "checkpoint_size": 0,
                "checkpoint_at": None,
                "verifier_key": None,
                "updated_at": utcnow(),
            }
        ],
    )
    triggers = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("audit_entries", "audit_checkpoints", "audit_head"):
            op.execute(f"DROP TABLE {table} CASCADE")
        op.execute("DROP FUNCTION socle_audit_append_only()")
        op.execute("DROP FUNCTION socle_audit_head_forward()")
    else:
        op.drop_table("audit_entries")
        op.drop_table("audit_checkpoints")
        op.drop_table("audit_head")
    op.drop_table("audit_contents")
