"""Knowledge base: collections, documents, pending uploads, chunks, and each database's search index.

The search index is built per database and described by no model (tables named ``kb_index_*``, see
:data:`socle.storage.models.UNMODELLED_TABLE_PREFIX`):

- SQLite: an FTS5 table of analysed terms and scope tokens (collection and document ids, so that
  the access filter is applied inside the full-text index; rowid = chunk key), a table of embeddings
  (float32 blobs) that :class:`socle.knowledge.stores.sqlite.SQLiteStore` loads into memory, and a
  generation counter that triggers bump whenever an embedding is added or removed, so that every
  process notices.
  Deleting a chunk row (directly or by cascade) deletes its FTS row through a trigger.
- PostgreSQL: pgvector (``CREATE EXTENSION vector``) and one table holding each chunk's tsvector
  (GIN-indexed) and embedding, deleted with its chunk by cascade.

Revision ID: 0007
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from socle.storage.types import UTCDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLASSIFICATION = "classification IN ('public', 'internal', 'confidential', 'secret')"

_SQLITE_INDEX = (
    "CREATE VIRTUAL TABLE kb_index_fts USING fts5(terms, scope, "
    "tokenize = 'unicode61 remove_diacritics 0', detail = column)",
    "CREATE TABLE kb_index_vectors (key INTEGER PRIMARY KEY REFERENCES kb_chunks (key) ON DELETE CASCADE, "
    "collection_id VARCHAR(26) NOT NULL, document_id VARCHAR(26) NOT NULL, embedding BLOB NOT NULL)",
    "CREATE TABLE kb_index_state (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL)",
    "INSERT INTO kb_index_state (id, generation) VALUES (1, 0)",
    "CREATE TRIGGER kb_index_chunk_deleted AFTER DELETE ON kb_chunks "
    "BEGIN DELETE FROM kb_index_fts WHERE rowid = old.key; END",
    "CREATE TRIGGER kb_index_vector_added AFTER INSERT ON kb_index_vectors "
    "BEGIN UPDATE kb_index_state SET generation = generation + 1 WHERE id = 1; END",
    "CREATE TRIGGER kb_index_vector_removed AFTER DELETE ON kb_index_vectors "
    "BEGIN UPDATE kb_index_state SET generation = generation + 1 WHERE id = 1; END",
)
_POSTGRES_INDEX = (
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE TABLE kb_index_search (key BIGINT PRIMARY KEY REFERENCES kb_chunks (key) ON DELETE CASCADE, "
    "collection_id VARCHAR(26) NOT NULL, document_id VARCHAR(26) NOT NULL, terms TSVECTOR NOT NULL, "
    "embedding vector NOT NULL)",
    "CREATE INDEX kb_index_search_terms ON kb_index_search USING GIN (terms)",
    "CREATE INDEX kb_index_search_collection ON kb_index_search (collection_id)",
)


def upgrade() -> None:
    op.create_table(
        "kb_collections",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("org_id", sa.String(length=26), nullable=False),
        sa.Column("team_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("classification", sa.String(length=16), nullable=False),
        sa.Column("org_read", sa.Boolean(), nullable=False),
        sa.Column("access", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created_by", sa.String(length=26), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_CLASSIFICATION, name="ck_kb_collections_classification"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name="fk_kb_collections_org_id_organisations",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_kb_collections_team_id_teams", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kb_collections"),
        sa.UniqueConstraint("org_id", "name", name="uq_kb_collections_org_id_name"),
    )
    op.create_index("ix_kb_collections_team_id", "kb_collections", ["team_id"])
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=True),
        sa.Column("mime", sa.String(length=200), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("access", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("classification", sa.String(length=16), nullable=True),
        sa.Column("meta", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_by", sa.String(length=26), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("indexed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            f"classification IS NULL OR {_CLASSIFICATION}", name="ck_kb_documents_classification"
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["kb_collections.id"],
            name="fk_kb_documents_collection_id_kb_collections",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kb_documents"),
        sa.UniqueConstraint(
            "collection_id", "content_sha256", name="uq_kb_documents_collection_id_content_sha256"
        ),
    )
    op.create_index("ix_kb_documents_status_updated_at", "kb_documents", ["status", "updated_at"])
    op.create_table(
        "kb_chunks",
        sa.Column(
            "key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("document_id", sa.String(length=26), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=True),
        sa.Column("section_path", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("page_start", sa.Integer(), nullable=True),
        sa.Column("page_end", sa.Integer(), nullable=True),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["kb_documents.id"],
            name="fk_kb_chunks_document_id_kb_documents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name="pk_kb_chunks"),
        sa.UniqueConstraint("id", name="uq_kb_chunks_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kb_chunks_collection_id", "kb_chunks", ["collection_id"])
    op.create_index("ix_kb_chunks_document_id_ordinal", "kb_chunks", ["document_id", "ordinal"])
    op.create_table(
        "kb_uploads",
        sa.Column("document_id", sa.String(length=26), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["kb_documents.id"],
            name="fk_kb_uploads_document_id_kb_documents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", name="pk_kb_uploads"),
    )
    for statement in _SQLITE_INDEX if op.get_bind().dialect.name == "sqlite" else _POSTGRES_INDEX:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("kb_index_chunk_deleted", "kb_index_vector_added", "kb_index_vector_removed"):
            op.execute(f"DROP TRIGGER {name}")
        for table in ("kb_index_state", "kb_index_vectors", "kb_index_fts"):
            op.execute(f"DROP TABLE {table}")
    else:
        op.execute("DROP TABLE kb_index_search")
    op.drop_table("kb_uploads")
    op.drop_index("ix_kb_chunks_document_id_ordinal", table_name="kb_chunks")
    op.drop_index("ix_kb_chunks_collection_id", table_name="kb_chunks")
    op.drop_table("kb_chunks")
    op.drop_index("ix_kb_documents_status_updated_at", table_name="kb_documents")
    op.drop_table("kb_documents")
    op.drop_index("ix_kb_collections_team_id", table_name="kb_collections")
    op.drop_table("kb_collections")
