"""PostgreSQL: the chunk embeddings move out of ``kb_index_search`` into their own table, stored inline.

In one table with the tsvector, each row passed PostgreSQL's 2 kB TOAST target, so every 384-float
embedding was stored out of line and an exact vector search read about six pages per chunk (300,000
buffer reads for 50,000 chunks, ~140 ms idle, against ~36 ms in a table of its own: docs/benchmarks.md).
``kb_index_vectors`` holds only the ids and the embedding, with storage ``MAIN`` and a TOAST target of
a whole page, so an embedding of up to ~2,000 dimensions stays in the row (a larger one still fits, out
of line). Keyword search keeps ``kb_index_search``, now narrower too. SQLite is unchanged (it already
has its own ``kb_index_vectors`` table of float32 blobs).

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = (
    "CREATE TABLE kb_index_vectors (key BIGINT PRIMARY KEY REFERENCES kb_chunks (key) ON DELETE CASCADE, "
    "collection_id VARCHAR(26) NOT NULL, document_id VARCHAR(26) NOT NULL, embedding vector NOT NULL) "
    "WITH (toast_tuple_target = 8160)",
    "ALTER TABLE kb_index_vectors ALTER COLUMN embedding SET STORAGE MAIN",
    "INSERT INTO kb_index_vectors (key, collection_id, document_id, embedding) "
    "SELECT key, collection_id, document_id, embedding FROM kb_index_search",
    "CREATE INDEX kb_index_vectors_collection ON kb_index_vectors (collection_id)",
    "ALTER TABLE kb_index_search DROP COLUMN embedding",
)
_DOWNGRADE = (
    "ALTER TABLE kb_index_search ADD COLUMN embedding vector",
    "UPDATE kb_index_search s SET embedding = v.embedding FROM kb_index_vectors v WHERE v.key = s.key",
    "DELETE FROM kb_index_search WHERE embedding IS NULL",
    "ALTER TABLE kb_index_search ALTER COLUMN embedding SET NOT NULL",
    "DROP TABLE kb_index_vectors",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DOWNGRADE:
            op.execute(statement)
